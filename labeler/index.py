"""The vector index: a small interface with FAISS behind it. Ids are always catalog image ids.

The catalog keeps every vector, so an index is a cache that can always be rebuilt; saves are
atomic (temporary file, fsync, rename) so a crash never leaves a corrupt index behind.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .files import replace_atomically


class FaissIndex:
    """Inner-product search over unit vectors (cosine). ``factory`` is a FAISS factory string.

    ``"Flat"`` (exact, the default) needs no training; ``"IVF1024,Flat"`` or ``"HNSW32"`` can
    replace it for large collections; ``gpu=True`` moves search onto a GPU with faiss-gpu.
    """

    def __init__(self, dim: int, factory: str = "Flat", gpu: bool = False):
        self.dim = dim
        self.factory = factory
        self.gpu = gpu
        self._index = faiss.IndexIDMap2(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))

    @classmethod
    def load(cls, path: Path, gpu: bool = False) -> "FaissIndex":
        raw = faiss.read_index(str(path))
        self = cls.__new__(cls)
        if not isinstance(raw, faiss.IndexIDMap2):
            raise ValueError(f"{path} is not a labeler index (no id map)")
        self.dim, self.factory, self.gpu = raw.d, "loaded", gpu
        self._index = raw
        return self

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """All ids in the index, ``[N]`` int64."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` ``[N, dim]`` under catalog ``ids`` ``[N]``; an id already present is replaced."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self.remove(ids)
        if not self._index.is_trained:
            self._index.train(vectors)
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0 or len(self) == 0:
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``[Q, dim]`` → (scores ``[Q, k]``, ids ``[Q, k]``); missing hits have id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), len(self))) if len(self) else 1
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        index = self._index
        if self.gpu and hasattr(faiss, "StandardGpuResources"):
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        scores, ids = index.search(queries, k)
        return scores, ids

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves either the old file or the new one."""
        replace_atomically(Path(path), lambda tmp: faiss.write_index(self._index, str(tmp)))
