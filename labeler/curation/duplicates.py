"""Duplicate groups from the stored vectors, at three levels, with thresholds calibrated per model.

* ``exact``: the same decoded picture (vectors equal to within :data:`EXACT_COSINE`), e.g. a PNG
  and its lossless re-save. Byte-identical files are already one image (one content hash).
* ``near``: the same picture re-encoded, resized, slightly cropped or with a changed colour
  profile. Candidate pairs are an image's close vectors (the calibrated ``near`` cosine) and its
  :data:`PIXEL_NEIGHBOURS` closest thumbnails (a small model can put a crop of a picture far from
  it); where both thumbnails exist, a pair must pass the calibrated thumbnail checks
  (:mod:`.copies`): a coarse pass over every pair (grey agreement, colour distance), then the
  aligned check on the few left (one thumbnail aligned on the other as its pixel size allows,
  tones matched: the worst cell's grey residual and the colour distance). A small model can put
  two shots of one subject as close as a copy, but their pixels differ.
* ``scene``: the same subject and setting, a different shot: a lower cosine, no pixel check.

How the thresholds are found (:func:`calibrate`, stored per model in ``duplicate_calibrations``):
labeler copies a random sample of the collection's own images (:func:`.copies.make_copies`),
encodes the copies with the collection's model and compares them with the originals' stored
vectors. ``near`` is the 1st percentile of those cosines. The distinct side is each sampled
image's nearest other image in the collection: ``scene`` is the median of those cosines (half
the images have a neighbour of the same scene; with no truth at run time, a stated assumption),
The coarse pass keeps every calibration copy with room to spare (its grey floor
:data:`COARSE_SLACK` times the worst copy's distance from 1, its colour ceiling as many times the
worst copy's distance): it only spares the aligned check the pairs that are plainly not copies.
The aligned check's limits are the copies' own: the largest 99th percentile of a kind of copy, for
the grey residual and for the colour distance. The two are then added, each in units of its limit
(:func:`look_score`): a copy is far off on at most one of them (a crop in grey, a profile change
in colour), while two distinct shots that pass both singly are middling on both; the sum's limit
is again the largest 99th percentile of a kind of copy. Each sampled image's nearest other
thumbnail is measured too and reported (how far the distinct side sits from the limits). There
is no truth at run time; the report says what each number came from.

Neighbours come from a FAISS search over every stored vector, bounded to each image's
:data:`NEIGHBOUR_CAP` closest and kept above the threshold (a range search that a burst of shots
cannot blow up): exact (flat) below ``config.index_ivf_above`` vectors, IVF beyond. Groups are not connected components (a chain of
close pairs can join two unlike ends): the image with the most neighbours becomes a group's
seed, its ungrouped neighbours its members, and every member is within the threshold of its
seed. The image to keep is the largest (pixels, then bytes), then the earliest.
"""

from __future__ import annotations

import io
import math
import time
from typing import Callable, Sequence

import faiss
import numpy as np
from PIL import Image as PILImage
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from ..collection import Collection
from ..encoding.images import BadImage, decode, model_view, thumbnail_bytes
from ..errors import LabelerError
from ..ingest.walk import stored_thumbnail
from ..review import duplicate_marks
from ..store.catalog import (DuplicateCalibration, DuplicateGroup, DuplicateMember, Image, ImageFile, utcnow)
from ..vectors.index import ivf_nlist
from . import copies

LEVELS = ("exact", "near", "scene")
EXACT_COSINE = 0.9999  # float32 noise on one picture's vector stays far above this
CALIBRATION_SAMPLE = 200  # images copied (4 copies each) to calibrate a model
NEAR_QUANTILE = 0.01  # of the copies' cosines
SCENE_QUANTILE = 0.50  # of the nearest neighbours' cosines
ALIGNED_COPY_QUANTILE = 0.99  # of each kind of copy's aligned residual, colour distance and their sum
COARSE_SLACK = 1.5  # the coarse pass's limits: this many times the worst copy's distance
PIXEL_NEIGHBOURS = 16  # each image's closest thumbnails (grey 16 x 16) are candidates too
NEIGHBOUR_CAP = 128  # neighbours kept per image: a burst of a thousand shots must not fill memory
SEARCH_BATCH = 4096  # queries per range search
IVF_NPROBE = 16
ProgressFn = Callable[[int], None] | None


