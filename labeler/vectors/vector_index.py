"""What the index keeper and search ask of a vector index, whatever holds the vectors.

FiftyOne's ``SimilarityIndex`` habit: one small interface, backends behind it. Today the one
backend is :class:`labeler.vectors.index.FaissIndex` (flat, IVF, HNSW, on CPU or GPU). Ids are
always catalog image ids; vectors are unit length, so an inner product is a cosine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VectorIndex(Protocol):
    """A searchable set of ``(image id, unit vector)`` pairs of dimension ``dim``.

    ``stamp`` is what its keeper recorded with the last save or load (the last catalog change
    it holds, its build, its spec); ``kind`` names the structure (``flat``, ``ivf``, ``hnsw``).
    """

    dim: int
    stamp: dict

    def __len__(self) -> int: ...

    @property
    def kind(self) -> str: ...

    def ids(self) -> np.ndarray:
        """Every id held, ``[N]`` int64."""

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each of ``ids`` ``[K]`` is held, ``[K]`` bool."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Hold ``vectors`` ``[N, D]`` under ``ids`` ``[N]`` (ids not held yet)."""

    def remove(self, ids: np.ndarray) -> int:
        """Drop ``ids`` ``[K]``; returns how many were held. May raise ``RuntimeError`` where the
        structure cannot remove (HNSW): the keeper rebuilds it then."""

    def search(self, queries: np.ndarray, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best of ``queries`` ``[Q, D]``: (scores ``[Q, k]``, ids ``[Q, k]``, -1 past the end)."""

    def describe(self) -> dict:
        """``{"type", "factory", "vectors"}`` and what the structure adds (IVF: ``nlist``, ``nprobe``)."""

    def save(self, path: Path, stamp: dict | None = None) -> None:
        """Write the index and ``stamp`` to ``path`` atomically."""
