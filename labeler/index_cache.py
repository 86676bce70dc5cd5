"""The index cache: the model's FAISS index file, loaded once and kept in line with the catalog.

The catalog's vectors are the truth; the index is rebuilt or patched from them whenever it
disagrees (a crash between a catalog commit and an index save, a deleted or corrupt file).

Another process may add or remove vectors while a server holds the index: every such change
bumps the catalog's index generation (:func:`bump_generation`), and :meth:`IndexCache.get`
re-reads that number at most every :data:`REFRESH_S` seconds, re-syncing when it moved.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import Integer, String, cast, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import db
from .catalog import Setting
from .config import Config
from .index import FaissIndex
from .model_registry import ModelRegistry
from .vector_store import VectorStore


GENERATION_KEY = "index_generation"
REFRESH_S = 1.0  # how stale a server's index may be; one small query per interval


def read_generation(session: Session) -> int:
    """The catalog's index generation: 0 until vectors are first written."""
    value = session.scalar(select(Setting.value).where(Setting.key == GENERATION_KEY))
    return int(value) if value is not None else 0


def bump_generation(session: Session) -> None:
    """Note that the set of stored (present) vectors changed, so open indexes re-sync."""
    # One UPDATE, atomic in the database: two writers never both read n and write n + 1.
    bump = (update(Setting).where(Setting.key == GENERATION_KEY)
            .values(value=cast(cast(Setting.value, Integer) + 1, String)))
    if session.execute(bump).rowcount:
        return
    try:
        with session.begin_nested():
            session.add(Setting(key=GENERATION_KEY, value="1"))
    except IntegrityError:  # another writer inserted it first
        session.execute(bump)


class IndexCache:
    """``IndexCache(config, models, vectors)``: load, sync or rebuild the index of the model in force.

    The FAISS type and GPU use come from ``config.index_factory`` and ``config.index_gpu``.
    """

    def __init__(self, config: Config, models: ModelRegistry, vectors: VectorStore):
        self.config = config
        self.models = models
        self.vectors = vectors
        self._index: FaissIndex | None = None
        self._lock = threading.Lock()  # web server threads share one collection
        self._generation: int | None = None  # the catalog's generation the index was synced at
        self._checked_at = 0.0

    def path(self, model_id: int) -> Path:
        return self.config.index_dir / f"model-{model_id}.faiss"

    def generation(self) -> int:
        with db.session_scope(self.config) as s:
            return read_generation(s)

    def get(self) -> FaissIndex:
        """The model's index, loaded and synced on the first call of the process, then kept
        until the catalog's generation moves (another process indexed or removed images).

        A refresh builds a new index object and swaps it in, so a search holding the old one
        is never disturbed.
        """
        if self._index is None or time.monotonic() - self._checked_at >= REFRESH_S:
            with self._lock:
                if self._index is None:
                    self._index = self.sync()
                elif time.monotonic() - self._checked_at >= REFRESH_S:
                    self._checked_at = time.monotonic()
                    if self.generation() != self._generation:
                        self._index = self.sync(save=False)
        return self._index

    def sync(self, rebuild: bool = False, save: bool = True) -> FaissIndex:
        """Load the index and add or remove whatever differs from the stored vectors.

        Only ids are compared; vectors are read for the ids the index lacks (all of them when
        the file is missing, unreadable or rebuilt). ``save``: write the synced index back
        (a server refreshing for another process's writes leaves the file to that process).
        """
        # Read before the vectors: a change made meanwhile shows as a newer generation later.
        generation = self.generation()
        self._checked_at = time.monotonic()
        model_id = self.models.require_id()
        path = self.path(model_id)
        dim = self.models.dim(model_id)
        index = None
        if path.exists() and not rebuild:
            try:
                index = FaissIndex.load(path, gpu=self.config.index_gpu)
            except Exception:
                index = None  # unreadable: rebuilt from the stored vectors below
            if index is not None and index.dim != dim:
                index = None
        if index is None:
            index = FaissIndex(dim, self.config.index_factory, self.config.index_gpu)
            for ids, vecs in self.vectors.chunks(model_id):
                index.add(ids, vecs)
            if save:
                index.save(path)
        else:
            ids, have = self.vectors.ids(model_id), index.ids()
            extra, missing = np.setdiff1d(have, ids), np.setdiff1d(ids, have)
            if len(extra) or len(missing):
                index.remove(extra)
                index.add(*self.vectors.read(missing, model_id=model_id))
                if save:
                    index.save(path)
        self._index = index
        self._generation = generation
        return index

    def problems(self) -> list[str]:
        """Problems between the catalog's stored vectors and the index file; empty when consistent."""
        model_id = self.models.current_id()
        if model_id is None:
            return []
        ids, dim = self.vectors.ids(model_id), self.models.dim(model_id)
        path = self.path(model_id)
        if not path.exists():
            return [f"index file {path} is missing ({len(ids)} vectors in the catalog)"] if len(ids) else []
        try:
            index = FaissIndex.load(path)
        except Exception as exc:
            return [f"index file {path} is unreadable: {exc}"]
        problems = []
        if index.dim != dim:
            problems.append(f"index dimension {index.dim} != the model's {dim}")
        have = index.ids()
        if len(np.unique(have)) != len(have):
            problems.append(f"index holds {len(have) - len(np.unique(have))} duplicate ids")
        extra = np.setdiff1d(have, ids)
        missing = np.setdiff1d(ids, have)
        if len(extra):
            problems.append(f"index holds {len(extra)} ids with no stored vector: {extra[:10].tolist()}")
        if len(missing):
            problems.append(f"{len(missing)} stored vectors are not in the index: {missing[:10].tolist()}")
        return problems