class DuplicateError(LabelerError):
    """A duplicates request that cannot run as asked (unknown level, bad threshold)."""


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise DuplicateError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    return level


# -- pure maths -----------------------------------------------------------------------------------
def neighbour_pairs(vectors: np.ndarray, threshold: float, exact_below: int, cap: int = NEIGHBOUR_CAP,
                    progress: ProgressFn = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Pairs of rows of ``vectors`` ``[N, D]`` (unit) with cosine ≥ ``threshold``: (a ``[P]``,
    b ``[P]`` with a < b, cosine ``[P]``, how they were searched). Each row keeps its ``cap``
    closest; an approximate (IVF) search above ``exact_below`` rows may miss a few pairs.
    ``progress(k)`` after every ``k`` rows searched."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), "flat"
    if n < exact_below:
        index, method = faiss.IndexFlatIP(dim), "flat"
    else:
        nlist = ivf_nlist(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        train = vectors[np.random.default_rng(0).choice(n, min(n, nlist * 40), replace=False)]  # FAISS asks 39 a list
        index.train(train)
        index.nprobe = IVF_NPROBE
        method = f"ivf{nlist},nprobe{IVF_NPROBE}"
    index.add(vectors)
    found_a, found_b, found_s = [], [], []
    k = min(n, cap + 1)  # the image itself comes back too
    for start in range(0, n, SEARCH_BATCH):
        queries = vectors[start:start + SEARCH_BATCH]
        # a range search bounded to each image's ``cap`` closest: a k-NN search kept above the
        # threshold, so a burst of shots (or a dense cluster) cannot fill memory or time
        sims, rows = index.search(queries, k)
        query = np.repeat(np.arange(start, start + len(queries)), k)
        rows, sims = rows.ravel(), sims.ravel()
        keep = (rows >= 0) & (rows != query) & (sims >= threshold)
        query, rows, sims = query[keep], rows[keep], sims[keep]
        found_a.append(np.minimum(query, rows))
        found_b.append(np.maximum(query, rows))
        found_s.append(sims)
        if progress is not None:
            progress(len(queries))
    a, b, s = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s).astype(np.float32)
    key = a * n + b
    order = np.lexsort((-s, key))
    key, a, b, s = key[order], a[order], b[order], s[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]  # a pair seen from both ends once, at its larger cosine
    return a[first], b[first], s[first], method


def seeded_groups(n: int, a: np.ndarray, b: np.ndarray, sims: np.ndarray
                  ) -> list[tuple[int, list[tuple[int, float]]]]:
    """Groups of rows ``0..n-1`` from close pairs (a, b, cosine ``[P]``): ``[(seed, [(member,
    cosine to the seed)])]``. The row with the most pairs (then the highest total cosine, then the
    lowest row) seeds a group holding its neighbours not yet grouped; so every member is close to
    its seed, and a chain a–b–c of close pairs never joins a and c through b alone."""
    if len(a) == 0:
        return []
    rows = np.concatenate([a, b])
    cols = np.concatenate([b, a])
    both = np.concatenate([sims, sims])
    order = np.argsort(rows, kind="stable")
    rows, cols, both = rows[order], cols[order], both[order]
    degree = np.bincount(rows, minlength=n)
    strength = np.bincount(rows, weights=both, minlength=n)
    start = np.concatenate([[0], np.cumsum(degree)])
    grouped = np.zeros(n, bool)
    groups = []
    for seed in np.lexsort((np.arange(n), -strength, -degree)):
        if degree[seed] == 0:
            break
        if grouped[seed]:
            continue
        near = cols[start[seed]:start[seed + 1]]
        cos = both[start[seed]:start[seed + 1]]
        free = ~grouped[near]
        if not free.any():
            continue
        grouped[seed] = True
        grouped[near[free]] = True
        groups.append((int(seed), [(int(m), float(c)) for m, c in zip(near[free], cos[free])]))
    return groups


def _quantiles(values: Sequence[float]) -> dict:
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"count": 0}
    q = np.quantile(v, [0.01, 0.05, 0.5, 0.95, 0.99])
    return {"count": int(len(v)), "min": round(float(v.min()), 4), "q01": round(float(q[0]), 4),
            "q05": round(float(q[1]), 4), "median": round(float(q[2]), 4), "q95": round(float(q[3]), 4),
            "q99": round(float(q[4]), 4), "max": round(float(v.max()), 4)}


