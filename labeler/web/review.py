"""Pages for reviewing: the dashboard, the review queue and the image detail page.

The pages render server-side; the queue's actions go through the JSON API (``api.py``)
from ``static/review.js``. The dashboard's "learn from reviews and relabel" button starts a
``labeler.jobs`` job; ``static/jobs.js`` follows its progress through ``/api/jobs/<id>``.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, url_for

from .. import jobs, lab, learning, present, review
from .access import admin_required
from .results import image_links
from .requests import queue_filters

bp = Blueprint("review", __name__)

PAGE_SIZE = 48


@bp.route("/")
def dashboard():
    from . import collection

    with collection().session() as s:
        stats = review.stats(s)
        fits = learning.fit_summary(s)
        job = jobs.latest(s, jobs.LEARN_AND_RELABEL)
        job = jobs.job_dict(job) if job else None
    return render_template("review/dashboard.html", stats=stats, bins=review.HISTOGRAM_BINS, fits=fits,
                           job=job, job_url=url_for("api.job", job_id=job["id"]) if job else None)


@bp.route("/learn", methods=("POST",))
@admin_required
def learn():
    """Without JavaScript: start the job (or find the running one) and come back to the dashboard."""
    from . import collection

    job, started = jobs.start(collection(), jobs.LEARN_AND_RELABEL, g.user.id)
    flash(f"Started job {job['id']}: learning from reviews, then relabeling." if started
          else f"Job {job['id']} is already running.")
    return redirect(url_for("review.dashboard"))


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
        cards = [present.label_dict(label, image_links) for label in labels]
    # The prompt set's own order, so the 1-9 keys match what the labeler offered.
    options = next((card["options"] for card in cards if card["options"]), values)
    return render_template("review/queue.html", cards=cards, total=total, groups=groups, options=options,
                           values=values,
                           filters=filters, statuses=review.STATUSES, sorts=review.SORTS,
                           page_size=PAGE_SIZE)


@bp.route("/images/<int:image_id>")
def detail(image_id: int):
    from . import collection

    coll = collection()
    with coll.session() as s:
        info = present.image_detail(s, image_id, image_links)
    explanation = lab.explain_image(coll, image_id, info["prompt_set_ids"])
    return render_template("review/detail.html", image=info, explanation=explanation)
