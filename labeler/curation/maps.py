"""The map of the collection in the catalog: each model's layout, its positions, colours and selections.

:func:`update_map` fits a model's layout the first time (:mod:`.layout`: a sample fitted, the
rest placed) and afterwards only places the images that have no position yet, beside the fitted
sample, so the old ones never move. Positions are catalog rows (``map_positions``, migration
0019), so a map works on PostgreSQL as on SQLite and follows the catalog wherever it goes.
:func:`select` keeps a box, lasso or id list as a ``map_selections`` row, which the review queue
filters on (``selection``), so the queue holds exactly those images.
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from ..collection import Collection
from ..files import replace_atomically
from ..review import duplicate_marks
from ..store.catalog import (DuplicateGroup, DuplicateMember, Embedding, Image, Label, MapLayout, MapPosition,
                             MapSelection, MapSelectionMember, utcnow)
from ..store.db import driver_rows
from . import layout
from .layout import LayoutError, ProgressFn

log = logging.getLogger(__name__)
MAX_SELECTION = 100_000  # more ids than this: a filter serves better than a list
COLOURS = ("status", "confidence", "suspect", "duplicates")  # or a group's name: its labels' values
BUCKETS = 5  # confidence and suspect score in fifths
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939")
RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")  # viridis in fifths: low to high


@dataclass
class Points:
    """A model's map as read at ``version``: ids ``[N]`` (ascending) and places ``[N, 2]`` of present images."""

    version: int
    ids: np.ndarray
    xy: np.ndarray

    def bounds(self) -> list[float]:
        if not len(self.ids):
            return [-1.0, -1.0, 1.0, 1.0]
        low, high = self.xy.min(axis=0), self.xy.max(axis=0)
        pad = np.maximum((high - low) * 0.02, 1e-3)
        return [float(low[0] - pad[0]), float(low[1] - pad[1]), float(high[0] + pad[0]), float(high[1] + pad[1])]


def _unplaced(session: Session, model_id: int) -> np.ndarray:
    placed = select(MapPosition.image_id).where(MapPosition.model_id == model_id,
                                                MapPosition.image_id == Embedding.image_id).exists()
    present = select(Image.id).where(Image.id == Embedding.image_id, Image.status == "ok").exists()
    query = select(Embedding.image_id).where(Embedding.model_id == model_id, present, ~placed)
    return np.fromiter(session.scalars(query.order_by(Embedding.image_id)), dtype=np.int64)


def _insert(session: Session, model_id: int, ids: np.ndarray, xy: np.ndarray, anchor: bool,
            progress: ProgressFn) -> None:
    for start in range(0, len(ids), 50_000):  # one executemany a chunk
        rows = [{"model_id": model_id, "image_id": int(i), "x": float(p[0]), "y": float(p[1]), "anchor": anchor}
                for i, p in zip(ids[start:start + 50_000], xy[start:start + 50_000])]
        session.execute(insert(MapPosition), rows)


def _all_vectors(session: Session, collection: Collection, model_id: int, progress: ProgressFn
                 ) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for chunk_ids, chunk_vecs in collection.vectors.chunks(session, model_id):
        ids.append(chunk_ids)
        vecs.append(chunk_vecs)
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    return np.concatenate(ids), np.concatenate(vecs)


def update_map(session: Session, collection: Collection, seed: int = 0, refit: bool = False,
               sample: int = layout.FIT_SAMPLE, progress: ProgressFn = None, total: ProgressFn = None) -> dict:
    """Fit the model's map (the first time, or with ``refit``) or place its new images; returns
    ``{"model", "method", "images", "anchors", "placed", "fitted", "seconds", ...}``.
    :class:`LayoutError` below :data:`layout.MIN_VECTORS` vectors. ``total(n)`` then
    ``progress(k)``: the images to place, and each batch placed."""
    started = time.perf_counter()
    model_id = collection.models.require_id(session)
    record = session.get(MapLayout, model_id)
    if record is None or refit:
        return _fit(session, collection, model_id, record, seed, sample, progress, total, started)
    new_ids = _unplaced(session, model_id)
    if total is not None:
        total(len(new_ids))
    placed = 0
    if len(new_ids):
        anchor_ids, anchor_xy = _anchors(session, model_id)
        _, anchor_vecs = collection.vectors.read(session, anchor_ids, model_id=model_id)
        new_ids, new_vecs = collection.vectors.read(session, new_ids, model_id=model_id)
        xy = layout.place(anchor_vecs, anchor_xy, new_vecs, progress=progress)
        _insert(session, model_id, new_ids, xy, False, progress)
        placed = len(new_ids)
        session.execute(update(MapLayout).where(MapLayout.model_id == model_id)
                        .values(version=MapLayout.version + 1, updated_at=utcnow()))
    session.flush()
    return _report(session, collection, model_id, fitted=False, placed=placed, started=started)