def look_score(residual: np.ndarray | float, colour: np.ndarray | float, residual_limit: float,
               colour_limit: float):
    """How unlike two aligned images look, in units of each check's limit: ``residual /
    residual_limit + colour / colour_limit`` (:class:`.copies.Aligned`); 1 is one check at its limit."""
    return residual / max(residual_limit, 1e-4) + colour / max(colour_limit, 1e-4)


def _kind_quantile(values: np.ndarray, kinds: np.ndarray, q: float) -> float:
    """The largest ``q`` quantile of ``values`` over the kinds of copy (the worst kind sets it)."""
    return max(float(np.quantile(values[kinds == k], q)) for k in np.unique(kinds))


def choose_thresholds(copy_cos: np.ndarray, nearest_cos: np.ndarray, copy_pix: np.ndarray,
                      copy_colour: np.ndarray, copy_residual: np.ndarray, copy_aligned_colour: np.ndarray,
                      kinds: np.ndarray | None = None) -> dict:
    """The thresholds from the calibration's measurements (see the module's docstring), all
    ``[C]`` of copies against their originals but ``nearest_cos`` ``[S]`` (each sampled image
    against its nearest other vector): cosine, coarse grey agreement and colour distance,
    aligned residual and colour distance; ``kinds`` ``[C]`` each copy's kind. Returns {near,
    scene, pixels, colour, residual, aligned_colour, look, ...}."""
    near = float(np.floor(np.quantile(copy_cos, NEAR_QUANTILE) * 1e4) / 1e4)
    scene = round(float(np.quantile(nearest_cos, SCENE_QUANTILE)), 4)
    kinds = np.zeros(len(copy_cos), int) if kinds is None else np.asarray(kinds)
    out = {"near": near, "scene": scene, "pixels": None, "colour": None, "residual": None,
           "aligned_colour": None, "look": None, "nearest_passing_near": int((nearest_cos >= near).sum())}
    fine = np.isfinite(copy_residual)
    if fine.sum() >= 10:  # else no pixel checks: the cosine alone
        # the coarse pass: every copy and room to spare; it only spares the aligned check work
        out["pixels"] = round(1 - COARSE_SLACK * (1 - float(copy_pix.min())), 4)
        out["colour"] = float(np.ceil(COARSE_SLACK * float(copy_colour.max()) * 1e4) / 1e4)
        residual = _kind_quantile(copy_residual[fine], kinds[fine], ALIGNED_COPY_QUANTILE)
        colour = _kind_quantile(copy_aligned_colour[fine], kinds[fine], ALIGNED_COPY_QUANTILE)
        out["residual"] = float(np.ceil(residual * 1e4) / 1e4)
        out["aligned_colour"] = float(np.ceil(colour * 1e4) / 1e4)
        score = look_score(copy_residual[fine], copy_aligned_colour[fine], out["residual"], out["aligned_colour"])
        out["look"] = round(_kind_quantile(score, kinds[fine], ALIGNED_COPY_QUANTILE), 4)
    return out


# -- the catalog ------------------------------------------------------------------------------------
def _all_vectors(session: Session, collection: Collection, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for chunk_ids, chunk_vecs in collection.vectors.chunks(session, model_id):
        ids.append(chunk_ids)
        vecs.append(chunk_vecs)
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, collection.models.dim(session, model_id)), np.float32)
    return np.concatenate(ids), np.concatenate(vecs)


