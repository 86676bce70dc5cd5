"""Duplicate groups from the stored vectors, at three levels, with thresholds calibrated per model.

* ``exact``: the same decoded picture (vectors equal to within :data:`EXACT_COSINE`), e.g. a PNG
  and its lossless re-save. Byte-identical files are already one image (one content hash).
* ``near``: the same picture re-encoded, resized, slightly cropped or with a changed colour
  profile. A pair must reach the calibrated ``near`` cosine *and*, where both thumbnails exist,
  the calibrated thumbnail checks (:mod:`.copies`: grey-level agreement, colour distance): a small
  model can put two shots of one subject as close as a copy, but their pixels differ.
* ``scene``: the same subject and setting, a different shot: a lower cosine, no pixel check.

How the thresholds are found (:func:`calibrate`, stored per model in ``duplicate_calibrations``):
labeler copies a random sample of the collection's own images (:func:`.copies.make_copies`),
encodes the copies with the collection's model and compares them with the originals' stored
vectors. ``near`` is the 1st percentile of those cosines. The distinct side is each sampled
image's nearest other image in the collection: ``scene`` is the median of those cosines (half
the images have a neighbour of the same scene; with no truth at run time, a stated assumption),
and the pixel threshold
lies midway between the copies' 2nd percentile and the 95th percentile of the nearest
neighbours that pass ``near`` (percentiles, because a collection's nearest neighbours include
its real copies); the colour distance is the largest 98th percentile of a kind of copy. The two
checks are then added, each in units of its threshold (:func:`look_score`): a copy is far off on
at most one of them (a crop in grey, a profile change in colour), while two distinct shots that
pass both singly are middling on both. The sum's limit is the largest 98th percentile of a kind
of copy. There is no truth at run time; the report says what each number came from.

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
PIXEL_COPY_QUANTILE = 0.02
PIXEL_DISTINCT_QUANTILE = 0.95
COLOUR_COPY_QUANTILE = 0.98
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


def look_score(pix: np.ndarray | float, colour: np.ndarray | float, pixels: float, colour_limit: float):
    """How unlike two images look, in units of each check's threshold: ``(1 - agreement) / (1 -
    pixels) + colour distance / colour_limit``; 1 is one check at its threshold."""
    return (1.0 - pix) / max(1.0 - pixels, 1e-3) + colour / max(colour_limit, 1e-3)


def choose_thresholds(copy_cos: np.ndarray, nearest_cos: np.ndarray, copy_pix: np.ndarray,
                      nearest_pix: np.ndarray, copy_colour: np.ndarray, kinds: np.ndarray | None = None) -> dict:
    """The thresholds from the calibration's measurements (see the module's docstring):
    ``copy_cos``/``copy_pix``/``copy_colour`` ``[C]`` of copies against their originals,
    ``nearest_cos``/``nearest_pix`` ``[S]`` of each sampled image against its nearest other
    image (NaN pixels: no thumbnail); ``kinds`` ``[C]`` each copy's kind. Returns {near, scene,
    pixels, colour, look, ...}."""
    near = float(np.floor(np.quantile(copy_cos, NEAR_QUANTILE) * 1e4) / 1e4)
    scene = round(float(np.quantile(nearest_cos, SCENE_QUANTILE)), 4)
    kinds = np.zeros(len(copy_cos), int) if kinds is None else np.asarray(kinds)
    passing = nearest_pix[(nearest_cos >= near) & np.isfinite(nearest_pix)]
    pixels = colour = look = None
    overlap = False
    if len(copy_pix):
        # the grey check over every copy (its worst kind, the crops, would admit far more
        # distinct shots); the colour check by its worst kind, or profile changes fail it
        copies_low = float(np.quantile(copy_pix, PIXEL_COPY_QUANTILE))
        if len(passing) >= 5:
            distinct_high = float(np.quantile(passing, PIXEL_DISTINCT_QUANTILE))
            overlap = distinct_high >= copies_low
            pixels = copies_low if overlap else (copies_low + distinct_high) / 2
        else:  # the vectors alone keep distinct images apart: the check only catches outliers
            pixels = copies_low
        pixels = round(pixels, 4)
        worst = max(float(np.quantile(copy_colour[kinds == k], COLOUR_COPY_QUANTILE)) for k in np.unique(kinds))
        colour = float(np.ceil(worst * 1e4) / 1e4)
        score = look_score(copy_pix, copy_colour, pixels, colour)
        look = round(max(float(np.quantile(score[kinds == k], COLOUR_COPY_QUANTILE)) for k in np.unique(kinds)), 4)
    return {"near": near, "scene": scene, "pixels": pixels, "colour": colour, "look": look,
            "pixels_overlap": overlap,
            "nearest_passing_near": int((nearest_cos >= near).sum())}


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


def calibrate(session: Session, collection: Collection, model_id: int, ids: np.ndarray, vectors: np.ndarray,
              sample: int = CALIBRATION_SAMPLE, seed: int = 0) -> DuplicateCalibration:
    """Measure the model on copies of the collection's own images and store the thresholds
    (see the module's docstring); ``ids``/``vectors``: every stored vector of the model."""
    started = time.perf_counter()
    originals = _load_originals(session, collection, ids, sample, seed)
    if len(originals) < 10:
        raise DuplicateError(f"cannot calibrate: only {len(originals)} of the collection's image files could be "
                             "read (at least 10 are needed to make copies from); give --threshold instead")
    encoder = collection.models.encoder(session)
    encoder.prepare_images()
    rng = np.random.default_rng(seed)
    size = collection.config.thumbnail_size
    kinds, inputs, copy_looks, orig_looks, positions = [], [], [], {}, []
    for pos, img in originals:
        orig_looks[pos] = copies.look(_thumbnail_view(img, size))
        for kind, copy in copies.make_copies(img, rng):
            kinds.append(kind)
            positions.append(pos)
            inputs.append(encoder.preprocess(model_view(copy)))
            copy_looks.append(copies.look(_thumbnail_view(copy, size)))
    copy_vecs = np.concatenate([encoder.encode_images(inputs[i:i + 64]) for i in range(0, len(inputs), 64)])
    positions = np.asarray(positions)
    copy_cos = np.sum(copy_vecs * vectors[positions], axis=1)
    copy_pix = np.array([copies.agreement(orig_looks[p].grey, c.grey) for p, c in zip(positions, copy_looks)])
    copy_colour = np.array([copies.colour_distance(orig_looks[p].colour, c.colour)
                            for p, c in zip(positions, copy_looks)])

    # the distinct side: each sampled image's nearest other image in the collection
    sampled = np.array([pos for pos, _ in originals])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors))
    sims, rows = index.search(np.ascontiguousarray(vectors[sampled]), 2)
    other = np.where(rows[:, 0] == sampled, 0, 1)  # the image itself comes first, unless a twin ties
    nearest = rows[np.arange(len(sampled)), 1 - other]
    nearest_cos = sims[np.arange(len(sampled)), 1 - other]
    shas = _image_rows(session, ids[nearest])
    nearest_looks = _stored_looks(collection, {i: r[0] for i, r in shas.items()})
    nearest_pix = np.array([copies.agreement(orig_looks[int(p)].grey, nearest_looks[int(ids[q])].grey)
                            if int(ids[q]) in nearest_looks else np.nan for p, q in zip(sampled, nearest)])
    nearest_colour = np.array([copies.colour_distance(orig_looks[int(p)].colour, nearest_looks[int(ids[q])].colour)
                               if int(ids[q]) in nearest_looks else np.nan for p, q in zip(sampled, nearest)])

    kinds_arr = np.array(kinds)
    chosen = choose_thresholds(copy_cos, nearest_cos, copy_pix, nearest_pix, copy_colour, kinds_arr)
    report = {
        "model": collection.models.spec(session),
        "sample": len(originals),
        "copies_per_image": len(copies.COPY_KINDS),
        "copy_cosine": {kind: _quantiles(copy_cos[kinds_arr == kind]) for kind in copies.COPY_KINDS},
        "copy_pixels": {kind: _quantiles(copy_pix[kinds_arr == kind]) for kind in copies.COPY_KINDS},
        "nearest_cosine": _quantiles(nearest_cos),
        "nearest_pixels": _quantiles(nearest_pix[np.isfinite(nearest_pix)]),
        "copy_colour": {kind: _quantiles(copy_colour[kinds_arr == kind]) for kind in copies.COPY_KINDS},
        "nearest_colour": _quantiles(nearest_colour[np.isfinite(nearest_colour)]),
        **chosen,
        "method": {"near": f"{NEAR_QUANTILE:g} quantile of the copies' cosine with their original",
                   "scene": f"{SCENE_QUANTILE:g} quantile of the nearest neighbours' cosine",
                   "pixels": f"midway between the copies' {PIXEL_COPY_QUANTILE:g} quantile and the "
                             f"{PIXEL_DISTINCT_QUANTILE:g} quantile of nearest neighbours passing near "
                             "(the copies' quantile alone where they overlap or too few pass)",
                   "colour": f"the largest {COLOUR_COPY_QUANTILE:g} quantile of a kind of copy's colour distance",
                   "look": f"the largest {COLOUR_COPY_QUANTILE:g} quantile of a kind of copy's look score "
                           "(1 - agreement) / (1 - pixels) + colour distance / colour"},
        "seconds": round(time.perf_counter() - started, 1),
    }
    record = DuplicateCalibration(model_id=model_id, near=chosen["near"], scene=chosen["scene"],
                                  pixels=chosen["pixels"], colour=chosen["colour"], look=chosen["look"],
                                  report=report)
    session.add(record)
    session.flush()
    return record


