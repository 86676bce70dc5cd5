"""The JSON API, behind the same login (plus CSRF) or an API token (``Authorization: Bearer``).

    GET  /api/stats                         counts, progress and histograms per group
    GET  /api/labels?group&value&status&sort&limit&offset
    GET  /api/labels/<id>
    POST /api/labels/<id>/review            {"action", "version", "seen_value"?, "value"?, "queue_value"?}
                                            409 when the version or the value seen changed, with the
                                            label's new state ("label", "card"); else the label, its
                                            card and the progress of its queue
    POST /api/review/undo                   undo your newest decision not yet undone (a bulk accept as one);
                                            {"event_id", "version"} one from your history, {"bulk_id"} a
                                            bulk accept; 409 when stale, 400 saying why when changed since
    GET  /api/review/history?limit          your newest decisions (at most 50), a bulk accept as one, each
                                            "undoable" or with "why" not
    GET  /api/review/progress?group&value   reviewed, remaining, your decisions and their rate
    GET  /api/review/cards?ids=1,2,3        the labels' current cards (an open page polls it)
    GET  /api/review/leases                 who holds which cards (per reviewer and group), assignments
    POST /api/review/release                {"ids"?: [label ids], "claimed_at"?} (or a form) give up your leases
    POST /api/review/assignments            {"group", "value"?, "reviewers": [names]}  admins; 400 unknown reviewer
    DELETE /api/review/assignments          {"group", "value"?}  admins
    GET  /api/review/queue?group&value&status&sort&after   the queue's next batch of cards (as the page's)
    POST /api/labels/accept-selected        {"labels": [{"id", "version", "seen_value"?}, ...]}  per-label "results"
    GET  /api/labels/accept-above?group&threshold&value&selection&list    preview: {"count"}; with list=1 also
                                            "labels" (id, version, seen_value: exactly what an
                                            accept-selected of them accepts) and the first "cards"
    POST /api/labels/accept-above           {"group", "threshold", "value"?, "selection"?: a map selection's id}
    GET  /api/search?q&k&group&value&where=GROUP=VALUE,...&status&similar&flag&selection
    GET  /api/images/<id>
    GET  /api/images/<id>/similar?k
    POST /api/flags                         {"name", "note"?, "label_id" | "image_id"}  201; name <= 64 chars
    POST /api/qa/share                      {"group", "share"}  admins; share in [0, 1] else 400
    GET  /api/qa/queue?group                open QA tasks for you (never your own decisions), blind
    POST /api/qa/<id>                       {"value"}  your answer: agreed or disagreed
    GET  /api/qa/disagreements              admins
    POST /api/qa/<id>/resolve               {"value"}  admins: the final value, stored on the label
    GET  /api/qa/report                     per reviewer: decisions, agreement (raw, kappa, interval), speed
    DELETE /api/flags/<id>
    POST /api/jobs                          {"kind": "learn-and-relabel"}  admins; 202 started, 200 already running
    GET  /api/jobs/<id>                     status, done, total, message, result

Errors are ``{"error": message, "status": code}`` with a 4xx/5xx status.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, abort, g, jsonify, request, url_for

from ..store import db
from ..review import flags, history, jobs, leases, present, qa, decisions as review
from .access import admin_required
from .cards import cards, qa_cards, queue_batch, review_started
from .requests import clamped, integer, json_body, map_selection, queue_filters, search_args, text, threshold
from .results import image_links, search_hits
from .context import collection, error_response
from .rate_limit import DECISIONS, SEARCH, rate_limited, search_slot

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_POLLED = 500
MAX_PREVIEWED = 5000  # an accept-above preview lists this many labels at most; the rest wait for the next
PREVIEW_CARDS = 48


def _label(label) -> dict:
    return present.label_dict(label, image_links)


@bp.route("/stats")
def stats():
    with collection().session() as s:
        return jsonify({"groups": review.stats(s), "bins": review.HISTOGRAM_BINS})


@bp.route("/labels")
def labels():
    args = request.args
    limit = min(500, max(1, integer(args.get("limit", 50), "limit")))
    offset = max(0, integer(args.get("offset", 0), "offset"))
    with collection().session() as s:
        rows, total = review.list_labels(s, args.get("group") or None, args.get("value") or None,
                                         args.get("status") or None, args.get("sort", "uncertainty"),
                                         limit, offset)
        return jsonify({"labels": [_label(label) for label in rows], "total": total,
                        "limit": limit, "offset": offset})


@bp.route("/labels/<int:label_id>")
def label(label_id: int):
    with collection().session() as s:
        return jsonify(_label(review.get_label(s, label_id)))


def _write(work):
    """``work(session)`` in one write transaction of the collection's catalog (retried when busy)."""
    return db.write_transaction(collection().config, work)


