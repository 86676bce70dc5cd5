"""The vector index: a small interface with FAISS behind it. Ids are always catalog image ids.

The catalog keeps every vector, so an index is a cache that can always be rebuilt; saves are
atomic (temporary file, fsync, rename) so a crash never leaves a corrupt index behind.

An index file starts with a small header (:data:`MAGIC`, a length, JSON) recording which catalog
state it reflects (its *stamp*) and how it searches (factory, ``nprobe``); the FAISS bytes follow.
:func:`read_stamp` reads only the header, so a caller learns what an index holds in O(1).
"""

from __future__ import annotations

import json
import math
import struct
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from ..errors import ConfigError
from ..files import replace_atomically

MAGIC = b"LABELER-INDEX-1\n"
KINDS = ("auto", "flat", "ivf", "hnsw")  # index types by name; anything else is a FAISS factory string
IVF_LISTS_PER_SQRT_N = 4  # nlist ≈ 4·sqrt(N), a power of two (FAISS's guide: 4 to 16·sqrt(N))
IVF_TRAIN_PER_LIST = 32  # training vectors per list: enough for k-means, small enough to train in seconds
HNSW_FACTORY = "HNSW32"
SMALL_ADD = 1024  # adds of fewer vectors run single-threaded (see _threads)


def ivf_nlist(n: int) -> int:
    """The number of IVF lists for ``n`` vectors: a power of two near 4·sqrt(n), at least 16."""
    target = IVF_LISTS_PER_SQRT_N * math.sqrt(max(n, 1))
    return max(16, 2 ** round(math.log2(target)))


def choose_factory(spec: str, n: int, ivf_above: int) -> str:
    """The FAISS factory string for ``spec`` (``auto``, ``flat``, ``ivf``, ``hnsw`` or a factory
    string) and a collection of ``n`` vectors: ``auto`` is exact ``Flat`` below ``ivf_above``."""
    name = spec.strip().lower()
    if name == "auto":
        name = "flat" if n < ivf_above else "ivf"
    if name == "flat":
        return "Flat"
    if name == "ivf":
        return f"IVF{ivf_nlist(n)},Flat"
    if name == "hnsw":
        return HNSW_FACTORY
    return spec.strip()


