"""The map's maths: a 2-D place for every vector, fitted once on a sample, the rest placed beside it.

Arrays in, arrays out; no catalog, no model. :func:`fit` lays a sample out with PCA (to
:data:`PCA_DIMS`) then openTSNE (FFT gradients: its time grows linearly with the sample, and it
runs on every core given). :func:`place` puts any other vector at the weighted mean of its
:data:`PLACE_NEIGHBOURS` nearest sample vectors' places (FAISS inner-product search; weights
fall off with the cosine's distance from the nearest's), which is how openTSNE itself starts new
points before optimising them. A placed vector never moves a fitted one, nor another placed one,
so a map grows without changing what a reviewer already learned to read.

Why not umap-learn: it needs numba, whose JIT alone costs tens of seconds a run on two cores, and
its ``transform`` of new points is slower than a FAISS search; openTSNE ships compiled code and
fits the sample in time the sample size fixes, whatever the collection's size.
"""

from __future__ import annotations

import math
from typing import Callable

import faiss
import numpy as np

from ..errors import LabelerError

PCA_DIMS = 50
FIT_SAMPLE = 10_000  # vectors the layout is fitted on; every other one is placed
PLACE_NEIGHBOURS = 10
PLACE_TEMPERATURE = 0.02  # cosine units: a neighbour this much farther than the nearest weighs 1/e as much
PLACE_BATCH = 16_384
MIN_VECTORS = 3
THREADS_ABOVE = 5_000
EXTRA = "labeler[map]"
ProgressFn = Callable[[int], None] | None


class LayoutError(LabelerError):
    """A map that cannot be made as asked (too few vectors, the map extra missing)."""


def _tsne():
    try:
        from openTSNE import TSNE
    except ImportError:
        raise LayoutError(f"the map needs openTSNE: pip install '{EXTRA}' (scripts/setup.sh installs it)") from None
    return TSNE


def pca(vectors: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """``vectors`` ``[N, D]`` projected on their first ``min(dims, D, N)`` principal axes: ``[N, d]``
    float32. Each axis's sign is fixed (its largest loading positive), so a run repeats exactly."""
    x = np.asarray(vectors, np.float64)
    x = x - x.mean(axis=0)
    d = max(1, min(dims, x.shape[0], x.shape[1]))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:d]
    signs = np.sign(axes[np.arange(d), np.abs(axes).argmax(axis=1)])
    signs[signs == 0] = 1
    return (x @ (axes * signs[:, None]).T).astype(np.float32)