@bp.errorhandler(db.CatalogBusy)
def _busy(exc: db.CatalogBusy):
    # Still locked after the retries: the decision was not made; the reviewer can simply resend it.
    return error_response(409, str(exc))


@bp.route("/labels/<int:label_id>/review", methods=("POST",))
@rate_limited(DECISIONS)
def review_label(label_id: int):
    body = json_body()
    action = body.get("action")
    version = integer(body.get("version"), "version")
    seen = _seen_value(body)
    queue_value = text(body.get("queue_value"), "queue_value")
    started = review_started()

    # One transaction per decision: the label's state and its event commit together.
    def work(s):
        label = review.decide(s, label_id, str(action), g.user.id, version, body.get("value"), seen)
        return _decided(s, label, queue_value, started)

    try:
        return jsonify({**_write(work), "action": action})
    except review.StaleLabel as exc:
        return _stale(exc)


def _seen_value(item: dict):
    """The value the client's view showed (``seen_value``, null for "none of these"), or UNSEEN."""
    if "seen_value" not in item:
        return review.UNSEEN
    seen = item["seen_value"]
    if seen is not None and not isinstance(seen, str):
        abort(400, "seen_value must be the value the card showed (a string) or null for none of these")
    return seen


def _stale(exc: review.StaleLabel):
    """409 with the label's new state (and its card), so the page can show what changed and wait."""
    with collection().session() as s:
        label = review.get_label(s, exc.label_id)
        return error_response(409, str(exc), label_id=exc.label_id, current_version=exc.current_version,
                              seen_version=exc.seen_version, seen_value=exc.seen_value,
                              label=_label(label), card=cards(s, [label])[0])


def _decided(s, label, queue_value: str | None, started) -> dict:
    """A decision's answer: the label, its card, and the progress of the queue it was made in."""
    leases.renew(s, g.user.id)  # an active reviewer keeps the cards their queue claimed
    return {"label": _label(label), "card": cards(s, [label])[0],
            "progress": review.progress(s, label.group, queue_value, g.user.id, started)}


@bp.route("/review/undo", methods=("POST",))
@rate_limited(DECISIONS)
def undo():
    body = json_body()
    queue_value = text(body.get("queue_value"), "queue_value")
    started = review_started()
    event_id = integer(body["event_id"], "event_id") if body.get("event_id") is not None else None
    bulk_id = integer(body["bulk_id"], "bulk_id") if body.get("bulk_id") is not None else None
    version = integer(body.get("version"), "version") if event_id is not None else None

    def work(s):
        if bulk_id is not None:
            undone = review.undo_bulk(s, bulk_id, g.user.id)
        elif event_id is not None:
            undone = review.Undone([review.undo_event(s, g.user.id, event_id, version)])
        else:
            undone = review.undo_newest(s, g.user.id)
        if undone.bulk is None:
            return _decided(s, undone.labels[0], queue_value, started)
        # A bulk accept undone: the cards of the first labels it restored (the page shows those it has).
        leases.renew(s, g.user.id)
        return {"bulk": review.bulk_dict(undone.bulk), "kept": undone.kept,
                "cards": cards(s, undone.labels[:MAX_POLLED]),
                "progress": review.progress(s, undone.bulk.group, queue_value, g.user.id, started)}

    try:
        return jsonify({**_write(work), "action": "undo"})
    except review.StaleLabel as exc:
        return _stale(exc)