def _paths(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """Each image's path as :attr:`Image.path` picks it (the first present one), by image id."""
    out: dict[int, str] = {}
    wanted = sorted(set(map(int, image_ids)))
    for start in range(0, len(wanted), 10_000):
        rows = session.execute(select(ImageFile.image_id, ImageFile.path)
                               .where(ImageFile.image_id.in_(wanted[start:start + 10_000]))
                               .order_by(ImageFile.status != "ok", ImageFile.id))
        for image_id, path in rows:
            out.setdefault(image_id, path)
    return out


def _image_rows(session: Session, image_ids: Sequence[int]) -> dict[int, tuple]:
    """(sha256, width, height, bytes) by image id."""
    out: dict[int, tuple] = {}
    wanted = sorted(set(map(int, image_ids)))
    for start in range(0, len(wanted), 10_000):
        for row in session.execute(select(Image.id, Image.sha256, Image.width, Image.height, Image.size)
                                   .where(Image.id.in_(wanted[start:start + 10_000]))):
            out[row[0]] = tuple(row[1:])
    return out


def _thumbnail_view(img: PILImage.Image, size: int) -> PILImage.Image:
    """``img`` as its stored thumbnail shows it: copies and originals are compared alike."""
    return PILImage.open(io.BytesIO(thumbnail_bytes(img, size))).convert("RGB")


def _stored_looks(collection: Collection, shas: dict[int, str]) -> dict[int, copies.Look]:
    """:func:`copies.look` of each image's stored thumbnail, by image id; none for an image whose
    thumbnail is missing or unreadable."""
    out = {}
    for image_id, sha in shas.items():
        path = stored_thumbnail(collection.config, sha)
        if path is None:
            continue
        try:
            with PILImage.open(path) as img:
                out[image_id] = copies.look(img.convert("RGB"))
        except (OSError, ValueError):
            continue
    return out


def _load_originals(session: Session, collection: Collection, ids: np.ndarray, want: int, seed: int
                    ) -> list[tuple[int, PILImage.Image]]:
    """Up to ``want`` images of ``ids`` decoded from their files, drawn at random; images whose
    file is gone or unreadable are passed over (a few tries per wanted image)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))[:want * 10]
    paths = _paths(session, ids[order])
    out = []
    for pos in order:
        path = paths.get(int(ids[pos]))
        if path is None:
            continue
        try:
            with open(path, "rb") as fh:
                out.append((int(pos), decode(fh, collection.config.max_pixels).image.convert("RGB")))
        except (OSError, BadImage):
            continue
        if len(out) == want:
            break
    return out


def pixel_pairs(looks: dict[int, copies.Look], exact_below: int, k: int = PIXEL_NEIGHBOURS
                ) -> list[tuple[int, int]]:
    """Each image's ``k`` closest thumbnails by their whole grey 16 x 16 picture (unit vectors;
    the same search as the vectors', flat below ``exact_below`` images and IVF beyond): ``[(image
    id, image id)]``, each pair once, the smaller id first. A crop can move a small model's vector
    far from its original's; its grey picture stays close."""
    image_ids = np.array(sorted(looks), np.int64)
    if len(image_ids) < 2:
        return []
    grey = np.stack([looks[int(i)].grey[0] for i in image_ids])
    a, b, _, _ = neighbour_pairs(grey, -1.0, exact_below, cap=k)
    return list(zip(image_ids[a].tolist(), image_ids[b].tolist()))


