"""The index cache: the model's FAISS index file, loaded once and kept in line with the catalog.

The catalog's vectors are the truth; the index is rebuilt or patched from them whenever it
disagrees (a crash between a catalog commit and an index save, a deleted or corrupt file).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .config import Config
from .index import FaissIndex
from .model_registry import ModelRegistry
from .vector_store import VectorStore


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

    def path(self, model_id: int) -> Path:
        return self.config.index_dir / f"model-{model_id}.faiss"

    def get(self) -> FaissIndex:
        """The model's index, loaded and synced on the first call of the process, then kept."""
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = self.sync()
        return self._index

    def sync(self, rebuild: bool = False) -> FaissIndex:
        """Load the index and add or remove whatever differs from the stored vectors.

        Only ids are compared; vectors are read for the ids the index lacks (all of them when
        the file is missing, unreadable or rebuilt).
        """
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
            index.save(path)
        else:
            ids, have = self.vectors.ids(model_id), index.ids()
            extra, missing = np.setdiff1d(have, ids), np.setdiff1d(ids, have)
            if len(extra) or len(missing):
                index.remove(extra)
                index.add(*self.vectors.read(missing, model_id=model_id))
                index.save(path)
        self._index = index
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