@bp.route("/review/history")
def review_history():
    limit = clamped(request.args.get("limit", history.LIMIT), "limit", 1, history.LIMIT)
    with collection().session() as s:
        return jsonify({"decisions": history.recent(s, g.user.id, limit)})


@bp.route("/review/queue")
def queue():
    """The batch the queue page loads by itself as the reviewer nears its last card."""
    filters = queue_filters()
    if not filters["group"]:
        abort(400, "group is required")
    with collection().session() as s:
        batch = queue_batch(s, filters, g.user.id)
    return jsonify({"cards": batch.cards, "total": batch.total, "total_capped": batch.total_capped,
                    "next": batch.next, "claimed": batch.claimed, "claimed_at": batch.claimed_at})


@bp.route("/review/release", methods=("POST",))
def release():
    """Give up your leases on ``ids`` (a list, or comma-separated text; none: all of yours), so
    another reviewer's queue gets those cards now instead of when the leases lapse; with
    ``claimed_at`` (what a queue batch answered), only those claimed by then. The queue page sends it
    as a beacon (a form with ``csrf_token``, ``ids`` and ``claimed_at``) when its tab closes."""
    body = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(body, dict) and not hasattr(body, "get"):
        abort(400, "send a JSON object or a form")
    raw = body.get("ids")
    if raw is None or raw == "":
        ids = None
    elif isinstance(raw, str):
        ids = [integer(part, "ids") for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list):
        ids = [integer(part, "ids") for part in raw]
    else:
        abort(400, "ids must be a list of label ids or comma-separated ids")
    if ids is not None and len(ids) > MAX_POLLED:
        abort(400, f"ids: at most {MAX_POLLED} labels at once")
    stamp = text(body.get("claimed_at"), "claimed_at")
    try:
        claimed_by = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        abort(400, "claimed_at must be a time as the queue gave it (ISO 8601)")
    return jsonify({"released": _write(lambda s: leases.release(s, g.user.id, ids, claimed_by))})


@bp.route("/review/cards")
def review_cards():
    """The current cards of the labels ``ids`` (comma-separated, at most 500): an open review page
    polls this to refresh, in place, the cards that changed since it showed them."""
    raw = request.args.get("ids") or ""
    ids = [integer(part, "ids") for part in raw.split(",") if part.strip()]
    if len(ids) > MAX_POLLED:
        abort(400, f"ids: at most {MAX_POLLED} labels at once")
    with collection().session() as s:
        labels = review.labels_by_id(s, ids)
        return jsonify({"cards": cards(s, labels)})


@bp.route("/review/leases")
def review_leases():
    """Who holds what: each reviewer's unexpired leases per group, and the admins' assignments."""
    with collection().session() as s:
        return jsonify({"holdings": leases.holdings(s), "assignments": leases.assignments(s),
                        "lease_seconds": leases.LEASE_SECONDS})


@bp.route("/review/assignments", methods=("POST", "DELETE"))
@admin_required
def assignments():
    """POST ``{"group", "value"?, "reviewers": [names]}`` gives the group (or its value) to those
    reviewers; DELETE ``{"group", "value"?}`` takes it back. Both answer every assignment."""
    body = json_body()
    group = text(body.get("group"), "group")
    if not group:
        abort(400, "group is required")
    value = text(body.get("value"), "value")
    if request.method == "DELETE":
        _write(lambda s: leases.unassign(s, group, value))
    else:
        reviewers = body.get("reviewers")
        if not isinstance(reviewers, list) or not all(isinstance(r, str) for r in reviewers):
            abort(400, "reviewers must be a list of account names")
        _write(lambda s: leases.assign(s, group, value, reviewers, g.user.id))
    with collection().session() as s:
        return jsonify({"assignments": leases.assignments(s)})