def calibrate(session: Session, collection: Collection, model_id: int, ids: np.ndarray, vectors: np.ndarray,
              looks: dict[int, copies.Look] | None = None, sample: int = CALIBRATION_SAMPLE,
              seed: int = 0) -> DuplicateCalibration:
    """Measure the model on copies of the collection's own images and store the thresholds
    (see the module's docstring); ``ids``/``vectors``: every stored vector of the model;
    ``looks``: the stored thumbnails' :func:`.copies.look` by image id, where already read (for
    the nearest thumbnails; else read here)."""
    started = time.perf_counter()
    originals = _load_originals(session, collection, ids, sample, seed)
    if len(originals) < 10:
        raise DuplicateError(f"cannot calibrate: only {len(originals)} of the collection's image files could be "
                             "read (at least 10 are needed to make copies from); give --threshold instead")
    encoder = collection.models.encoder(session)
    encoder.prepare_images()
    rng = np.random.default_rng(seed)
    size = collection.config.thumbnail_size
    kinds, inputs, copy_looks, copy_sizes, orig_looks, positions = [], [], [], [], {}, []
    for pos, img in originals:
        orig_looks[pos] = copies.look(_thumbnail_view(img, size))
        for kind, copy in copies.make_copies(img, rng):
            kinds.append(kind)
            positions.append(pos)
            inputs.append(encoder.preprocess(model_view(copy)))
            copy_looks.append(copies.look(_thumbnail_view(copy, size)))
            copy_sizes.append(copy.size)
    copy_vecs = np.concatenate([encoder.encode_images(inputs[i:i + 64]) for i in range(0, len(inputs), 64)])
    positions = np.asarray(positions)
    copy_cos = np.sum(copy_vecs * vectors[positions], axis=1)
    copy_pix, copy_colour = copies.coarse(np.stack([orig_looks[p].grey for p in positions]),
                                          np.stack([c.grey for c in copy_looks]),
                                          np.stack([orig_looks[p].colour for p in positions]),
                                          np.stack([c.colour for c in copy_looks]))
    originals_sizes = {pos: img.size for pos, img in originals}
    copy_aligned = [copies.aligned(orig_looks[p], c, originals_sizes[p], cs)
                    for p, c, cs in zip(positions, copy_looks, copy_sizes)]
    copy_residual = np.array([a.residual for a in copy_aligned])
    copy_aligned_colour = np.array([a.colour for a in copy_aligned])

    # the distinct side: each sampled image's nearest other vector, and its nearest other thumbnail
    sampled = np.array([pos for pos, _ in originals])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors))
    sims, rows = index.search(np.ascontiguousarray(vectors[sampled]), 2)
    other = np.where(rows[:, 0] == sampled, 0, 1)  # the image itself comes first, unless a twin ties
    nearest_cos = sims[np.arange(len(sampled)), 1 - other]
    if looks is None:
        looks = _stored_looks(collection, {i: r[0] for i, r in _image_rows(session, ids).items()})
    nearest = _nearest_thumbnails(looks, [int(ids[p]) for p in sampled], [orig_looks[int(p)] for p in sampled])
    image_rows = _image_rows(session, [q for q in nearest.values()])
    nearest_aligned = [copies.aligned(orig_looks[int(p)], looks[nearest[int(ids[p])]], originals_sizes[int(p)],
                                      image_rows[nearest[int(ids[p])]][1:3])
                       for p in sampled if int(ids[p]) in nearest]
    nearest_residual = np.array([a.residual for a in nearest_aligned])
    nearest_colour = np.array([a.colour for a in nearest_aligned])

    kinds_arr = np.array(kinds)
    chosen = choose_thresholds(copy_cos, nearest_cos, copy_pix, copy_colour, copy_residual, copy_aligned_colour,
                               kinds_arr)
    finite = np.isfinite(nearest_residual)
    nearest_look = (look_score(nearest_residual[finite], nearest_colour[finite], chosen["residual"],
                               chosen["aligned_colour"]) if chosen["residual"] is not None else np.zeros(0))
    by_kind = lambda values: {kind: _quantiles(values[kinds_arr == kind]) for kind in copies.COPY_KINDS}  # noqa: E731
    report = {
        "model": collection.models.spec(session),
        "sample": len(originals),
        "copies_per_image": len(copies.COPY_KINDS),
        "copy_cosine": by_kind(copy_cos),
        "copy_pixels": by_kind(copy_pix),
        "copy_colour": by_kind(copy_colour),
        "copy_residual": by_kind(np.where(np.isfinite(copy_residual), copy_residual, 99.0)),
        "copy_aligned_colour": by_kind(np.where(np.isfinite(copy_aligned_colour), copy_aligned_colour, 99.0)),
        "copies_not_aligned": int((~np.isfinite(copy_residual)).sum()),
        "nearest_cosine": _quantiles(nearest_cos),
        "nearest_thumbnail": {"residual": _quantiles(nearest_residual[finite]),
                              "aligned_colour": _quantiles(nearest_colour[finite]),
                              "look": _quantiles(nearest_look), "not_aligned": int((~finite).sum()),
                              "passing": int((nearest_look <= chosen["look"]).sum()) if chosen["look"] else 0},
        **chosen,
        "method": {"near": f"{NEAR_QUANTILE:g} quantile of the copies' cosine with their original",
                   "scene": f"{SCENE_QUANTILE:g} quantile of the nearest neighbours' cosine",
                   "pixels": f"coarse pass: 1 - {COARSE_SLACK:g} x (1 - the least grey agreement of a copy)",
                   "colour": f"coarse pass: {COARSE_SLACK:g} x the largest colour distance of a copy",
                   "residual": f"the largest {ALIGNED_COPY_QUANTILE:g} quantile of a kind of copy's aligned "
                               "grey residual (worst cell)",
                   "aligned_colour": f"the largest {ALIGNED_COPY_QUANTILE:g} quantile of a kind of copy's "
                                     "aligned colour distance",
                   "look": f"the largest {ALIGNED_COPY_QUANTILE:g} quantile of a kind of copy's look score "
                           "residual / residual limit + aligned colour / its limit"},
        "seconds": round(time.perf_counter() - started, 1),
    }
    record = DuplicateCalibration(model_id=model_id, near=chosen["near"], scene=chosen["scene"],
                                  pixels=chosen["pixels"], colour=chosen["colour"], look=chosen["look"],
                                  residual=chosen["residual"], aligned_colour=chosen["aligned_colour"],
                                  report=report)
    session.add(record)
    session.flush()
    return record


