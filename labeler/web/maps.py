"""The map of the collection: a canvas of every image, coloured, with box and lasso selection.

    GET  /map?colour&group&q&similar            the page (its table of clusters works without JavaScript)
    GET  /api/map?bbox=x0,y0,x1,y1&colour&group&size
         binned density over the box (``mode: bins``: counts and each cell's most common colour), or
         the points themselves when at most ``POINTS_AT_MOST`` fall in it (``mode: points``)
    POST /api/map/select   {"bbox"} | {"polygon": [[x, y], ...]} | {"ids"}, "group"?
                           → {"selection", "count", "review_url", "accept_url", "search_url"}
    POST /map/clusters/<n>/review                a table row's images as a review queue (no JavaScript)
    GET  /api/map/highlight?q|similar&k          search hits' places, to light up

A web process keeps the model's places in memory (a million images: two arrays, 12 MB) and
reads them again only when the layout's version moves, from the file ``map`` keeps beside the
index (:func:`maps.read_points`); colours are kept for ``COLOUR_SECONDS``.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from flask import Blueprint, abort, current_app, g, jsonify, redirect, render_template, request, url_for

from ..curation import layout, maps
from ..errors import LabelerError
from ..review import overview
from .context import collection
from .requests import clamped, integer, json_body, search_args, text
from .results import image_links, search_hits

bp = Blueprint("maps", __name__)
POINTS_AT_MOST = 5_000
DEFAULT_BINS = 192
COLOUR_SECONDS = 30.0
CLUSTERS = 12


class MapCache:
    """One process's copy of each model's places and recent colourings; thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.points: dict[int, maps.Points] = {}
        self.colours: dict[tuple, tuple[float, np.ndarray, list]] = {}
        self.clusters: dict[tuple, list] = {}

    def get(self, session, model_id: int) -> maps.Points:
        version = maps.layout_version(session, model_id)
        if version is None:
            raise layout.LayoutError("no map yet: run `manage.py map` first")
        with self.lock:
            held = self.points.get(model_id)
        if held is None or held.version != version:
            held = maps.read_points(session, model_id, collection().config.index_dir)
            with self.lock:
                self.points[model_id] = held
                self.colours = {k: v for k, v in self.colours.items() if k[1] == held.version}
        return held

    def colour(self, session, points: maps.Points, model_id: int, colour: str, group: str | None):
        key = (model_id, points.version, colour, group)
        now = time.monotonic()
        with self.lock:
            held = self.colours.get(key)
        if held is not None and now - held[0] < COLOUR_SECONDS:
            return held[1], held[2]
        values, legend = maps.colour_values(session, points.ids, colour, group)
        with self.lock:
            self.colours[key] = (now, values, legend)
        return values, legend

    def cluster_table(self, points: maps.Points, model_id: int, colour: str, values, legend) -> list:
        key = (model_id, points.version, colour)
        with self.lock:
            held = self.clusters.get(key)
        if held is None:
            held = maps.clusters(points, values, legend, CLUSTERS)
            with self.lock:
                self.clusters[key] = held
        return held


def _cache() -> MapCache:
    return current_app.extensions.setdefault("labeler_map", MapCache())


def _bbox(raw: str | None, points: maps.Points) -> tuple[float, float, float, float]:
    if not raw:
        return tuple(points.bounds())
    try:
        values = [float(v) for v in raw.split(",")]
    except ValueError:
        abort(400, "bbox must be four finite numbers x0,y0,x1,y1")
    try:
        return layout.check_bbox(values)
    except LabelerError as exc:
        abort(400, str(exc))


def _colouring(session) -> tuple[str, str | None]:
    """The request's ``colour`` and ``group`` (default: the main group, coloured by its values)."""
    group = request.args.get("group") or overview.main_group(session)
    colour = request.args.get("colour") or group or "status"
    try:
        maps.check_colour(session, colour)
    except LabelerError as exc:
        abort(400, str(exc))
    return colour, group


def _view(session):
    model_id = collection().models.current_id(session)
    if model_id is None:
        raise layout.LayoutError("no map yet: index some images, then run `manage.py map`")
    cache = _cache()
    points = cache.get(session, model_id)
    colour, group = _colouring(session)
    values, legend = cache.colour(session, points, model_id, colour, group)
    return model_id, cache, points, colour, group, values, legend


@bp.route("/map")
def page():
    with collection().session() as s:
        try:
            model_id, cache, points, colour, group, values, legend = _view(s)
        except layout.LayoutError as exc:
            return render_template("curation/map.html", missing=str(exc), colours=[], colour=None, group=None,
                                   clusters=[], legend=[], data={})
        table = cache.cluster_table(points, model_id, colour, values, legend)
        from ..review import decisions
        colours = [*decisions.groups(s), *maps.COLOURS]
    thumb = image_links(0)["thumb_url"]
    data = {"bounds": points.bounds(), "total": int(len(points.ids)), "colour": colour, "group": group,
            "version": points.version, "thumb": thumb, "detail": image_links(0)["detail_url"],
            "q": request.args.get("q") or "", "similar": request.args.get("similar") or "",
            "api": url_for("maps.api_map"), "select": url_for("maps.api_select"),
            "highlight": url_for("maps.api_highlight")}
    return render_template("curation/map.html", missing=None, colours=colours, colour=colour, group=group,
                           clusters=table, legend=legend, data=data, total=len(points.ids))