def _anchors(session: Session, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    rows = session.execute(select(MapPosition.image_id, MapPosition.x, MapPosition.y).where(
        MapPosition.model_id == model_id, MapPosition.anchor.is_(True)).order_by(MapPosition.image_id)).all()
    return (np.array([r[0] for r in rows], np.int64),
            np.array([(r[1], r[2]) for r in rows], np.float32).reshape(-1, 2))


def _fit(session: Session, collection: Collection, model_id: int, record: MapLayout | None, seed: int,
         sample: int, progress: ProgressFn, total: ProgressFn, started: float) -> dict:
    ids, vecs = _all_vectors(session, collection, model_id, progress)
    if len(ids) < layout.MIN_VECTORS:
        raise LayoutError(f"a map needs at least {layout.MIN_VECTORS} images with vectors, "
                          f"the collection has {len(ids)}")
    if total is not None:
        total(len(ids))
    rows = layout.sample_rows(len(ids), sample, seed)
    fit_started = time.perf_counter()
    anchor_xy = layout.fit(vecs[rows], seed=seed, n_jobs=collection.config.workers or (os.cpu_count() or 2))
    fit_seconds = time.perf_counter() - fit_started
    if progress is not None:
        progress(len(rows))
    rest = np.ones(len(ids), bool)
    rest[rows] = False
    rest_xy = layout.place(vecs[rows], anchor_xy, vecs[rest], progress=progress)
    session.execute(delete(MapPosition).where(MapPosition.model_id == model_id))
    _insert(session, model_id, ids[rows], anchor_xy, True, None)
    _insert(session, model_id, ids[rest], rest_xy, False, None)
    now = utcnow()
    method = f"pca{layout.PCA_DIMS}+opentsne, knn{layout.PLACE_NEIGHBOURS} placement"
    if record is None:
        record = MapLayout(model_id=model_id, version=1, created_at=now)
        session.add(record)
    else:
        record.version += 1
    record.method, record.seed, record.anchors, record.updated_at = method, seed, len(rows), now
    record.report = {"fit_seconds": round(fit_seconds, 2), "sample": int(len(rows)), "images": int(len(ids))}
    session.flush()
    return _report(session, collection, model_id, fitted=True, placed=int(rest.sum()), started=started,
                   fit_seconds=fit_seconds)


def _report(session: Session, collection: Collection, model_id: int, fitted: bool, placed: int, started: float,
            fit_seconds: float | None = None) -> dict:
    read_points(session, model_id, collection.config.index_dir)  # keeps the places' file for the web's first read
    record = session.get(MapLayout, model_id)
    images = session.scalar(select(func.count()).select_from(MapPosition).where(MapPosition.model_id == model_id))
    return {"model": collection.models.spec(session), "method": record.method, "seed": record.seed,
            "images": int(images or 0), "anchors": record.anchors, "fitted": fitted, "placed": int(placed),
            "version": record.version, "fit_seconds": round(fit_seconds, 2) if fit_seconds is not None else None,
            "seconds": round(time.perf_counter() - started, 2)}


def layout_version(session: Session, model_id: int) -> int | None:
    """The model's map version (one indexed read), None before any map."""
    return session.scalar(select(MapLayout.version).where(MapLayout.model_id == model_id))


def read_points(session: Session, model_id: int, directory: Path | None = None) -> Points:
    """Every present image's place on the model's map, by ascending id.

    With ``directory`` (the home's index folder) the places also come from, and go to, a file kept
    there beside the FAISS index (``map-<model>.npz``): a copy of the catalog's rows, used only while
    the layout's version and stamp and the number of its rows match the catalog's. A million places
    load from it in milliseconds instead of seconds; the catalog stays the truth."""
    stamp = session.execute(select(MapLayout.version, MapLayout.updated_at)
                            .where(MapLayout.model_id == model_id)).first()
    if stamp is None:
        raise LayoutError("no map yet: run `manage.py map` first")
    version, updated_at = stamp
    rows = session.scalar(select(func.count()).select_from(MapPosition).where(MapPosition.model_id == model_id))
    key = f"{model_id}:{version}:{updated_at.isoformat()}:{rows}"
    path = directory / f"map-{model_id}.npz" if directory is not None else None
    ids, xy = _kept_points(path, key)
    if ids is None:
        # in the table's own order, sorted here: ordering by image_id walks the primary key, a
        # random page per row, since a map is written as its anchors and then the rest
        found = driver_rows(session, select(MapPosition.image_id, MapPosition.x, MapPosition.y)
                            .where(MapPosition.model_id == model_id))
        ids = np.fromiter((r[0] for r in found), np.int64, count=len(found))
        xy = np.array([(r[1], r[2]) for r in found], np.float32).reshape(-1, 2)
        order = np.argsort(ids, kind="stable")
        ids, xy = ids[order], xy[order]
        if path is not None:
            _keep_points(path, key, ids, xy)
    gone = np.fromiter(session.scalars(select(Image.id).where(Image.status != "ok")), np.int64)
    if len(gone):
        present = ~np.isin(ids, gone)
        ids, xy = ids[present], xy[present]
    return Points(version, ids, xy)


def _kept_points(path: Path | None, key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    if path is None or not path.is_file():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as kept:
            if str(kept["key"]) != key:
                return None, None
            return kept["ids"], kept["xy"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # torn or foreign: the catalog answers
        log.warning("map: ignoring %s (%s); the places come from the catalog", path, exc)
        return None, None


def _keep_points(path: Path, key: str, ids: np.ndarray, xy: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            np.savez(out, key=np.array(key), ids=ids, xy=xy)

    try:  # a copy the catalog can make again: no fsync
        replace_atomically(path, write, durable=False)
    except OSError as exc:  # a read-only home still shows its map, read from the catalog each time
        log.warning("map: cannot keep the places in %s (%s)", path, exc)


# -- colours --------------------------------------------------------------------------------------
def _positions(ids: np.ndarray, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``image_ids`` sits in ``ids`` (ascending): (rows ``[K]``, which of ``image_ids`` ``[K]``)."""
    at = np.searchsorted(ids, image_ids)
    found = at < len(ids)
    found[found] = ids[at[found]] == image_ids[found]
    return at[found], found


def _duplicate_colours(session: Session, ids: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    values = np.full(len(ids), -1, np.int64)
    grouped = np.fromiter(session.scalars(select(DuplicateMember.image_id).join(
        DuplicateGroup, DuplicateGroup.id == DuplicateMember.group_id).where(DuplicateGroup.level == "near")),
        np.int64)
    rows, _ = _positions(ids, grouped)
    values[rows] = 0
    rows, _ = _positions(ids, np.fromiter(duplicate_marks.marked(session), np.int64))
    values[rows] = 1
    return values, [{"value": 0, "name": "in a near-duplicate group", "colour": PALETTE[1]},
                    {"value": 1, "name": "marked as a duplicate", "colour": PALETTE[3]}]


def _ids_by(session: Session, group: str, column) -> dict:
    """``{value: image ids [K]}`` for each distinct ``column`` value among ``group``'s labels. Each
    value is one read of an index that ends in ``image_id`` (migration 0022): a group's labels lie
    on every page of the table, so a read that reaches the rows costs a page per label."""
    out = {}
    for value in session.scalars(select(column).where(Label.group == group).group_by(column)).all():
        rows = driver_rows(session, select(Label.image_id).where(
            Label.group == group, column.is_(None) if value is None else column == value))
        out[value] = np.fromiter((r[0] for r in rows), np.int64, count=len(rows))
    return out


def _scores(session: Session, group: str, column) -> tuple[np.ndarray, np.ndarray]:
    """(image ids ``[K]``, scores ``[K]``) of ``group``'s labels that have a ``column`` score."""
    rows = driver_rows(session, select(Label.image_id, column).where(Label.group == group, column.is_not(None)))
    return (np.fromiter((r[0] for r in rows), np.int64, count=len(rows)),
            np.fromiter((r[1] for r in rows), np.float64, count=len(rows)))


def _categories(ids: np.ndarray, members: dict, order: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Colour indices for the categories ``members`` (name: its image ids), in legend ``order``;
    the categories past the palette share its last colour."""
    code = {name: min(k, len(PALETTE) - 1) for k, name in enumerate(order)}
    values = np.full(len(ids), -1, np.int64)
    for name, image_ids in members.items():
        rows, _ = _positions(ids, image_ids)
        values[rows] = code[name]
    legend = [{"value": k, "name": n, "colour": PALETTE[k]} for n, k in list(code.items())[:len(PALETTE) - 1]]
    if len(order) == len(PALETTE):
        legend.append({"value": len(PALETTE) - 1, "name": order[-1], "colour": PALETTE[-1]})
    elif len(order) > len(PALETTE):
        legend.append({"value": len(PALETTE) - 1, "name": f"{len(order) - len(PALETTE) + 1} other values",
                       "colour": PALETTE[-1]})
    return values, legend


def colour_values(session: Session, ids: np.ndarray, colour: str, group: str | None) -> tuple[np.ndarray, list[dict]]:
    """Each image's colour index ``[N]`` (-1: none) for ``colour`` (one of :data:`COLOURS`, or a
    group's name: its label values), and the legend ``[{"value", "name", "colour"}]``; ``ids``
    ascending. ``group``: the labels that status, confidence and suspect read."""
    if colour == "duplicates":
        return _duplicate_colours(session, ids)
    if colour in ("status", "confidence", "suspect") and group is None:
        return np.full(len(ids), -1, np.int64), []
    if colour == "status":
        members = _ids_by(session, group, Label.status)
        return _categories(ids, members, sorted(members))
    if colour in ("confidence", "suspect"):
        image_ids, scores = _scores(session, group, Label.confidence if colour == "confidence" else Label.suspect_score)
        values = np.full(len(ids), -1, np.int64)
        rows, found = _positions(ids, image_ids)
        values[rows] = np.clip((scores[found] * BUCKETS).astype(np.int64), 0, BUCKETS - 1)
        label = "confidence" if colour == "confidence" else "suspect score"
        return values, [{"value": k, "name": f"{label} {k / BUCKETS:.1f}–{(k + 1) / BUCKETS:.1f}",
                         "colour": RAMP[k]} for k in range(BUCKETS)]
    members: dict[str, np.ndarray] = {}  # a group's name: its labels' values
    for value, image_ids in _ids_by(session, colour, Label.value).items():
        name = value or "(none of these)"
        members[name] = np.concatenate([members[name], image_ids]) if name in members else image_ids
    if not members:
        raise LayoutError(f"colour must be one of {', '.join(COLOURS)} or a group's name, not {colour!r}")
    return _categories(ids, members, sorted(members, key=lambda n: (-len(members[n]), n)))


# -- selections ------------------------------------------------------------------------------------
def selected_ids(points: Points, bbox: tuple | None = None, polygon: np.ndarray | None = None,
                 ids: list[int] | None = None) -> np.ndarray:
    """The ids of ``points`` inside ``bbox`` (x0, y0, x1, y1), inside ``polygon`` ``[V, 2]``, or
    among ``ids`` (those on the map); ascending."""
    if ids is not None:
        return np.intersect1d(points.ids, np.asarray(ids, np.int64))
    keep = np.ones(len(points.ids), bool)
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        keep &= (points.xy[:, 0] >= x0) & (points.xy[:, 0] <= x1) & (points.xy[:, 1] >= y0) & (points.xy[:, 1] <= y1)
    if polygon is not None:
        low, high = polygon.min(axis=0), polygon.max(axis=0)
        box = keep & np.all((points.xy >= low) & (points.xy <= high), axis=1)
        inside = np.zeros(len(keep), bool)
        inside[box] = layout.in_polygon(points.xy[box], polygon)
        keep &= inside
    return points.ids[keep]


def save_selection(session: Session, image_ids: np.ndarray, user_id: int | None) -> MapSelection:
    """Keep ``image_ids`` as a selection; :class:`LayoutError` for none or over :data:`MAX_SELECTION`."""
    if len(image_ids) > MAX_SELECTION:
        raise LayoutError(f"the selection holds {len(image_ids)} images, over {MAX_SELECTION:,}: "
                          "use a filter (a group, value or status) instead")
    if not len(image_ids):
        raise LayoutError("the selection holds no images")
    record = MapSelection(user_id=user_id, size=int(len(image_ids)), created_at=utcnow())
    session.add(record)
    session.flush()
    for start in range(0, len(image_ids), 50_000):
        session.execute(insert(MapSelectionMember), [{"selection_id": record.id, "image_id": int(i)}
                                                     for i in image_ids[start:start + 50_000]])
    return record


def selection_size(session: Session, selection_id: int) -> int | None:
    return session.scalar(select(MapSelection.size).where(MapSelection.id == selection_id))


# -- the keyboard and screen-reader alternative ----------------------------------------------------
def clusters(points: Points, values: np.ndarray, legend: list[dict], k: int = 12, seed: int = 0) -> list[dict]:
    """The map cut into up to ``k`` regions (k-means on the places): ``[{"cluster", "count",
    "bbox", "top": the most common legend name}]``, largest first; ``members`` their ids."""
    import faiss

    n = len(points.ids)
    if n == 0:
        return []
    k = max(1, min(k, n // 3 or 1))
    km = faiss.Kmeans(2, k, niter=20, seed=seed, verbose=False)
    km.train(np.ascontiguousarray(points.xy, np.float32))
    _, assign = km.index.search(np.ascontiguousarray(points.xy, np.float32), 1)
    assign = assign.ravel()
    names = {entry["value"]: entry["name"] for entry in legend}
    out = []
    for c in range(k):
        rows = np.flatnonzero(assign == c)
        if not len(rows):
            continue
        xy = points.xy[rows]
        vals = values[rows]
        vals = vals[vals >= 0]
        top = names.get(int(np.bincount(vals).argmax())) if len(vals) else None
        out.append({"count": int(len(rows)), "top": top, "members": points.ids[rows],
                    "bbox": [round(float(v), 3) for v in (*xy.min(axis=0), *xy.max(axis=0))]})
    out.sort(key=lambda c: (-c["count"], c["bbox"]))
    for number, cluster in enumerate(out, 1):
        cluster["cluster"] = number
    return out


# -- a picture for a report --------------------------------------------------------------------------
GREY = "#6b6b6b"


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def draw(points: Points, values: np.ndarray, legend: list[dict], out, title: str, size: int = 1000) -> dict:
    """The map as a PNG at ``out``: each pixel coloured by its most common value (grey: none),
    darker where more images fall, and a legend on the right. Returns ``{"out", "width", "height"}``."""
    from PIL import Image as PILImage, ImageDraw

    x0, y0, x1, y1 = points.bounds()
    counts, top = layout.bins(points.xy, (x0, y0, x1, y1), size, values)
    counts, top = counts[::-1], top[::-1]  # y up, as on the page
    palette = np.array([_rgb(GREY)] + [_rgb(e["colour"]) for e in sorted(legend, key=lambda e: e["value"])]
                       + [_rgb(GREY)] * len(PALETTE), np.float32)
    colour = palette[np.clip(top + 1, 0, len(palette) - 1)]
    filled = counts > 0
    strength = np.zeros(counts.shape, np.float32)
    strength[filled] = 0.45 + 0.55 * np.log1p(counts[filled]) / np.log1p(max(1, int(counts.max())))
    canvas = 255 - strength[..., None] * (255 - colour)
    legend_width = 300
    picture = PILImage.new("RGB", (size + legend_width, size), "white")
    picture.paste(PILImage.fromarray(canvas.astype(np.uint8), "RGB"), (0, 0))
    pen = ImageDraw.Draw(picture)
    pen.text((size + 16, 16), title, fill="black")
    pen.text((size + 16, 36), f"{len(points.ids):,} images", fill="black")
    for row, entry in enumerate([*legend, {"name": "no value", "colour": GREY}][:24]):
        y = 70 + row * 22
        pen.rectangle((size + 16, y, size + 32, y + 16), fill=entry["colour"])
        pen.text((size + 40, y + 2), str(entry["name"])[:36], fill="black")
    picture.save(out, "PNG")
    return {"out": str(out), "width": picture.width, "height": picture.height}


def picture(session: Session, collection: Collection, out, colour: str | None = None) -> dict:
    """:func:`draw` of the model's map coloured by ``colour`` (default: the main group's values)."""
    from ..review import overview

    model_id = collection.models.require_id(session)
    points = read_points(session, model_id, collection.config.index_dir)
    group = overview.main_group(session)
    colour = colour or group
    if colour is None:
        values, legend = np.full(len(points.ids), -1, np.int64), []
    else:
        check_colour(session, colour)
        values, legend = colour_values(session, points.ids, colour, group)
    return {**draw(points, values, legend, out, f"coloured by {colour or 'nothing'}"), "colour": colour}


def check_colour(session: Session, colour: str) -> str:
    """``colour`` if it is one of :data:`COLOURS` or a group's name; :class:`LayoutError` otherwise."""
    from ..review import decisions

    if colour not in COLOURS and colour not in decisions.groups(session):
        raise LayoutError(f"colour must be one of {', '.join(COLOURS)} or a group's name, not {colour!r}")
    return colour