def _nearest_thumbnails(looks: dict[int, copies.Look], image_ids: list[int], own: list[copies.Look]
                        ) -> dict[int, int]:
    """Each of ``image_ids``' nearest other stored thumbnail (whole grey 16 x 16 picture; ``own``:
    their looks as the calibration read them), by image id."""
    others = np.array(sorted(looks), np.int64)
    if len(others) < 2:
        return {}
    index = faiss.IndexFlatIP(copies.GRID * copies.GRID)
    index.add(np.ascontiguousarray(np.stack([looks[int(i)].grey[0] for i in others]), np.float32))
    _, rows = index.search(np.ascontiguousarray(np.stack([lk.grey[0] for lk in own]), np.float32), 2)
    out = {}
    for image_id, found in zip(image_ids, rows):
        candidates = [int(others[r]) for r in found if r >= 0 and int(others[r]) != image_id]
        if candidates:
            out[image_id] = candidates[0]
    return out


def latest_calibration(session: Session, model_id: int) -> DuplicateCalibration | None:
    """The model's newest calibration; None where there is none, or where it has pixel limits
    but predates the aligned check (migration 0021: its limits mean other things, measure again)."""
    found = session.scalars(select(DuplicateCalibration).where(DuplicateCalibration.model_id == model_id)
                            .order_by(DuplicateCalibration.id.desc()).limit(1)).first()
    stale = found is not None and found.pixels is not None and found.residual is None
    return None if stale else found


def _verify(session: Session, ids: np.ndarray, a: np.ndarray, b: np.ndarray, looks: dict[int, copies.Look],
            calibration: DuplicateCalibration) -> tuple[np.ndarray, dict]:
    """Which pairs (rows of ``ids``) pass the thumbnail checks (``[P]`` bool), and counts; a pair
    missing a thumbnail passes on its cosine. The coarse pass runs on every pair at once, the
    aligned check on those it keeps."""
    keep = np.ones(len(a), bool)
    has = np.array([int(x) in looks and int(y) in looks for x, y in zip(ids[a], ids[b])], bool)
    checked = np.flatnonzero(has)
    coarse_kept = np.zeros(len(a), bool)
    for start in range(0, len(checked), 4096):
        rows = checked[start:start + 4096]
        one = [looks[int(i)] for i in ids[a[rows]]]
        other = [looks[int(i)] for i in ids[b[rows]]]
        agree, dist = copies.coarse(np.stack([lk.grey for lk in one]), np.stack([lk.grey for lk in other]),
                                    np.stack([lk.colour for lk in one]), np.stack([lk.colour for lk in other]))
        coarse_kept[rows] = (agree >= calibration.pixels) & (dist <= calibration.colour)
    keep[checked] = False
    fine = np.flatnonzero(coarse_kept)
    sizes = _image_rows(session, np.unique(np.concatenate([ids[a[fine]], ids[b[fine]]])) if len(fine) else [])
    for k in fine:
        x, y = int(ids[a[k]]), int(ids[b[k]])
        found = copies.aligned(looks[x], looks[y], sizes[x][1:3], sizes[y][1:3])
        keep[k] = (found.residual <= calibration.residual and found.colour <= calibration.aligned_colour
                   and look_score(found.residual, found.colour, calibration.residual,
                                  calibration.aligned_colour) <= calibration.look)
    return keep, {"candidate_pairs": int(len(a)), "checked": int(len(checked)), "aligned": int(len(fine)),
                  "rejected": int((~keep).sum()), "unverified": int(len(a) - len(checked))}


