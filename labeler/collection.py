"""A collection: one handle on the catalog's three parts, so callers pass one object.

* ``collection.models`` (:class:`ModelRegistry`): the model in force, its catalog row, its encoder;
* ``collection.vectors`` (:class:`VectorStore`): stored image vectors and the prompt-vector cache;
* ``collection.index_keeper`` (:class:`IndexKeeper`): the FAISS index, loaded and kept in step with the catalog.

A function that needs only one part can take that part alone. One operation is one unit of
work: the caller opens ``collection.session()`` and passes it to every method it calls.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, TypeVar

from sqlalchemy.orm import Session

from .store import db
from .config import Config
from .vectors.index_keeper import IndexKeeper
from .vectors.model_registry import ModelRegistry
from .vectors.vector_store import VectorStore

__all__ = ["Collection", "IndexKeeper", "ModelRegistry", "VectorStore", "in_session"]

T = TypeVar("T")


class Collection:
    """``Collection(config)``: open (and migrate on first use) the catalog under ``config.home``."""

    def __init__(self, config: Config, on_export: Callable[[str], None] | None = None):
        """``on_export(line)``: a front end's progress line while a first ONNX export runs."""
        self.config = config
        db.ensure_schema(config)
        self.models = ModelRegistry(config, on_export)
        self.vectors = VectorStore(config, self.models)
        self.index_keeper = IndexKeeper(config, self.models, self.vectors)

    def session(self) -> AbstractContextManager[Session]:
        """``db.session_scope`` of this collection's catalog: commits on success, rolls back on error."""
        return db.session_scope(self.config)


def in_session(method: Callable[..., T], *args, **kwargs) -> T:
    """``method(session, *args, **kwargs)`` in a unit of work of its own, for a script or a test
    that calls one store, registry or keeper method alone (``method.__self__.config`` names the
    catalog). An operation that calls several opens one ``collection.session()`` instead."""
    with db.session_scope(method.__self__.config) as session:
        return method(session, *args, **kwargs)