def latest_calibration(session: Session, model_id: int) -> DuplicateCalibration | None:
    return session.scalars(select(DuplicateCalibration).where(DuplicateCalibration.model_id == model_id)
                           .order_by(DuplicateCalibration.id.desc()).limit(1)).first()


def _verify(collection: Collection, session: Session, ids: np.ndarray, a: np.ndarray, b: np.ndarray,
            pixels: float, colour: float | None, look: float | None) -> tuple[np.ndarray, dict]:
    """Which pairs pass the thumbnail checks (``[P]`` bool), and counts; a pair missing a thumbnail
    passes on its cosine."""
    involved = np.unique(np.concatenate([a, b]))
    rows = _image_rows(session, ids[involved])
    looks = _stored_looks(collection, {i: r[0] for i, r in rows.items()})
    keep = np.ones(len(a), bool)
    checked = 0
    for k, (x, y) in enumerate(zip(ids[a], ids[b])):
        lx, ly = looks.get(int(x)), looks.get(int(y))
        if lx is None or ly is None:
            continue
        checked += 1
        pix, dist = copies.agreement(lx.grey, ly.grey), copies.colour_distance(lx.colour, ly.colour)
        keep[k] = pix >= pixels and (colour is None or (
            dist <= colour and (look is None or look_score(pix, dist, pixels, colour) <= look)))
    return keep, {"candidate_pairs": int(len(a)), "checked": checked, "rejected": int((~keep).sum()),
                  "unverified": int(len(a) - checked)}


