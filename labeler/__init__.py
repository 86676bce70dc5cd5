"""labeler: label, search and review image collections with CLIP prompt ensembles.

The public API is :func:`open`, which returns a :class:`Labeler` (see :mod:`labeler.api`)::

    import labeler
    col = labeler.open("instance")
    col.index(["~/photos"])
    col.label("workshop")
    col.search("metal hammer with wooden handle", k=10)

Both names load on first use, so ``import labeler`` stays as fast as it was: the API brings in
SQLAlchemy and FAISS, which the CLI's ``--help`` and light commands never need.
"""

__all__ = ["Labeler", "open"]


def __getattr__(name: str):
    if name in __all__:
        from . import api  # lazy: the API imports SQLAlchemy and FAISS (about a second)

        return getattr(api, name)
    raise AttributeError(f"module 'labeler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
