"""A collection: one handle on the catalog's three parts, so callers pass one object.

* ``collection.models`` (:class:`ModelRegistry`): the model in force, its catalog row, its encoder;
* ``collection.vectors`` (:class:`VectorStore`): stored image vectors and the prompt-vector cache;
* ``collection.index_cache`` (:class:`IndexCache`): the FAISS index, loaded and caught up with the catalog.

A function that needs only one part can take that part alone. Sessions come from
:func:`labeler.store.db.session_scope`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from .store import db
from .config import Config
from .vectors.index_keeper import IndexCache
from .vectors.model_registry import ModelRegistry
from .vectors.vector_store import VectorStore

__all__ = ["Collection", "IndexCache", "ModelRegistry", "VectorStore"]


class Collection:
    """``Collection(config)``: open (and migrate on first use) the catalog under ``config.home``."""

    def __init__(self, config: Config):
        self.config = config
        db.ensure_schema(config)
        self.models = ModelRegistry(config)
        self.vectors = VectorStore(config, self.models)
        self.index_cache = IndexCache(config, self.models, self.vectors)

    def session(self) -> AbstractContextManager[Session]:
        """``db.session_scope`` of this collection's catalog: commits on success, rolls back on error."""
        return db.session_scope(self.config)
