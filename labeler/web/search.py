"""Free-text search and "find similar", as a page; the ranking is ``labeler.search``'s. Each hit
carries the review card of its label in one group (the filter's, else the collection's main group),
which ``static/review.js`` renders and acts on as the queue's: accept, correct, focus mode."""

from __future__ import annotations

from flask import Blueprint, render_template

from ..core import stored_scores
from ..curation import maps
from ..review import decisions as review, overview
from ..errors import LabelerError
from ..search import SearchTooSlow
from .cards import all_option_keys, cards, page_data, shortcuts
from .requests import search_args
from .results import search_hits
from .context import collection, user_preferences
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
        selection_size = maps.selection_size(s, args["selection"]) if args["selection"] else None
        values = review.options(s, args["group"], coll.config.max_free_values) if args["group"] else []
        acting = args["group"] or overview.main_group(s)
        for hit in hits:
            hit["card_id"] = next((label["id"] for label in hit["labels"] if label["group"] == acting), None)
        labels = review.labels_by_id(s, [hit["card_id"] for hit in hits if hit["card_id"] is not None])
        by_id = {shown["id"]: shown for shown in cards(s, labels)}
        # The prompt set's own order, so the option keys match the queue's.
        options = next((names for label in labels if (names := stored_scores.option_names(label.prompt_set, label.group))),
                       None) or (review.options(s, acting, coll.config.max_free_values) if acting else [])
    shown = [by_id[hit["card_id"]] for hit in hits if hit["card_id"] in by_id]
    data = page_data({acting: options} if acting else {}, shown, group=acting, value=None, status=None, next=None,
                     progress=None) if shown else None
    return render_template("search/search.html", args=args, hits=hits, groups=groups, values=values,
                           statuses=review.FILTER_STATUSES, error=error, acting=acting, data=data,
                           selection_size=selection_size,
                           shortcuts=shortcuts(all_option_keys({acting: options}), remap=user_preferences()["keys"])
                           if shown else []), status