@bp.route("/api/map")
def api_map():
    size = clamped(request.args.get("size", DEFAULT_BINS), "size", 8, 512)
    with collection().session() as s:
        _, _, points, colour, group, values, legend = _view(s)
    box = _bbox(request.args.get("bbox"), points)
    x0, y0, x1, y1 = box
    inside = (points.xy[:, 0] >= x0) & (points.xy[:, 0] <= x1) & (points.xy[:, 1] >= y0) & (points.xy[:, 1] <= y1)
    count = int(inside.sum())
    answer = {"bbox": list(box), "bounds": points.bounds(), "total": int(len(points.ids)), "count": count,
              "colour": colour, "group": group, "legend": legend, "version": points.version}
    if count <= POINTS_AT_MOST:
        rows = np.flatnonzero(inside)
        answer.update({"mode": "points", "ids": points.ids[rows].tolist(),
                       "x": np.round(points.xy[rows, 0], 5).tolist(), "y": np.round(points.xy[rows, 1], 5).tolist(),
                       "values": values[rows].tolist()})
    else:
        counts, top = layout.bins(points.xy[inside], box, size, values[inside])
        answer.update({"mode": "bins", "size": size, "counts": counts.ravel().tolist(), "values": top.ravel().tolist()})
    return jsonify(answer)


def _numbers(value, name: str, length: int | None = None) -> list[float]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        abort(400, f"{name} must be a list of {length or 'some'} numbers")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            abort(400, f"{name} must hold finite numbers")
        out.append(float(v))
    return out


def _selected(body: dict, points: maps.Points) -> np.ndarray:
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list):
            abort(400, "ids must be a list of image ids")
        if len(ids) > maps.MAX_SELECTION:
            abort(400, f"ids: over {maps.MAX_SELECTION:,} images; use a filter (a group, value or status) instead")
        return maps.selected_ids(points, ids=[integer(i, "ids") for i in ids])
    if "polygon" in body:
        polygon = body["polygon"]
        if not isinstance(polygon, list) or not 3 <= len(polygon) <= 10_000:
            abort(400, "polygon must be a list of 3 to 10,000 [x, y] points")
        vertices = np.array([_numbers(p, "polygon", 2) for p in polygon], np.float32)
        return maps.selected_ids(points, polygon=vertices)
    if "bbox" in body:
        try:
            box = layout.check_bbox(_numbers(body["bbox"], "bbox", 4))
        except LabelerError as exc:
            abort(400, str(exc))
        return maps.selected_ids(points, bbox=box)
    abort(400, "send bbox, polygon or ids")


def _save(ids: np.ndarray, group: str | None = None) -> dict:
    """Keep ``ids`` as a selection, and the three ways to open it: a review queue, a bulk accept of
    ``group``'s proposals that previews first (the queue's threshold dialog), a search filter."""
    def write(s):
        record = maps.save_selection(s, ids, g.user.id)
        return record.id

    from ..store import db
    try:
        selection = db.write_transaction(collection().config, write)
    except layout.LayoutError as exc:
        abort(400, str(exc))
    return {"selection": selection, "count": int(len(ids)),
            "review_url": url_for("review.queue", selection=selection, status="", sort="id"),
            "accept_url": url_for("review.queue", group=group, selection=selection, status="proposed",
                                  sort="confidence", _anchor="accept"),
            "search_url": url_for("search.page", selection=selection)}


@bp.route("/api/map/select", methods=("POST",))
def api_select():
    body = json_body()
    with collection().session() as s:
        model_id = collection().models.current_id(s)
        if model_id is None:
            raise layout.LayoutError("no map yet")
        points = _cache().get(s, model_id)
    return jsonify(_save(_selected(body, points), text(body.get("group"), "group")))


@bp.route("/map/clusters/<int:number>/review", methods=("POST",))
def review_cluster(number: int):
    with collection().session() as s:
        model_id, cache, points, colour, group, values, legend = _view(s)
    table = cache.cluster_table(points, model_id, colour, values, legend)
    found = next((c for c in table if c["cluster"] == number), None)
    if found is None:
        abort(404, f"no cluster {number}")
    return redirect(_save(found["members"])["review_url"])


@bp.route("/api/map/highlight")
def api_highlight():
    args = search_args()
    hits = search_hits(collection(), args, args["similar"])
    ids = np.array([h["image_id"] for h in hits], np.int64)
    with collection().session() as s:
        model_id = collection().models.current_id(s)
        if model_id is None:
            raise layout.LayoutError("no map yet")
        points = _cache().get(s, model_id)
    at = np.searchsorted(points.ids, ids)
    found = [(int(i), int(a)) for i, a in zip(ids, at) if a < len(points.ids) and points.ids[a] == i]
    return jsonify({"points": [{"image_id": i, "x": float(points.xy[a, 0]), "y": float(points.xy[a, 1])}
                               for i, a in found], "hits": len(hits)})
