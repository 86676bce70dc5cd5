"""Pages for reviewing: the dashboard, the review queue and the image detail page.

The pages render server-side; the queue's actions go through the JSON API (``api.py``)
from ``static/review.js``. The dashboard's "learn from reviews and relabel" button starts a
``labeler.review.jobs`` job; ``static/jobs.js`` follows its progress through ``/api/jobs/<id>``.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from markupsafe import Markup

from ..errors import LabelerError
from ..review import audit, flags, jobs, leases, overview, present, qa, trust, decisions as review
from ..labeling import prompt_lab as lab, learning
from ..core import stored_scores
from ..curation import maps
from .access import admin_required
from .cards import (all_option_keys, cards, option_keys, page_data, qa_cards, queue_batch, review_started,
                    script_json, shortcuts)
from .results import image_links, search_hits
from .requests import queue_filters
from .context import collection, user_preferences
from ..store import db, users
from .requests import integer

bp = Blueprint("review", __name__)
bp.add_app_template_filter(script_json)



@bp.route("/")
def dashboard():
    with collection().session() as s:
        stats = review.stats(s)
        fits = learning.fit_summary(s)
        job = jobs.latest(s, jobs.LEARN_AND_RELABEL)
        job = jobs.job_dict(job) if job else None
        team = {"holdings": leases.holdings(s), "assignments": leases.assignments(s), "qa": qa.report(s),
                "shares": qa.shares(s), "qa_needed": qa.MIN_QA_CHECKED,
                "reviewers": [u["name"] for u in users.list_users(s) if not u["disabled"]]}
        accept_job = jobs.latest(s, jobs.ACCEPT)
        accept_job = jobs.job_dict(accept_job) if accept_job else None
        trusted = trust.dashboard(s)
        suspects = {group: audit.suspect_count(s, group) for group in stats}
        suspect_origins = audit.suspects_by_origin(s)
        order = overview.ordered_groups(s)
    stats = {group: stats[group] for group in sorted(stats, key=lambda g: order.index(g) if g in order else len(order))}
    curves = {group: curve_svg(entry["curve"]) for group, entry in trusted.items() if entry["curve"]}
    sparks = {group: sparkline_svg(entry["histogram"]) for group, entry in stats.items()}
    reviewed = sum(entry["statuses"].get("accepted", 0) + entry["statuses"].get("corrected", 0)
                   for entry in stats.values())
    return render_template("review/dashboard.html", stats=stats, bins=review.HISTOGRAM_BINS, fits=fits,
                           job=job, team=team, job_url=url_for("api.job", job_id=job["id"]) if job else None,
                           trusted=trusted, curves=curves, suspects=suspects, suspect_origins=suspect_origins,
                           accept_job=accept_job,
                           next_step=overview.next_step(stats, order), main_group=order[0] if order else None,
                           sparks=sparks, reviewed=reviewed)


def sparkline_svg(counts: list[int], width: int = 80, height: int = 18) -> Markup:
    """A confidence histogram as a one-line inline SVG for a group's row (no script, no image)."""
    tallest = max(counts) or 1
    step = width / max(1, len(counts) - 1)
    points = " ".join(f"{i * step:.1f},{height - 1 - (height - 2) * c / tallest:.1f}" for i, c in enumerate(counts))
    return Markup(f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
                  f'role="img" aria-label="confidence from 0 to 1: {", ".join(str(c) for c in counts)}">'
                  f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>')


def curve_svg(points: list[dict], width: int = 240, height: int = 120) -> Markup:
    """Coverage (x) against precision (y, from 0.9 to 1), estimated and lower bound, as inline SVG."""
    low = 0.9

    def xy(p: dict, key: str) -> str:
        y = (min(max(p[key], low), 1.0) - low) / (1.0 - low)
        return f"{p['coverage'] * width:.1f},{(1 - y) * height:.1f}"

    def line(key: str, css: str) -> str:
        return f'<polyline class="{css}" fill="none" points="{" ".join(xy(p, key) for p in points)}"/>'

    return Markup(
        f'<svg class="curve" viewBox="-30 -5 {width + 40} {height + 25}" width="{width + 40}" height="{height + 25}" '
        f'role="img" aria-label="precision against coverage: estimated and its 95% lower bound">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="currentColor" stroke-opacity="0.3"/>'
        f'{line("estimated_precision", "estimated")}{line("lower_bound", "lower")}'
        f'<text x="-28" y="8" font-size="9">1.00</text><text x="-28" y="{height}" font-size="9">{low:.2f}</text>'
        f'<text x="0" y="{height + 12}" font-size="9">coverage 0</text>'
        f'<text x="{width - 10}" y="{height + 12}" font-size="9">1</text></svg>')


@bp.route("/accept/<group>", methods=("POST",))
@admin_required
def accept_group(group: str):
    """Without JavaScript: start an "accept at 99%" job for the group and come back to the dashboard."""
    target = request.form.get("min_precision", "0.99")
    job, started = jobs.start(collection(), jobs.ACCEPT, g.user.id, {"group": group, "min_precision": target})
    flash(f"Started job {job['id']}: accepting {group} at precision {target}." if started
          else f"Job {job['id']} is already running.")
    return redirect(url_for("review.dashboard"))


@bp.route("/accept/undo/<int:run_id>", methods=("POST",))
@admin_required
def undo_run(run_id: int):
    try:
        result = trust.undo(collection(), run_id, g.user.id)
    except LabelerError as exc:
        flash(str(exc))
    else:
        flash(f"Undid run {run_id}: {result['returned']} {result['group']} labels back to proposed, "
              f"{result['kept']} decided by people kept.")
    return redirect(url_for("review.dashboard"))


@bp.route("/learn", methods=("POST",))
@admin_required
def learn():
    """Without JavaScript: start the job (or find the running one) and come back to the dashboard."""
    job, started = jobs.start(collection(), jobs.LEARN_AND_RELABEL, g.user.id)
    flash(f"Started job {job['id']}: learning from reviews, then relabeling." if started
          else f"Job {job['id']} is already running.")
    return redirect(url_for("review.dashboard"))


@bp.route("/assignments", methods=("POST",))
@admin_required
def assign():
    """Without JavaScript: give a group (or one value of it) to the reviewers ticked, or take it back
    (``action=unassign``); 400 naming the field for an unknown reviewer or no group."""
    group, value = request.form.get("group", ""), request.form.get("value") or None
    try:
        if request.form.get("action") == "unassign":
            db.write_transaction(collection().config, lambda s: leases.unassign(s, group, value))
            flash(f"{group}{' = ' + value if value else ''} is no longer assigned.")
        else:
            reviewers = request.form.getlist("reviewers")
            db.write_transaction(collection().config, lambda s: leases.assign(s, group, value, reviewers, g.user.id))
            flash(f"Assigned {group}{' = ' + value if value else ''} to {', '.join(sorted(reviewers))}.")
    except leases.AssignmentError as exc:
        abort(400, str(exc))
    return redirect(url_for("review.dashboard"))


@bp.route("/qa")
def qa_page():
    """Your second pass: others' decisions drawn into QA, blind, answered with the queue's keys."""
    group = request.args.get("group") or None
    with collection().session() as s:
        tasks = qa_cards(s, qa.queue(s, g.user.id, group, limit=96))
    return render_template("review/qa.html", tasks=tasks, group=group)


@bp.route("/review")
def queue():
    filters = queue_filters()
    started = review_started()
    with collection().session() as s:
        groups = overview.ordered_groups(s)
        if filters["group"] is None and groups:
            filters["group"] = groups[0]  # the collection's main group: its prompt set's first
        batch = queue_batch(s, filters, g.user.id)
        values = review.options(s, filters["group"], collection().config.max_free_values) \
            if filters["group"] else []
        if filters["value"] and filters["value"] not in values:  # the one filtered on is always listed
            values = sorted([*values, filters["value"]])
        options = batch.options or values
        progress = review.progress(s, filters["group"], filters["value"], g.user.id, started)
        flag_names = flags.names(s)
        selection_size = maps.selection_size(s, filters["selection"]) if filters["selection"] else None
        # The reviewer's newest bulk accept of this session, from the catalog: its note outlives a reload.
        newest = review.newest_bulk(s, g.user.id, started)
        bulk = review.bulk_dict(newest) if newest is not None else None
    data = page_data({filters["group"]: options} if filters["group"] else {}, batch.cards, group=filters["group"],
                     value=filters["value"], status=filters["status"], next=batch.next, progress=progress,
                     claimed=batch.claimed, claimed_at=batch.claimed_at, selection=filters["selection"])
    return render_template("review/queue.html", cards=batch.cards, total=batch.total, total_capped=batch.total_capped,
                           groups=groups, values=values, selection_size=selection_size,
                           filters=filters, statuses=review.STATUSES, sorts=review.SORTS, flag_names=flag_names,
                           pages={"next": batch.next, "previous": batch.previous}, data=data, bulk=bulk,
                           shortcuts=shortcuts(option_keys(options), remap=user_preferences()["keys"]))


@bp.route("/images/<int:image_id>")
def detail(image_id: int):
    coll = collection()
    review_started()
    with coll.session() as s:
        info = present.image_detail(s, image_id, image_links)
        labels = review.labels_of_image(s, image_id)
        shown = cards(s, labels)
        group_options = {label.group: stored_scores.option_names(label.prompt_set, label.group) or review.options(s, label.group)
                         for label in labels}
        flag_names = flags.names(s)
    explanation = lab.explain_image(coll, image_id, info["prompt_set_ids"])
    similar, similar_error = _similar(coll, image_id)
    data = page_data(group_options, shown, group=None, value=None, status=None, next=None, progress=None)
    return render_template("review/detail.html", image=info, explanation=explanation, data=data, flag_names=flag_names,
                           similar=similar, similar_error=similar_error,
                           shortcuts=shortcuts(all_option_keys(group_options), "each card shows its options' keys",
                                               remap=user_preferences()["keys"]))


SIMILAR_SHOWN = 8


def _similar(coll, image_id: int) -> tuple[list[dict], str | None]:
    """The detail page's side panel: the nearest images (the image itself left out), or why there are none."""
    args = {"q": "", "k": SIMILAR_SHOWN + 1, "group": None, "value": None, "where": None, "status": None}
    try:
        hits = search_hits(coll, args, image_id)
    except LabelerError as exc:  # no vector for this image yet, an index being rebuilt: the page still opens
        return [], f"Similar images unavailable: {exc}"
    return [hit for hit in hits if hit["image_id"] != image_id][:SIMILAR_SHOWN], None


@bp.route("/images/<int:image_id>/flags", methods=("POST",))
def flag_image(image_id: int):
    """The detail page's flag form: flag the image, or one of its labels (``label_id``), with a note."""
    form = request.form
    label_id = integer(form["label_id"], "label_id") if form.get("label_id") else None
    db.write_transaction(collection().config, lambda s: flags.add(
        s, form.get("name"), g.user.id, None if label_id else image_id, label_id, form.get("note")))
    flash(f"Flagged: {form.get('name', '').strip()}.")
    return redirect(url_for("review.detail", image_id=image_id))


@bp.route("/images/<int:image_id>/flags/<int:flag_id>/remove", methods=("POST",))
def unflag_image(image_id: int, flag_id: int):
    db.write_transaction(collection().config, lambda s: flags.remove(s, flag_id))
    flash("Flag removed.")
    return redirect(url_for("review.detail", image_id=image_id))
