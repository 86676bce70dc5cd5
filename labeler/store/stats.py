"""What a collection holds: counts of images, files, vectors, failures and missing images."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .catalog import Image, ImageFile
from ..collection import Collection


def _count(session: Session, query: Select) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery()))


def collection_stats(collection: Collection) -> dict:
    """The ``stats --json`` contract: images, embedded, failed, missing, model (+ files, home, and the
    ``backend`` that runs the model here, loading nothing)."""
    with collection.session() as s:
        counts = {
            "images": _count(s, select(Image.id)),
            "embedded": collection.vectors.count(),
            "failed": _count(s, select(ImageFile.id).where(ImageFile.status == "failed")),
            "missing": _count(s, select(Image.id).where(Image.status == "missing")),
            "files": _count(s, select(ImageFile.id)),
        }
    spec = collection.models.stored_spec()
    return {**counts, "model": spec, "home": str(collection.config.home),
            "backend": collection.models.backend() if spec else None}