def _with_pixel_pairs(ids: np.ndarray, vectors: np.ndarray, a: np.ndarray, b: np.ndarray, sims: np.ndarray,
                      looks: dict[int, copies.Look], exact_below: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The vector pairs plus each image's closest thumbnails (rows of ``ids``; their cosine for
    grouping), each pair once; and how many the thumbnails added."""
    row_of = {int(i): r for r, i in enumerate(ids)}
    extra = [(row_of[x], row_of[y]) for x, y in pixel_pairs(looks, exact_below) if x in row_of and y in row_of]
    if not extra:
        return a, b, sims, 0
    known = set(zip(a.tolist(), b.tolist()))
    extra = np.array([(min(x, y), max(x, y)) for x, y in extra if (min(x, y), max(x, y)) not in known],
                     np.int64).reshape(-1, 2)
    if not len(extra):
        return a, b, sims, 0
    cos = np.sum(vectors[extra[:, 0]] * vectors[extra[:, 1]], axis=1).astype(np.float32)
    return (np.concatenate([a, extra[:, 0]]), np.concatenate([b, extra[:, 1]]), np.concatenate([sims, cos]),
            len(extra))


def find_duplicates(session: Session, collection: Collection, level: str, threshold: float | None = None,
                    recalibrate: bool = False, progress: ProgressFn = None, total: ProgressFn = None) -> dict:
    """Find and store the duplicate groups of ``level`` for the model in force; returns the
    ``duplicates --json`` report. ``threshold`` overrides the calibrated cosine (and skips the
    pixel checks); ``recalibrate`` measures the model again."""
    check_level(level)
    if threshold is not None and not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise DuplicateError(f"--threshold must be a cosine in (0, 1], not {threshold}")
    started = time.perf_counter()
    model_id = collection.models.require_id(session)
    ids, vectors = _all_vectors(session, collection, model_id)
    if total is not None:
        total(len(ids))
    calibration = looks = None
    if threshold is None and level == "exact":
        threshold = EXACT_COSINE
    elif threshold is None:
        calibration = None if recalibrate else latest_calibration(session, model_id)
        if calibration is None and len(ids) < 10:
            return _empty_report(level, ids, started)
        if level == "near" or calibration is None:
            looks = _stored_looks(collection, {i: r[0] for i, r in _image_rows(session, ids).items()})
        if calibration is None:
            calibration = calibrate(session, collection, model_id, ids, vectors, looks)
        threshold = calibration.near if level == "near" else calibration.scene
    a, b, sims, method = neighbour_pairs(vectors, threshold, collection.config.index_ivf_above, progress=progress)
    verification = None
    if level == "near" and calibration is not None and calibration.pixels is not None:
        a, b, sims, added = _with_pixel_pairs(ids, vectors, a, b, sims, looks, collection.config.index_ivf_above)
        keep, verification = _verify(session, ids, a, b, looks, calibration)
        verification["thumbnail_pairs_added"] = added
        a, b, sims = a[keep], b[keep], sims[keep]
    groups = seeded_groups(len(ids), a, b, sims)
    _store(session, model_id, level, threshold, ids, groups)
    report = group_report(session, model_id, level)
    report.update({"model": collection.models.spec(session), "threshold": threshold, "search": method,
                   "images": int(len(ids)), "pairs": int(len(a)), "verification": verification,
                   "calibration": calibration.report if calibration is not None else None,
                   "seconds": round(time.perf_counter() - started, 2)})
    return report


def _empty_report(level: str, ids: np.ndarray, started: float) -> dict:
    return {"level": level, "groups": [], "images_in_groups": 0, "images": int(len(ids)), "threshold": None,
            "calibration": None, "note": "fewer than 10 images: nothing to calibrate on, no groups",
            "seconds": round(time.perf_counter() - started, 2)}


def _keep(members: Sequence[int], rows: dict[int, tuple]) -> int:
    """The image to keep: most pixels, then most bytes, then the earliest (lowest id)."""
    return min(members, key=lambda i: (-(rows[i][1] * rows[i][2]), -rows[i][3], i))


def _store(session: Session, model_id: int, level: str, threshold: float, ids: np.ndarray,
           groups: list[tuple[int, list[tuple[int, float]]]]) -> None:
    """Replace the model's groups at ``level`` with ``groups`` (rows of ``ids``). Group ids are
    given here (one executemany), so two runs at once must not read the same largest id: on
    PostgreSQL a lock on the table makes the second wait until the first commits; on SQLite the
    DELETE below already holds the catalog's one write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE duplicate_groups IN SHARE ROW EXCLUSIVE MODE"))
    old = select(DuplicateGroup.id).where(DuplicateGroup.model_id == model_id, DuplicateGroup.level == level)
    session.execute(delete(DuplicateMember).where(DuplicateMember.group_id.in_(old)))
    session.execute(delete(DuplicateGroup).where(DuplicateGroup.model_id == model_id, DuplicateGroup.level == level))
    if not groups:
        return
    rows = _image_rows(session, [ids[s] for s, _ in groups] + [ids[m] for _, ms in groups for m, _ in ms])
    now = utcnow()
    group_rows, member_rows = [], []
    for seed, members in groups:
        images = [int(ids[seed])] + [int(ids[m]) for m, _ in members]
        group_rows.append({"model_id": model_id, "level": level, "seed_image_id": images[0],
                           "keep_image_id": _keep(images, rows), "threshold": threshold, "created_at": now})
    first = (session.scalar(select(func.max(DuplicateGroup.id))) or 0) + 1
    for start in range(0, len(group_rows), 10_000):  # ids given: one executemany, no RETURNING per row
        chunk = group_rows[start:start + 10_000]
        for k, row in enumerate(chunk):
            row["id"] = first + start + k
        session.execute(insert(DuplicateGroup), chunk)
    for k, (seed, members) in enumerate(groups):
        member_rows.append({"group_id": first + k, "image_id": int(ids[seed]), "similarity": 1.0})
        member_rows += [{"group_id": first + k, "image_id": int(ids[m]), "similarity": round(c, 6)}
                        for m, c in members]
    for start in range(0, len(member_rows), 50_000):
        session.execute(insert(DuplicateMember), member_rows[start:start + 50_000])