def fit(vectors: np.ndarray, seed: int = 0, n_jobs: int = 2, iterations: int | None = None) -> np.ndarray:
    """2-D places ``[N, 2]`` float32 for ``vectors`` ``[N, D]`` (N ≥ :data:`MIN_VECTORS`): PCA
    then openTSNE, deterministic for one ``seed``. Centred on 0, spread to a standard deviation of
    about 1 per axis (so a map's scale does not depend on its size). ``iterations`` (after the
    early exaggeration's, half as many) default to 500, fewer for a small sample, which settles
    sooner; threads only from :data:`THREADS_ABOVE` vectors (below, their start-up costs more)."""
    n = len(vectors)
    if n < MIN_VECTORS:
        raise LayoutError(f"a map needs at least {MIN_VECTORS} vectors, the collection has {n}")
    TSNE = _tsne()
    reduced = pca(vectors)
    if n < 8 or reduced.shape[1] < 2:  # too few for t-SNE's neighbourhoods: the principal plane
        out = np.zeros((n, 2), np.float32)
        out[:, :min(2, reduced.shape[1])] = reduced[:, :2]
        return _normalised(out)
    perplexity = float(min(30.0, (n - 1) / 3.0))
    init = reduced[:, :2].astype(np.float64)
    init = init / max(float(init[:, 0].std()), 1e-12) * 1e-4  # openTSNE's own scaling of a PCA start
    iterations = iterations or int(min(500, max(150, n // 10)))
    embedding = TSNE(n_components=2, perplexity=perplexity, initialization=init,
                     n_jobs=n_jobs if n >= THREADS_ABOVE else 1, random_state=seed,
                     neighbors="exact" if n <= 2_000 else "annoy",
                     negative_gradient_method="fft" if n > 2_000 else "bh", n_iter=iterations,
                     early_exaggeration_iter=max(50, iterations // 2), verbose=False).fit(reduced.astype(np.float64))
    return _normalised(np.asarray(embedding, np.float32))


def _normalised(places: np.ndarray) -> np.ndarray:
    places = places - places.mean(axis=0)
    scale = float(places.std())
    return (places / scale if scale > 0 else places).astype(np.float32)


def place(anchor_vectors: np.ndarray, anchor_places: np.ndarray, vectors: np.ndarray,
          k: int = PLACE_NEIGHBOURS, progress: ProgressFn = None) -> np.ndarray:
    """Places ``[M, 2]`` for ``vectors`` ``[M, D]`` (unit) beside the fitted ``anchor_vectors``
    ``[S, D]`` at ``anchor_places`` ``[S, 2]``: the weighted mean of the ``k`` nearest anchors'
    places, weights ``exp(-(best - cosine) / T)``. Each row depends on the anchors alone, so
    placing more rows never moves these. ``progress(n)`` after each batch of rows."""
    vectors = np.ascontiguousarray(vectors, np.float32)
    out = np.zeros((len(vectors), 2), np.float32)
    if not len(vectors):
        return out
    k = max(1, min(k, len(anchor_vectors)))
    index = faiss.IndexFlatIP(anchor_vectors.shape[1])
    index.add(np.ascontiguousarray(anchor_vectors, np.float32))
    places = np.asarray(anchor_places, np.float32)
    for start in range(0, len(vectors), PLACE_BATCH):
        sims, rows = index.search(vectors[start:start + PLACE_BATCH], k)
        weights = np.exp(-(sims[:, :1] - sims) / PLACE_TEMPERATURE)
        weights /= weights.sum(axis=1, keepdims=True)
        out[start:start + len(rows)] = np.einsum("nk,nkc->nc", weights, places[rows])
        if progress is not None:
            progress(len(rows))
    return out


def sample_rows(n: int, size: int = FIT_SAMPLE, seed: int = 0) -> np.ndarray:
    """Which of ``n`` rows a layout is fitted on: all of them up to ``size``, else ``size`` drawn
    at random (sorted)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def check_bbox(values: list[float]) -> tuple[float, float, float, float]:
    """``x0, y0, x1, y1`` as four finite numbers with ``x0 < x1`` and ``y0 < y1`` (swapped ends
    are put in order); :class:`LayoutError` otherwise."""
    if len(values) != 4 or not all(isinstance(v, float) and math.isfinite(v) for v in values):
        raise LayoutError("bbox must be four finite numbers x0,y0,x1,y1")
    x0, y0, x1, y1 = values
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    if x0 == x1 or y0 == y1:
        raise LayoutError("bbox must have a width and a height")
    return x0, y0, x1, y1


def in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which of ``points`` ``[N, 2]`` lie inside ``polygon`` ``[V, 2]`` (even-odd rule): ``[N]`` bool."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    px, py = polygon[:, 0], polygon[:, 1]
    j = len(polygon) - 1
    for i in range(len(polygon)):
        crosses = (py[i] > y) != (py[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]
        inside ^= crosses & (x < at)
        j = i
    return inside


def bins(points: np.ndarray, bbox: tuple[float, float, float, float], size: int,
         values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Density of ``points`` ``[N, 2]`` in a ``size`` × ``size`` grid over ``bbox``: counts
    ``[size, size]`` (row = y) and, with ``values`` ``[N]`` (small ints, -1 for none), each cell's
    most common value ``[size, size]`` (-1 where empty)."""
    x0, y0, x1, y1 = bbox
    cx = np.clip(((points[:, 0] - x0) / (x1 - x0) * size).astype(np.int64), 0, size - 1)
    cy = np.clip(((points[:, 1] - y0) / (y1 - y0) * size).astype(np.int64), 0, size - 1)
    cell = cy * size + cx
    counts = np.bincount(cell, minlength=size * size).reshape(size, size)
    if values is None:
        return counts, None
    kinds = int(values.max()) + 2 if len(values) else 1
    per = np.bincount(cell * kinds + (values + 1), minlength=size * size * kinds).reshape(size * size, kinds)
    per[:, 0] = 0  # no value never wins over a value
    top = per.argmax(axis=1) - 1
    top[per.max(axis=1) == 0] = -1
    return counts, top.reshape(size, size)
