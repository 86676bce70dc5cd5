"""Pages for reviewing: the dashboard, the review queue and the image detail page.

The pages render server-side; the queue's actions go through the JSON API (``api.py``)
from ``static/review.js``.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from sqlalchemy import select

from .. import lab, review
from ..catalog import Image, Label, User

bp = Blueprint("review", __name__)

PAGE_SIZE = 48


def label_dict(label: Label) -> dict:
    """What the UI and the API show of a label."""
    scores = label.scores or {}
    return {
        "id": label.id,
        "image_id": label.image_id,
        "group": label.group,
        "value": label.value,
        "predicted": label.predicted,
        "confidence": label.confidence,
        "margin": label.margin,
        "strategy": label.strategy,
        "status": label.status,
        "version": label.version,
        "options": list(scores.keys()),
        "scores": scores,
        "reviewed_by": label.reviewed_by,
        "reviewed_at": label.reviewed_at.isoformat() if label.reviewed_at else None,
        "thumb_url": f"/images/{label.image_id}/thumb",
        "detail_url": f"/images/{label.image_id}",
    }


def event_dict(event, names: dict[int, str]) -> dict:
    return {
        "id": event.id,
        "label_id": event.label_id,
        "user": names.get(event.user_id) if event.user_id is not None else None,
        "action": event.action,
        "before_value": event.before_value,
        "after_value": event.after_value,
        "before_status": event.before_status,
        "after_status": event.after_status,
        "created_at": event.created_at.isoformat(),
    }


def queue_filters() -> dict:
    """The queue's filters from the query string; unknown values are user errors (400)."""
    args = request.args
    try:
        page = min(max(1, int(args.get("page", 1))), 1_000_000)  # past the end is an empty page
    except ValueError:
        abort(400, "page must be a number")
    return {
        "group": args.get("group") or None,
        "value": args.get("value") or None,
        "status": args.get("status", "proposed") or None,
        "sort": args.get("sort", "uncertainty"),
        "page": page,
    }


@bp.route("/")
def dashboard():
    from . import collection

    with collection().session() as s:
        stats = review.stats(s)
    return render_template("review/dashboard.html", stats=stats, bins=review.HISTOGRAM_BINS)


@bp.route("/review")
def queue():
    from . import collection

    filters = queue_filters()
    with collection().session() as s:
        groups = review.groups(s)
        if filters["group"] is None and groups:
            filters["group"] = groups[0]
        labels, total = review.list_labels(s, filters["group"], filters["value"], filters["status"],
                                           filters["sort"], PAGE_SIZE, (filters["page"] - 1) * PAGE_SIZE)
        values = review.options(s, filters["group"]) if filters["group"] else []
        cards = [label_dict(label) for label in labels]
    # The prompt set's own order, so the 1-9 keys match what the labeler offered.
    options = next((card["options"] for card in cards if card["options"]), values)
    return render_template("review/queue.html", cards=cards, total=total, groups=groups, options=options,
                           values=values,
                           filters=filters, statuses=review.STATUSES, sorts=review.SORTS,
                           page_size=PAGE_SIZE)


def image_detail(image_id: int) -> dict:
    """Everything the detail page and ``/api/images/<id>`` show about one image."""
    from . import collection

    with collection().session() as s:
        image = s.get(Image, image_id)
        if image is None:
            abort(404, f"no image with id {image_id}")
        labels = list(s.scalars(select(Label).where(Label.image_id == image_id).order_by(Label.group)))
        events = review.history(s, [label.id for label in labels])
        user_ids = {e.user_id for e in events if e.user_id is not None}
        names = ({uid: name for uid, name in s.execute(select(User.id, User.name).where(User.id.in_(user_ids)))}
                 if user_ids else {})
        group_of = {label.id: label.group for label in labels}
        return {
            "id": image.id,
            "sha256": image.sha256,
            "width": image.width,
            "height": image.height,
            "format": image.format,
            "status": image.status,
            "path": image.path,
            "full_url": f"/images/{image.id}/full",
            "thumb_url": f"/images/{image.id}/thumb",
            "labels": [label_dict(label) for label in labels],
            "history": [dict(event_dict(e, names), group=group_of.get(e.label_id)) for e in events],
            "prompt_set_ids": sorted({label.prompt_set_id for label in labels if label.prompt_set_id}),
        }


@bp.route("/images/<int:image_id>")
def detail(image_id: int):
    from . import collection

    info = image_detail(image_id)
    explanation = lab.explain_image(collection(), image_id, info["prompt_set_ids"])
    return render_template("review/detail.html", image=info, explanation=explanation)