def group_report(session: Session, model_id: int, level: str, limit: int | None = None, after: int = 0) -> dict:
    """The stored groups of ``level``: ``{"level", "groups": [{"id", "images": [{"image_id", "path",
    "similarity", "width", "height", "bytes"}], "keep"}], "images_in_groups"}``, groups by id
    (``limit`` of them after group id ``after``); images by similarity to the seed."""
    check_level(level)
    query = (select(DuplicateGroup.id, DuplicateGroup.keep_image_id)
             .where(DuplicateGroup.model_id == model_id, DuplicateGroup.level == level,
                    DuplicateGroup.id > after).order_by(DuplicateGroup.id))
    groups = session.execute(query.limit(limit) if limit else query).all()
    in_groups = session.scalar(select(func.count()).select_from(DuplicateMember).join(
        DuplicateGroup, DuplicateGroup.id == DuplicateMember.group_id).where(
        DuplicateGroup.model_id == model_id, DuplicateGroup.level == level)) or 0
    members: dict[int, list] = {gid: [] for gid, _ in groups}
    wanted = list(members)
    for start in range(0, len(wanted), 10_000):
        for gid, image_id, sim in session.execute(
                select(DuplicateMember.group_id, DuplicateMember.image_id, DuplicateMember.similarity)
                .where(DuplicateMember.group_id.in_(wanted[start:start + 10_000]))):
            members[gid].append((image_id, sim))
    image_ids = [i for ms in members.values() for i, _ in ms]
    paths, rows = _paths(session, image_ids), _image_rows(session, image_ids)
    out = []
    for gid, keep in groups:
        ordered = sorted(members[gid], key=lambda m: (-m[1], m[0]))
        out.append({"id": gid, "keep": keep, "images": [
            {"image_id": i, "path": paths.get(i), "similarity": round(s, 4), "width": rows[i][1],
             "height": rows[i][2], "bytes": rows[i][3]} for i, s in ordered]})
    return {"level": level, "groups": out, "images_in_groups": int(in_groups)}


def listed_groups(session: Session, collection: Collection, level: str, limit: int | None = None,
                  after: int = 0) -> dict:
    """:func:`group_report` for the model in force, each image with its standing mark
    (``duplicate_of``: the image it was marked a duplicate of, else None); ``next``: the group
    id to page on after, None at the end."""
    check_level(level)
    model_id = collection.models.current_id(session)
    if model_id is None:
        return {"level": level, "groups": [], "images_in_groups": 0, "next": None}
    report = group_report(session, model_id, level, limit + 1 if limit else None, after)
    more = bool(limit) and len(report["groups"]) > limit
    report["groups"] = report["groups"][:limit] if limit else report["groups"]
    marks = duplicate_marks.marked(session, [i["image_id"] for g in report["groups"] for i in g["images"]])
    for group in report["groups"]:
        for image in group["images"]:
            image["duplicate_of"] = marks.get(image["image_id"])
    report["next"] = report["groups"][-1]["id"] if more else None
    return report
