"""The JSON API, behind the same login (plus CSRF) or an API token (``Authorization: Bearer``).

    GET  /api/stats                         counts, progress and histograms per group
    GET  /api/labels?group&value&status&sort&limit&offset
    GET  /api/labels/<id>
    POST /api/labels/<id>/review            {"action", "version", "value"?}  409 when stale
    POST /api/labels/accept-selected        {"labels": [{"id", "version"}, ...]}
    GET  /api/labels/accept-above?group&threshold&value    preview: {"count"}
    POST /api/labels/accept-above           {"group", "threshold", "value"?}
    GET  /api/search?q&k&group&value&where=GROUP=VALUE,...&status&similar
    GET  /api/images/<id>
    GET  /api/images/<id>/similar?k

Errors are ``{"error": message, "status": code}`` with a 4xx/5xx status.
"""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request

from .. import review
from ..catalog import MAX_ID
from .review import image_detail, label_dict
from .search import run_search, search_args

bp = Blueprint("api", __name__, url_prefix="/api")


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "send a JSON object with Content-Type: application/json")
    return data


def _int(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        abort(400, f"{name} must be an integer")
    if abs(number) > MAX_ID:  # beyond what the database can hold
        abort(400, f"{name} is out of range")
    return number


def _text(value, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        abort(400, f"{name} must be a string")
    return value or None


def _threshold(value) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        abort(400, "threshold must be a number between 0 and 1")
    if not 0.0 <= threshold <= 1.0:
        abort(400, "threshold must be a number between 0 and 1")
    return threshold


@bp.route("/stats")
def stats():
    from . import collection

    with collection().session() as s:
        return jsonify({"groups": review.stats(s), "bins": review.HISTOGRAM_BINS})


@bp.route("/labels")
def labels():
    from . import collection

    args = request.args
    limit = min(500, max(1, _int(args.get("limit", 50), "limit")))
    offset = max(0, _int(args.get("offset", 0), "offset"))
    with collection().session() as s:
        rows, total = review.list_labels(s, args.get("group") or None, args.get("value") or None,
                                         args.get("status") or None, args.get("sort", "uncertainty"),
                                         limit, offset)
        return jsonify({"labels": [label_dict(label) for label in rows], "total": total,
                        "limit": limit, "offset": offset})


@bp.route("/labels/<int:label_id>")
def label(label_id: int):
    from . import collection

    with collection().session() as s:
        return jsonify(label_dict(review.get_label(s, label_id)))


@bp.route("/labels/<int:label_id>/review", methods=("POST",))
def review_label(label_id: int):
    from . import collection

    body = _json_body()
    action = body.get("action")
    version = _int(body.get("version"), "version")
    # One transaction per decision: the label's state and its event commit together.
    with collection().session() as s:
        updated = review.decide(s, label_id, str(action), g.user.id, version, body.get("value"))
        return jsonify({"label": label_dict(updated), "action": action})


@bp.route("/labels/accept-selected", methods=("POST",))
def accept_selected():
    from . import collection

    body = _json_body()
    items = body.get("labels")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        abort(400, 'labels must be a list of {"id": ..., "version": ...}')
    seen = [(_int(i.get("id"), "id"), _int(i.get("version"), "version")) for i in items]
    with collection().session() as s:
        result = review.accept_many(s, seen, g.user.id)
        accepted = [label_dict(review.get_label(s, i)) for i in result.accepted]
    return jsonify({"accepted": accepted, "conflicts": result.conflicts}), (409 if result.conflicts and not accepted else 200)


@bp.route("/labels/accept-above", methods=("GET", "POST"))
def accept_above():
    from . import collection

    source = request.args if request.method == "GET" else _json_body()
    group = _text(source.get("group"), "group")
    if not group:
        abort(400, "group is required")
    threshold = _threshold(source.get("threshold"))
    value = _text(source.get("value"), "value")
    with collection().session() as s:
        if request.method == "GET":
            return jsonify({"count": review.preview_accept_above(s, group, threshold, value),
                            "group": group, "threshold": threshold, "value": value})
        count = review.accept_above(s, group, threshold, g.user.id, value)
    return jsonify({"accepted": count, "group": group, "threshold": threshold, "value": value})


@bp.route("/search")
def search():
    args = search_args()
    return jsonify({"hits": run_search(**args), **{k: v for k, v in args.items()}})


@bp.route("/images/<int:image_id>")
def image(image_id: int):
    return jsonify(image_detail(image_id))


@bp.route("/images/<int:image_id>/similar")
def similar(image_id: int):
    args = search_args()
    return jsonify({"hits": run_search("", args["k"], args["group"], args["value"], args["status"],
                                       similar=image_id, where=args["where"])})