@bp.route("/review/progress")
def progress():
    started = review_started()
    with collection().session() as s:
        return jsonify(review.progress(s, text(request.args.get("group"), "group"),
                                       text(request.args.get("value"), "value"), g.user.id, started))


def _bulk_response(result: review.BulkResult, accepted: list[dict], bulk: dict | None):
    """The per-label ``results``, plus ``accepted`` labels and ``conflicts`` (what the queue reads),
    and the ``bulk`` accept they make (its id undoes them); 409 when nothing was accepted."""
    body = {"accepted": accepted, "conflicts": result.conflicts, "results": result.results, "bulk": bulk}
    return jsonify(body), (409 if result.conflicts and not result.accepted else 200)


@bp.route("/labels/accept-selected", methods=("POST",))
@rate_limited(DECISIONS)
def accept_selected():
    body = json_body()
    items = body.get("labels")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        abort(400, 'labels must be a list of {"id": ..., "version": ...}')
    seen = [(integer(i.get("id"), "id"), integer(i.get("version"), "version"), _seen_value(i)) for i in items]
    # From an accept-above preview: the threshold it showed, so the bulk accept says what it was.
    above = threshold(body["threshold"]) if body.get("threshold") is not None else None

    def work(s):
        result = review.accept_many(s, seen, g.user.id, above)
        bulk = review.bulk_dict(result.bulk) if result.bulk is not None else None
        return result, [_label(review.get_label(s, i)) for i in result.accepted], bulk

    try:
        result, accepted, bulk = _write(work)
    except db.CatalogBusy as exc:
        result, accepted, bulk = review.BulkResult.busy([item[0] for item in seen], str(exc)), [], None
    return _bulk_response(result, accepted, bulk)


@bp.route("/labels/accept-above", methods=("GET", "POST"))
@rate_limited(DECISIONS)
def accept_above():
    source = request.args if request.method == "GET" else json_body()
    group = text(source.get("group"), "group")
    if not group:
        abort(400, "group is required")
    minimum = threshold(source.get("threshold"))
    value = text(source.get("value"), "value")
    selection = map_selection(source.get("selection"))  # a map selection's images only
    if request.method == "GET":
        with collection().session() as s:
            answer = {"count": review.preview_accept_above(s, group, minimum, value, selection),
                      "group": group, "threshold": minimum, "value": value, "selection": selection}
            if request.args.get("list"):
                # Exactly what would be accepted: every label (id, version, the value seen), to send
                # back to accept-selected, and the cards of the first PREVIEW_CARDS to look at.
                labels = review.preview_accept_above_labels(s, group, minimum, value, MAX_PREVIEWED, selection)
                answer["labels"] = [{"id": label.id, "version": label.version, "seen_value": label.value}
                                    for label in labels]
                answer["cards"] = cards(s, labels[:PREVIEW_CARDS])
            return jsonify(answer)
    def work(s):
        result = review.accept_above_many(s, group, minimum, g.user.id, value, selection)
        return result, review.bulk_dict(result.bulk) if result.bulk is not None else None

    result, bulk = _write(work)
    # "accepted" stays a count here (the queue shows it); "results" has each label and its new version.
    return jsonify({"accepted": len(result.accepted), "results": result.results, "group": group,
                    "threshold": minimum, "value": value, "selection": selection, "bulk": bulk})


@bp.route("/search")
@rate_limited(SEARCH)
@search_slot
def search():
    args = search_args()
    return jsonify({"hits": search_hits(collection(), args, args["similar"]), **args})


@bp.route("/images/<int:image_id>")
def image(image_id: int):
    with collection().session() as s:
        return jsonify(present.image_detail(s, image_id, image_links))


@bp.route("/qa/share", methods=("POST",))
@admin_required
def qa_share():
    """``{"group", "share"}``: that share (0 to 1) of each reviewer's decisions in the group goes to QA."""
    body = json_body()
    value = _write(lambda s: qa.set_share(s, body.get("group"), body.get("share")))
    return jsonify({"group": body.get("group"), "share": value})