def find_duplicates(session: Session, collection: Collection, level: str, threshold: float | None = None,
                    recalibrate: bool = False, progress: ProgressFn = None, total: ProgressFn = None) -> dict:
    """Find and store the duplicate groups of ``level`` for the model in force; returns the
    ``duplicates --json`` report. ``threshold`` overrides the calibrated cosine (and skips the
    pixel check); ``recalibrate`` measures the model again."""
    check_level(level)
    if threshold is not None and not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise DuplicateError(f"--threshold must be a cosine in (0, 1], not {threshold}")
    started = time.perf_counter()
    model_id = collection.models.require_id(session)
    ids, vectors = _all_vectors(session, collection, model_id)
    if total is not None:
        total(len(ids))
    calibration = None
    pixels = colour = look = None
    if threshold is None and level == "exact":
        threshold = EXACT_COSINE
    elif threshold is None:
        calibration = None if recalibrate else latest_calibration(session, model_id)
        if calibration is None:
            if len(ids) < 10:
                return _empty_report(level, ids, started)
            calibration = calibrate(session, collection, model_id, ids, vectors)
        threshold = calibration.near if level == "near" else calibration.scene
        pixels = calibration.pixels if level == "near" else None
        colour = calibration.colour if level == "near" else None
        look = calibration.look if level == "near" else None
    a, b, sims, method = neighbour_pairs(vectors, threshold, collection.config.index_ivf_above, progress=progress)
    verification = None
    if pixels is not None and len(a):
        keep, verification = _verify(collection, session, ids, a, b, pixels, colour, look)
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