def check_factory(spec: str, dim: int = 8) -> None:
    """Raise :class:`ConfigError` unless ``spec`` is an index kind or a FAISS factory string."""
    if spec.strip().lower() in KINDS:
        return
    try:
        faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        raise ConfigError(f"unknown index type {spec!r}: use auto, flat, ivf, hnsw or a FAISS factory "
                          "string such as 'IVF4096,Flat'") from None


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """FAISS's OpenMP threads (per calling thread) limited to ``n`` meanwhile (None: unchanged).

    For work too small to share: waking the thread team costs more than a writer's add of 64
    (10x on a loaded 2-core machine) or a lone query.
    """
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class _ReadWriteLock:
    """Many searches at once, or one change: a server's searches run while another thread waits
    to apply new vectors, and never see an index half-changed."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._readers:
                self._cond.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class FaissIndex:
    """Inner-product search over unit vectors (cosine). ``factory`` is a FAISS factory string.

    ``"Flat"`` (exact) needs no training; ``"IVF1024,Flat"`` must be :meth:`train`-ed before the
    first :meth:`add`; ``"HNSW32"`` cannot remove (the caller rebuilds); ``gpu=True`` moves search
    onto a GPU with faiss-gpu. ``stamp`` is what the caller recorded with the last save or load.
    """

    def __init__(self, dim: int, factory: str = "Flat", gpu: bool = False):
        self.dim = dim
        self.factory = factory
        self.gpu = gpu
        self.stamp: dict = {}
        self._index = _with_ids(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
        self._member = np.zeros(0, dtype=bool)  # _member[id]: the id is in the index; O(1) per id
        self._lock = _ReadWriteLock()
        self._mapped: np.ndarray | None = None  # the file's FAISS bytes while the arrays point into them
        self.upgraded = False  # loaded from an older layout: worth saving again

    @classmethod
    def load(cls, path: Path, gpu: bool = False, mapped: bool = False) -> "FaissIndex":
        """Read an index file; a file written before headers existed loads with an empty stamp.

        ``mapped``: the index's arrays (vectors, inverted lists, ids) stay in the file, mapped
        read-only, instead of being copied: a search reads only the pages it touches, so opening
        a 2 GB index costs what its small parts cost. The first change copies it into memory.
        """
        with open(path, "rb") as fh:
            meta = _read_header(fh)
            start = fh.tell() if meta is not None else 0
            if mapped:
                view = np.memmap(path, dtype=np.uint8, mode="r", offset=start)
                raw = faiss.read_index(faiss.ZeroCopyIOReader(faiss.swig_ptr(view), view.size),
                                       faiss.IO_FLAG_MMAP_IFC)
            else:
                fh.seek(start)
                raw = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
        if not isinstance(raw, faiss.IndexIDMap2) and not _is_ivf(raw):
            raise ValueError(f"{path} is not a labeler index (no id map)")
        self = cls.__new__(cls)
        self.dim, self.gpu, self._index, self._lock = raw.d, gpu, raw, _ReadWriteLock()
        self._mapped = view if mapped else None
        self.upgraded = isinstance(raw, faiss.IndexIDMap2) and _is_ivf(raw.index)
        if self.upgraded:  # an IVF saved inside an id map: its lists get the catalog ids, once
            self._own()
            self._index = _unwrap_ivf(self._index, path)
        self.factory = (meta or {}).get("factory", "loaded")
        self.stamp = (meta or {}).get("stamp", {})
        self._member = np.zeros(0, dtype=bool)
        self._mark(self.ids(), True)
        if (meta or {}).get("nprobe") and self.kind == "ivf":
            self.nprobe = int(meta["nprobe"])
        return self

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """``flat``, ``ivf``, ``hnsw`` or ``other``: what the id map wraps."""
        inner = faiss.downcast_index(self._inner())
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
        if isinstance(inner, faiss.IndexIVF):
            return "ivf"
        return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "other"

    @property
    def mapped(self) -> bool:
        """Whether the arrays are still the file's, mapped read-only (no change made yet)."""
        return self._mapped is not None

    def _own(self) -> None:
        """Copy a mapped index into memory before its first change (under the write lock):
        resizing a mapped array is a FAISS assertion that aborts the process, not an exception."""
        if self._mapped is None:
            return
        nprobe, view, at = self.nprobe, memoryview(self._mapped), 0

        def read(n: int) -> bytes:  # a callback reader copies; a ZeroCopyIOReader never does
            nonlocal at
            at += n
            return view[at - n:at].tobytes()

        self._index = faiss.read_index(faiss.PyCallbackIOReader(read))
        self._mapped = None
        if nprobe is not None:
            self.nprobe = nprobe

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def nlist(self) -> int | None:
        return int(faiss.extract_index_ivf(self._index).nlist) if self.kind == "ivf" else None

    @property
    def nprobe(self) -> int | None:
        return int(faiss.extract_index_ivf(self._index).nprobe) if self.kind == "ivf" else None

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        faiss.extract_index_ivf(self._index).nprobe = max(1, min(int(value), self.nlist))

    def describe(self) -> dict:
        """``{"type", "factory", "vectors"}`` plus ``nlist``/``nprobe`` for IVF."""
        info = {"type": self.kind, "factory": self.factory, "vectors": len(self)}
        if self.kind == "ivf":
            info.update(nlist=self.nlist, nprobe=self.nprobe)
        return info

    def ids(self) -> np.ndarray:
        """All ids in the index, ``[N]`` int64."""
        if isinstance(self._index, faiss.IndexIDMap2):
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        lists = self._index.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(self._index.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _inner(self) -> faiss.Index:
        """The index that holds the vectors: what the id map wraps, or the IVF itself."""
        return self._index.index if isinstance(self._index, faiss.IndexIDMap2) else self._index

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """``[N]`` bool: which of ``ids`` ``[N]`` the index holds."""
        ids = np.asarray(ids, dtype=np.int64)
        inside = ids < len(self._member)
        found = np.zeros(len(ids), dtype=bool)
        found[inside] = self._member[ids[inside]]
        return found

    def _mark(self, ids: np.ndarray, present: bool) -> None:
        if len(ids) and int(ids.max()) >= len(self._member):
            grown = np.zeros(max(int(ids.max()) + 1, 2 * len(self._member)), dtype=bool)
            grown[:len(self._member)] = self._member
            self._member = grown
        self._member[ids] = present

    def train(self, vectors: np.ndarray) -> None:
        """Train an IVF index's lists on a sample ``[M, dim]``; a no-op for an index that needs none."""
        if self.is_trained:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ivf = faiss.extract_index_ivf(self._index)
        ivf.cp.niter = 10  # the lists need not be optimal, only balanced; 10 rounds train 2.5x faster than 25
        ivf.cp.min_points_per_centroid = 1
        with self._lock.write():
            self._own()
            self._index.train(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` ``[N, dim]`` under catalog ``ids`` ``[N]``; an id already present is replaced.

        Only ids really present are removed first: a plain append never pays for a removal.
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        if not self.is_trained:
            raise ValueError(f"the {self.factory} index must be trained before vectors are added")
        replaced = ids[self.contains(ids)]
        with self._lock.write(), _threads(1 if len(ids) < SMALL_ADD else None):
            self._own()
            if len(replaced):
                self._remove(replaced)
            self._index.add_with_ids(vectors, ids)
            self._mark(ids, True)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` ``[N]`` the index holds; returns how many were removed."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        ids = np.unique(ids[self.contains(ids)])
        if len(ids) == 0:
            return 0
        with self._lock.write():
            return self._remove(ids)

    def _remove(self, ids: np.ndarray) -> int:
        self._own()
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))  # HNSW: RuntimeError
        self._mark(ids, False)
        return removed

    def search(self, queries: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``queries`` ``[Q, dim]`` → (scores ``[Q, k]``, ids ``[Q, k]``); missing hits have id -1.

        ``exact``: the true top ``k`` whatever the index type (IVF probes every list; HNSW and
        others scan their stored vectors), so approximate results can be measured against it.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = max(1, min(int(k), len(self)))
        # A lone query runs on the calling thread: FAISS splits work across queries, so it gains
        # nothing from a team, whose idle threads spin on the cores that concurrent searches (the
        # web server's request threads) need; 8 concurrent searches ran slower than one at a time.
        with self._lock.read(), _threads(1 if len(queries) == 1 else None):
            if exact and self.kind not in ("flat", "ivf"):
                return self._scan(queries, k)
            index = self._index
            if self.gpu and hasattr(faiss, "StandardGpuResources"):
                index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            if self.kind != "ivf":
                return index.search(queries, k)
            nprobe = self.nlist if exact else self.nprobe
            while True:  # a large k may need more lists than nprobe holds: widen until filled
                scores, ids = index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
                if nprobe >= self.nlist or not (ids < 0).any():
                    return scores, ids
                nprobe = min(self.nlist, nprobe * 4)

    def _scan(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products against every vector the index can reconstruct."""
        vectors = self._inner().reconstruct_n(0, len(self))
        scores = queries @ vectors.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, top, axis=1), self.ids()[top]

    def save(self, path: Path, stamp: dict | None = None) -> None:
        """Write atomically, header first: a crash leaves either the old file or the new one."""
        if stamp is not None:
            self.stamp = dict(stamp)
        meta = {"stamp": self.stamp, "factory": self.factory, "nprobe": self.nprobe}
        header = json.dumps(meta).encode()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh, self._lock.read():
                fh.write(MAGIC + struct.pack("<I", len(header)) + header)
                faiss.write_index(self._index, faiss.PyCallbackIOWriter(fh.write))

        replace_atomically(Path(path), write)


def _is_ivf(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF)


def _with_ids(index: faiss.Index) -> faiss.Index:
    """``index`` able to hold catalog ids. An IVF keeps them in its own lists: inside an id map,
    a removal renumbers the map but not the lists, and every later hit names another image
    (FAISS does not support that pairing: facebookresearch/faiss#1643, #4535)."""
    return index if _is_ivf(index) else faiss.IndexIDMap2(index)


def _unwrap_ivf(wrapped: faiss.IndexIDMap2, path: Path) -> faiss.Index:
    """The IVF inside ``wrapped`` (read into memory) with the catalog ids in its lists; raises
    ValueError when a removal already put the map out of step (the caller rebuilds)."""
    id_map = faiss.vector_to_array(wrapped.id_map).astype(np.int64)
    ivf = faiss.downcast_index(wrapped.index)
    lists, seen = ivf.invlists, []
    for i in range(ivf.nlist):
        if lists.list_size(i):
            ids = faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i))
            seen.append(ids.copy())
            ids[:] = id_map[np.clip(ids, 0, max(len(id_map) - 1, 0))]
    seen = np.sort(np.concatenate(seen)) if seen else np.zeros(0, np.int64)
    if not np.array_equal(seen, np.arange(len(id_map))):
        raise ValueError(f"{path}: an IVF whose id map a removal put out of step")
    return faiss.clone_index(ivf)  # its own copy: the wrapper frees the IVF it holds


def read_stamp(path: Path) -> dict | None:
    """The stamp of the index file at ``path``, reading only its header; None when it has none."""
    try:
        with open(path, "rb") as fh:
            meta = _read_header(fh)
    except (OSError, ValueError):
        return None
    return None if meta is None else meta.get("stamp", {})


def _read_header(fh) -> dict | None:
    if fh.read(len(MAGIC)) != MAGIC:
        return None
    (size,) = struct.unpack("<I", fh.read(4))
    return json.loads(fh.read(size))