@bp.route("/qa/queue")
def qa_queue():
    """Open QA tasks for you (never your own decisions), blind: the card without the first answer."""
    group = text(request.args.get("group"), "group")
    with collection().session() as s:
        return jsonify({"tasks": qa_cards(s, qa.queue(s, g.user.id, group))})


@bp.route("/qa/<int:task_id>", methods=("POST",))
def qa_answer(task_id: int):
    """``{"value"}``: your own answer to a QA task (null: none of these); agreed or disagreed."""
    body = json_body()
    if "value" not in body:
        abort(400, "value is required: your answer, or null for none of these")

    def work(s):
        return qa.task_dict(qa.answer(s, task_id, g.user.id, body["value"]), qa.user_names(s))

    return jsonify(_write(work))


@bp.route("/qa/disagreements")
@admin_required
def qa_disagreements():
    with collection().session() as s:
        names = qa.user_names(s)
        return jsonify({"tasks": [qa.task_dict(t, names) for t in qa.disagreements(s)]})


@bp.route("/qa/<int:task_id>/resolve", methods=("POST",))
@admin_required
def qa_resolve(task_id: int):
    """``{"value"}``: the admin's final value (null: none of these), stored on the label."""
    body = json_body()
    if "value" not in body:
        abort(400, "value is required: the final value, or null for none of these")
    return jsonify(_write(lambda s: qa.task_dict(review.resolve_qa(s, task_id, g.user.id, body["value"]),
                                                 qa.user_names(s))))


@bp.route("/qa/report")
def qa_report():
    """Per reviewer: decisions, agreement with QA (raw and Cohen's kappa with its 95% interval) and
    seconds per decision; ``qa_needed``: the QA'd decisions a kappa needs to be more than provisional."""
    with collection().session() as s:
        return jsonify({"reviewers": qa.report(s), "shares": qa.shares(s), "qa_needed": qa.MIN_QA_CHECKED})


@bp.route("/flags", methods=("POST",))
def add_flag():
    """Flag a label (``label_id``) or an image (``image_id``): ``{"name", "note"?}``; 201 with the
    flag and every flag of its image. A name over 64 characters is a 400 naming ``name``."""
    body = json_body()
    label_id = integer(body["label_id"], "label_id") if body.get("label_id") is not None else None
    image_id = integer(body["image_id"], "image_id") if body.get("image_id") is not None else None

    def work(s):
        flag = flags.add(s, body.get("name"), g.user.id, image_id, label_id, body.get("note"))
        return flag.id, flag.image_id, flags.of_images(s, [flag.image_id]).get(flag.image_id, [])

    flag_id, image, all_flags = _write(work)
    return jsonify({"flag": next(f for f in all_flags if f["id"] == flag_id), "image_id": image,
                    "flags": all_flags}), 201


@bp.route("/flags/<int:flag_id>", methods=("DELETE",))
def remove_flag(flag_id: int):
    _write(lambda s: flags.remove(s, flag_id))
    return jsonify({"removed": flag_id})


@bp.route("/images/<int:image_id>/similar")
@rate_limited(SEARCH)
@search_slot
def similar(image_id: int):
    args = search_args()
    return jsonify({"hits": search_hits(collection(), {**args, "q": ""}, image_id)})


def _job(job: dict) -> dict:
    return {**job, "url": url_for("api.job", job_id=job["id"])}


@bp.route("/jobs", methods=("POST",))
@admin_required
def start_job():
    kind = text(json_body().get("kind"), "kind")
    if not kind:
        abort(400, f"kind is required (one of: {', '.join(jobs.KINDS)})")
    job, started = jobs.start(collection(), kind, g.user.id)
    return jsonify(_job(job)), (202 if started else 200)


@bp.route("/jobs/<int:job_id>")
def job(job_id: int):
    with collection().session() as s:
        return jsonify(_job(jobs.job_dict(jobs.get(s, job_id))))
