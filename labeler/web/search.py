"""Free-text search and "find similar", as a page; the ranking is ``labeler.search``'s."""

from __future__ import annotations


from flask import Blueprint, abort, render_template, request
from sqlalchemy import select

from .. import review
from . import MAX_ID
from .. import search as engine
from ..catalog import Label
from ..errors import LabelerError

bp = Blueprint("search", __name__)

DEFAULT_K = 48
MAX_K = 500
SEARCH_STATUSES = (*review.STATUSES, "reviewed")


def search_args() -> dict:
    """Query-string arguments shared by the page and ``/api/search``."""
    args = request.args
    try:
        k = min(MAX_K, max(1, int(args.get("k", DEFAULT_K))))
        similar = int(args["similar"]) if args.get("similar") else None
    except ValueError:
        abort(400, "k and similar must be numbers")
    if similar is not None and not 0 < similar <= MAX_ID:
        abort(400, "similar must be an image id")
    status = args.get("status") or None
    if status and status not in SEARCH_STATUSES:
        abort(400, f"unknown status '{status}'; use one of: {', '.join(SEARCH_STATUSES)}")
    where_items = [item.strip() for raw in args.getlist("where") for item in raw.split(",") if item.strip()]
    try:
        where = engine.parse_where(where_items)
    except LabelerError as exc:
        abort(400, str(exc))
    return {"q": (args.get("q") or "").strip(), "k": k, "group": args.get("group") or None,
            "value": args.get("value") or None, "status": status, "similar": similar, "where": where}


def run_search(q: str, k: int, group: str | None = None, value: str | None = None,
               status: str | None = None, similar: int | None = None,
               where: dict[str, str] | None = None) -> list[dict]:
    """Hits as dicts (image_id, score, labels, urls), best first.

    ``group`` + ``value`` and every ``where`` ``{group: value}`` keep images labeled so (all of
    them); ``status`` keeps images whose filtered labels (or any label, without filters) are in
    that review state. Ranking and filtering are ``labeler.search``'s.
    """
    from . import collection

    coll = collection()
    if similar is None and not q:
        return []
    if value and not group:
        abort(400, "a value filter needs a group")
    where = {**(where or {}), **({group: value} if group and value else {})} or None
    _ = coll.index_cache.get()  # an empty collection is a clear 400 before any text is encoded
    if similar is not None:
        hits = engine.similar(coll, similar, k, where=where, status=status)
    else:
        hits = engine.search(coll, q, k, where=where, status=status)
    ids = [int(h.image_id) for h in hits]
    labels: dict[int, list[dict]] = {}
    with coll.session() as s:
        if ids:
            for label in s.scalars(select(Label).where(Label.image_id.in_(ids)).order_by(Label.group)):
                labels.setdefault(label.image_id, []).append(
                    {"id": label.id, "group": label.group, "value": label.value, "status": label.status,
                     "confidence": label.confidence, "version": label.version})
    return [{"image_id": int(h.image_id), "score": float(h.score), "labels": labels.get(int(h.image_id), []),
             "thumb_url": f"/images/{int(h.image_id)}/thumb", "detail_url": f"/images/{int(h.image_id)}"}
            for h in hits]


@bp.route("/search")
def page():
    from . import collection

    args = search_args()
    error = None
    try:
        hits = run_search(**args)
    except LabelerError as exc:  # a query syntax error is shown beside the form
        hits, error = [], str(exc)
    with collection().session() as s:
        groups = review.groups(s)
        values = review.options(s, args["group"]) if args["group"] else []
    return render_template("search/search.html", args=args, hits=hits, groups=groups, values=values,
                           statuses=SEARCH_STATUSES, error=error), (400 if error else 200)
