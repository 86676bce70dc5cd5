"""Free-text search and "find similar", as a page; the ranking is ``labeler.search``'s."""

from __future__ import annotations

from flask import Blueprint, render_template

from ..review import decisions as review
from ..errors import LabelerError
from ..search import SearchTooSlow
from .requests import search_args
from .results import search_hits
from .context import collection
from .rate_limit import SEARCH, rate_limited, search_slot

bp = Blueprint("search", __name__)


@bp.route("/search")
@rate_limited(SEARCH)
@search_slot
def page():
    coll = collection()
    args = search_args()
    error, status = None, 200
    try:
        hits = search_hits(coll, args, args["similar"])
    except LabelerError as exc:  # a query syntax error is shown beside the form
        hits, error = [], str(exc)
        status = 503 if isinstance(exc, SearchTooSlow) else 400
    with coll.session() as s:
        groups = review.groups(s)
        values = review.options(s, args["group"], coll.config.max_free_values) if args["group"] else []
    return render_template("search/search.html", args=args, hits=hits, groups=groups, values=values,
                           statuses=review.FILTER_STATUSES, error=error), status
