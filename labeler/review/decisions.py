"""Review decisions on labels: accept, correct, reject, skip and undo, plus bulk accepts.

Every decision writes the label's new state and an append-only ``ReviewEvent`` in the same
transaction, so a crash leaves either both or neither. A decision carries the label
``version`` the reviewer saw; if someone else changed the label since, it is refused with
:class:`StaleLabel` instead of overwriting their work. The ``UPDATE`` itself is guarded by
SQLAlchemy's ``version_id_col`` (``... WHERE version = :seen``), which closes the race
between our check and the write.

Pure catalog logic: no Flask here.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Sequence

from sqlalchemy import and_, case, delete, func, literal_column, or_, select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..store import label_totals
from ..store.catalog import (MAX_ID, NOT_PROPOSED, SPOT_CHECK_ORDER, BulkAction, Image, ImageFile, Label,
                             MapSelectionMember, QaTask, ReviewEvent, ReviewSkip, REVIEWED_ONLY, utcnow)
from ..core import stored_scores
from ..errors import LabelerError, NotFound
from . import duplicate_marks, flags, leases, qa
from .values import MAX_VALUE_LENGTH, lookalike, normalise, value_problem


def in_selection(selection_id: int, image_id_column):
    """A condition: the image is one of map selection ``selection_id``'s (``labeler.curation.maps``)."""
    return image_id_column.in_(select(MapSelectionMember.image_id)
                               .where(MapSelectionMember.selection_id == selection_id))


ACTIONS = ("accept", "correct", "reject", "skip", "undo")
DECISIONS = ("accept", "correct", "reject")  # what a reviewer's undo steps back through
UNDO_REACH = 200  # how many of a reviewer's newest decisions their undo can reach
STATUSES = ("proposed", *NOT_PROPOSED)  # auto: by manage.py accept
# What a search may filter on: a label status, or "reviewed" for a person's decision (not proposed, not auto).
FILTER_STATUSES = (*STATUSES, "reviewed")
SORTS = ("uncertainty", "informative", "confidence", "confidence_asc", "id", "spot-check", "suspect")
# spot-check: auto labels first, in an order unrelated to confidence (a multiplicative hash of the
# id), so the first ones decided are a random sample of the run, then the rest by id; suspect:
# audit's scores, highest first. Both order every label (the rest after), as every sort does; a
# status filter narrows them.
SPOT_CHECK = literal_column(SPOT_CHECK_ORDER.format(id="labels.id"))  # as its index has it
HISTOGRAM_BINS = 10
UNSEEN = object()  # a decision that does not say which value it saw (older API clients)


class ReviewError(LabelerError):
    """A decision that cannot be made as asked (unknown action, empty correction, ...)."""


class StaleLabel(ReviewError):
    """The label changed since the reviewer saw it; reload and decide again.

    Carries the label's current state (``current_version``, ``current_value``) and the value the
    reviewer saw, so a front end can show "proposal changed: book → mug" on the card."""

    def __init__(self, label: Label, seen_version: int | None, seen_value: str | None | object = None):
        self.label_id = label.id
        self.current_version = label.version
        self.current_value = label.value
        self.seen_version = seen_version
        self.seen_value = label.value if seen_value is UNSEEN else seen_value
        super().__init__(
            f"label {label.id} was changed by someone else (you saw version {seen_version}, "
            f"it is now version {label.version}: {label.status} "
            f"{repr(label.value) if label.value is not None else '(none of these)'}); reload and review it again")


def get_label(session: Session, label_id: int) -> Label:
    label = session.get(Label, label_id)
    if label is None:
        raise NotFound(f"no label with id {label_id}")
    return label


def _record(session: Session, label: Label, user_id: int | None, action: str,
            value: str | None, status: str, bulk_id: int | None = None) -> ReviewEvent:
    event = ReviewEvent(label_id=label.id, user_id=user_id, action=action,
                        before_value=label.value, after_value=value,
                        before_status=label.status, after_status=status, run_id=label.accept_run_id,
                        bulk_id=bulk_id)
    session.add(event)
    label.value = value
    label.status = status
    label.reviewed_by = user_id if status != "proposed" else None
    label.reviewer_name = None  # a labeler user decided (or no one): an imported name no longer applies
    label.reviewed_at = utcnow() if status != "proposed" else None
    return event


def record_import(session: Session, label: Label, value: str, user_id: int | None,
                  source: str | None = None, reviewer_name: str | None = None) -> ReviewEvent:
    """Store an imported ``value`` with an ``import`` event naming the file it came from (``source``);
    flushes a new label (the caller flushes the rest). ``reviewer_name``: the reviewer the file names
    when no labeler user has that name (``user_id`` is then None), kept as text on label and event.

    The value is ``corrected`` when it differs from the model's proposal, else ``accepted``
    (also when the model proposed nothing). ``label`` may be new (not yet in the session): it is
    inserted already reviewed, and its event's "before" is an empty proposal.
    """
    new = label.id is None
    status = "corrected" if label.predicted is not None and value != label.predicted else "accepted"
    before_value, before_status = (None, "proposed") if new else (label.value, label.status)
    label.value, label.status = value, status
    label.reviewed_by, label.reviewed_at = user_id, utcnow()
    label.reviewer_name = reviewer_name if user_id is None else None
    if new:
        session.add(label)
        session.flush()  # a new label needs its id for the event; a known one is flushed with its event
    event = ReviewEvent(label_id=label.id, user_id=user_id, action="import", before_value=before_value,
                        after_value=value, before_status=before_status, after_status=status,
                        run_id=label.accept_run_id, source=source, reviewer_name=label.reviewer_name)
    session.add(event)
    return event


def _clean_value(value: str | None, label: Label) -> str:
    """A correction's value under the rules import-labels applies too (``review.values``)."""
    if value is not None and not isinstance(value, str):
        raise ReviewError("a correction's value must be text")
    value = normalise(value or "").strip()
    if not value:
        raise ReviewError("a correction needs a value; pick an option or type one")
    if len(value) > MAX_VALUE_LENGTH:
        raise ReviewError(f"a value must be at most {MAX_VALUE_LENGTH} characters")
    if (problem := value_problem(value)) is not None:
        raise ReviewError(f"value: {problem}")
    if (imitated := lookalike(value, stored_scores.option_names(label.prompt_set, label.group) or ())) is not None:
        raise ReviewError(f"value: {value!r} looks like the option {imitated!r} but is other text "
                          "(look-alike letters); pick the option itself")
    return value


def undo_target(session: Session, label_id: int) -> ReviewEvent | None:
    """The newest decision on the label not yet undone (undos pair off like a stack)."""
    events = session.scalars(select(ReviewEvent).where(ReviewEvent.label_id == label_id)
                             .order_by(ReviewEvent.id.desc())).all()
    pending_undos = 0
    for event in events:
        if event.action == "undo":
            pending_undos += 1
        elif pending_undos:
            pending_undos -= 1
        else:
            return event
    return None


def check_seen(label: Label, seen_version: int | None, seen_value: str | None | object = UNSEEN) -> None:
    """Refuse a decision made on another state of ``label`` than its current one.

    ``seen_version`` is the version the reviewer's view showed and ``seen_value`` the value it showed
    (None: "none of these"; :data:`UNSEEN` when the client does not say). :class:`ReviewError` when
    the version is missing or from the future (no label ever had it), :class:`StaleLabel` when
    either differs from the label's.
    """
    if seen_version is None:
        raise ReviewError("version: a decision must say which label version it was made on")
    seen_version = int(seen_version)
    if seen_version < 1 or seen_version > label.version:
        raise ReviewError(f"version: label {label.id} has never had version {seen_version} "
                          f"(it is at version {label.version}); reload it and decide again")
    if seen_value is not UNSEEN and seen_value is not None and not isinstance(seen_value, str):
        raise ReviewError("seen_value: the value a decision saw must be text or null")
    if seen_version != label.version or (seen_value is not UNSEEN and seen_value != label.value):
        raise StaleLabel(label, seen_version, seen_value)


def decide(session: Session, label_id: int, action: str, user_id: int | None,
           seen_version: int | None, value: str | None = None, seen_value: str | None | object = UNSEEN,
           sample_qa: bool = True, bulk_id: int | None = None) -> Label:
    """Apply one decision to a label and flush it; the caller's transaction commits.

    ``seen_version`` is the label version the reviewer's view showed, ``seen_value`` the value it
    showed (see :func:`check_seen`): a decision applies only to what the reviewer saw. ``skip`` leaves the label
    as it is and records no event; for a reviewer (``user_id``) it stores the skip, which sends the
    label to the end of their queue. Any other decision by them clears their skip of the label.
    A decision may be drawn into QA (``qa.sample``; not an admin's resolution, ``sample_qa`` False).
    ``bulk_id``: the bulk accept (:class:`BulkAction`) the decision is part of.
    Raises :class:`StaleLabel`, :class:`ReviewError` or :class:`NotFound`.
    """
    if action not in ACTIONS:
        raise ReviewError(f"unknown action '{action}'; use one of: {', '.join(ACTIONS)}")
    label = get_label(session, label_id)
    check_seen(label, seen_version, seen_value)
    if user_id is not None:
        session.execute(delete(ReviewSkip).where(ReviewSkip.label_id == label.id, ReviewSkip.user_id == user_id))
    if action == "skip":
        if user_id is not None:
            session.add(ReviewSkip(label_id=label.id, user_id=user_id))
            leases.release(session, user_id, [label.id])  # a skipped card is free for another reviewer
            session.flush()
        return label
    if action == "accept":
        event = _record(session, label, user_id, "accept",
                        label.value if label.value is not None else label.predicted, "accepted", bulk_id)
    elif action == "correct":
        event = _record(session, label, user_id, "correct", _clean_value(value, label), "corrected")
    elif action == "reject":
        event = _record(session, label, user_id, "reject", None, "rejected")
    else:  # undo
        target = undo_target(session, label.id)
        if target is None:
            raise ReviewError(f"label {label.id} has no decision to undo")
        event = _record(session, label, user_id, "undo", target.before_value, target.before_status)
    try:
        session.flush()
    except StaleDataError:
        # Another transaction committed between our read and our UPDATE ... WHERE version. The
        # caller rolls back (only its savepoint, in a bulk accept); the message needs a fresh read.
        with Session(session.get_bind()) as fresh:
            raise StaleLabel(get_label(fresh, label_id), seen_version, seen_value) from None
    if sample_qa:
        qa.sample(session, label, event)
    return label


def resolve_qa(session: Session, task_id: int, admin_id: int, value: str | None) -> QaTask:
    """An admin settles a QA disagreement with ``value`` (None: none of these): stored on the label as
    their decision when it differs from the label's value, and the task is ``resolved``."""
    task = qa.get(session, task_id)
    if task.status != "disagreed":
        raise qa.QaError(f"QA task {task_id} is {task.status}; only a disagreement is resolved")
    label = get_label(session, task.label_id)
    if value is not None:
        value = _clean_value(value, label)
    if label.value != value or label.status == "proposed":
        action = "reject" if value is None else ("accept" if value == label.value else "correct")
        decide(session, label.id, action, admin_id, label.version, value, sample_qa=False)
    task.status, task.resolved_by, task.resolved_value, task.done_at = "resolved", admin_id, value, utcnow()
    session.flush()
    return task


@dataclass
class Undone:
    """What an undo restored: one label, or a bulk accept's labels (``bulk``), less those ``kept``
    because someone changed them since (``{"id", "message"}`` each)."""

    labels: list[Label]
    bulk: BulkAction | None = None
    kept: list[dict] = field(default_factory=list)


def _newest_mine(session: Session, user_id: int) -> ReviewEvent:
    """The reviewer's newest decision not yet undone (a bulk accept's event stands for all of it).

    Raises :class:`ReviewError` when there is none within their newest ``UNDO_REACH``, and
    :class:`StaleLabel` when someone else decided its label after them.
    """
    undone_bulk = select(BulkAction.id).where(BulkAction.id == ReviewEvent.bulk_id, BulkAction.undone_at.is_not(None))
    mine = session.scalars(select(ReviewEvent).where(ReviewEvent.user_id == user_id,
                                                     ReviewEvent.action.in_((*DECISIONS, "undo")),
                                                     or_(ReviewEvent.bulk_id.is_(None), ~undone_bulk.exists()))
                           .order_by(ReviewEvent.id.desc()).limit(UNDO_REACH)).all()
    undone: dict[int, int] = {}  # label id → the reviewer's undos on it not yet matched (newest first)
    for event in mine:
        if event.bulk_id is not None and event.action != "undo":
            return event  # a bulk accept not undone yet: undone as a whole, whatever changed since
        if event.action == "undo":
            undone[event.label_id] = undone.get(event.label_id, 0) + 1
            continue
        if undone.get(event.label_id):
            undone[event.label_id] -= 1  # the reviewer undid this one already, whoever decided since
            continue
        target = undo_target(session, event.label_id)
        if target is None or target.id < event.id:
            continue  # already undone (by an undo on the label), so look further back
        if target.id != event.id:
            # A newer decision on the label is someone else's (the reviewer's own would be newer here).
            label = get_label(session, event.label_id)
            raise StaleLabel(label, label.version)
        return event
    raise ReviewError("nothing to undo: you have made no decision that is not undone yet")


def undo_newest(session: Session, user_id: int) -> Undone:
    """Undo the reviewer's newest decision not yet undone, on whichever page or day they made it; a
    bulk accept is undone as a whole (:func:`undo_bulk`). Raises as :func:`_newest_mine`."""
    event = _newest_mine(session, user_id)
    if event.bulk_id is not None:
        return undo_bulk(session, event.bulk_id, user_id)
    label = get_label(session, event.label_id)
    return Undone([decide(session, label.id, "undo", user_id, label.version)])


def undo_last(session: Session, user_id: int) -> Label:
    """:func:`undo_newest`'s label (a bulk accept's first one restored)."""
    undone = undo_newest(session, user_id)
    if not undone.labels:
        raise ReviewError(bulk_message(undone.bulk))
    return undone.labels[0]


def undo_event(session: Session, user_id: int, event_id: int, seen_version: int | None) -> Label:
    """Undo one of the reviewer's own decisions (``event_id``), from their history, when its label
    is still as their decision left it (at ``seen_version``, the version their history showed).

    :class:`ReviewError` says why not: not theirs, not a decision, undone already, or changed since
    (by whom, to what); a label changed after the history was read is :class:`StaleLabel`.
    """
    event = session.get(ReviewEvent, event_id)
    if event is None or event.user_id != user_id or event.action not in DECISIONS:
        raise NotFound(f"you have no decision with id {event_id}")
    if event.bulk_id is not None:
        return undo_bulk(session, event.bulk_id, user_id).labels[0]
    target = undo_target(session, event.label_id)
    label = get_label(session, event.label_id)
    if target is None or target.id < event.id:
        raise ReviewError(f"your decision on label {label.id} is undone already")
    if target.id != event.id:
        raise ReviewError(changed_since(target, label))
    return decide(session, label.id, "undo", user_id, seen_version)


def changed_since(newer: ReviewEvent, label: Label) -> str:
    """Why a decision cannot be undone: who changed its label since, and to what."""
    who = newer.user.name if newer.user is not None else "an import or a script"
    value = repr(label.value) if label.value is not None else "(none of these)"
    return f"{who} changed it since ({newer.action}): it is now {label.status} {value}; undo would overwrite that"


def start_bulk(session: Session, user_id: int | None, kind: str, group: str | None = None,
               value: str | None = None, threshold: float | None = None) -> BulkAction:
    """A new bulk accept (``above`` or ``selected``), flushed so its events can name it."""
    bulk = BulkAction(user_id=user_id, kind=kind, group=group, value=value, threshold=threshold, count=0)
    session.add(bulk)
    session.flush()
    return bulk


def undo_bulk(session: Session, bulk_id: int, user_id: int) -> Undone:
    """Undo a reviewer's bulk accept as one: every label it accepted that is still as it left it goes
    back to its state before; a label someone changed since (or whose accept was undone alone) is
    kept as it is and reported. :class:`ReviewError` when it is not theirs or is undone already."""
    bulk = session.get(BulkAction, bulk_id)
    if bulk is None or bulk.user_id != user_id:
        raise NotFound(f"you have no bulk accept with id {bulk_id}")
    if bulk.undone_at is not None:
        raise ReviewError(f"that bulk accept is undone already: {bulk_message(bulk)}")
    events = session.scalars(select(ReviewEvent).where(ReviewEvent.bulk_id == bulk.id, ReviewEvent.action == "accept")
                             .order_by(ReviewEvent.label_id)).all()
    restored, kept = [], []
    for start in range(0, len(events), 500):
        chunk = events[start:start + 500]
        # The newest event of each label: still the bulk's own accept when no one changed the label since.
        newest = dict(session.execute(select(ReviewEvent.label_id, func.max(ReviewEvent.id))
                                      .where(ReviewEvent.label_id.in_([e.label_id for e in chunk]))
                                      .group_by(ReviewEvent.label_id)).all())
        labels = {label.id: label for label in labels_by_id(session, [e.label_id for e in chunk])}
        for event in chunk:
            label = labels.get(event.label_id)
            if label is None:
                continue
            if newest.get(event.label_id) != event.id:
                later = session.get(ReviewEvent, newest[event.label_id])
                kept.append({"id": label.id, "message": changed_since(later, label)})
                continue
            undo = _record(session, label, user_id, "undo", event.before_value, event.before_status, bulk.id)
            restored.append((label, undo))
        try:
            session.flush()
        except StaleDataError:
            raise ReviewError("labels changed while undoing; nothing was undone, try again") from None
    for label, undo in restored:
        qa.sample(session, label, undo)  # closes any QA task drawn from the accept
    bulk.undone_at, bulk.undone, bulk.kept = utcnow(), len(restored), len(kept)
    session.flush()
    return Undone([label for label, _ in restored], bulk, kept)


def bulk_message(bulk: BulkAction) -> str:
    """What a bulk accept did, in one line: the queue shows it, after a reload too."""
    what = f"{bulk.group} label{'' if bulk.count == 1 else 's'}" if bulk.group else \
        f"label{'' if bulk.count == 1 else 's'}"
    if bulk.value:
        what += f" = {bulk.value}"
    how = f" at or above {bulk.threshold:g}" if bulk.threshold is not None else " selected"
    text = f"Accepted {bulk.count:,} {what}{how}."
    if bulk.undone_at is not None:
        text += f" Undone: {bulk.undone:,} back to proposed"
        text += f", {bulk.kept:,} left as changed since." if bulk.kept else "."
    return text


def bulk_dict(bulk: BulkAction) -> dict:
    return {"id": bulk.id, "kind": bulk.kind, "group": bulk.group, "value": bulk.value, "threshold": bulk.threshold,
            "count": bulk.count, "created_at": bulk.created_at.isoformat(),
            "undone_at": bulk.undone_at.isoformat() if bulk.undone_at else None, "undone": bulk.undone,
            "kept": bulk.kept, "message": bulk_message(bulk)}


def newest_bulk(session: Session, user_id: int, since: datetime | None = None) -> BulkAction | None:
    """The reviewer's newest bulk accept (made at or after ``since``)."""
    query = select(BulkAction).where(BulkAction.user_id == user_id)
    if since is not None:
        query = query.where(BulkAction.created_at >= since)
    return session.scalars(query.order_by(BulkAction.id.desc()).limit(1)).first()


def _unindexed(column):
    return column + literal_column("''")


def progress(session: Session, group: str | None, value: str | None = None, user_id: int | None = None,
             since: datetime | None = None) -> dict:
    """Reviewed and remaining labels for a queue's filter, and the reviewer's pace since ``since``.

    ``decisions`` counts the reviewer's decisions since ``since`` less their undos; ``per_minute``
    divides them by the minutes since the first of them (at least one minute, so a first decision
    does not read as hundreds a minute).
    """
    # Every label, less those of images no longer present (few): a join to the images would read a
    # million rows for a million-image group on every decision. A whole group's labels are its kept
    # total (label_totals: counted once after labels were added) and its reviewed ones through the
    # index of reviewed labels, so a decision reads what was reviewed, not the group's million.
    query = select(Label.status, func.count())
    if group and not value:
        counts = dict(session.execute(query.where(Label.group == group, REVIEWED_ONLY).group_by(Label.status)).all())
        counts["proposed"] = label_totals.group_total(session, group) - sum(counts.values())
    else:
        if group:
            query = query.where(Label.group == group)
        if value:
            query = query.where(Label.value == value)
        counts = dict(session.execute(query.group_by(Label.status)).all())
    # ``< 'ok' OR > 'ok'``: two ranges of the status index, where ``<>`` would read every image
    gone = list(session.scalars(select(Image.id).where(or_(Image.status < "ok", Image.status > "ok"))))
    for start in range(0, len(gone), 500):
        # each missing image's labels through (image_id, group), not the group's index
        of_gone = select(Label.status, func.count()).where(Label.image_id.in_(gone[start:start + 500]))
        if group:
            of_gone = of_gone.where(_unindexed(Label.group) == group)
        if value:
            of_gone = of_gone.where(_unindexed(Label.value) == value)
        for status, n in session.execute(of_gone.group_by(Label.status)).all():
            counts[status] -= n
    total = sum(counts.values())
    remaining = int(counts.get("proposed", 0))
    out = {"group": group, "value": value, "total": total, "reviewed": total - remaining, "remaining": remaining,
           "decisions": 0, "per_minute": 0.0}
    if user_id is not None and since is not None:
        rows = session.execute(select(ReviewEvent.action, func.count(), func.min(ReviewEvent.created_at))
                               .where(ReviewEvent.user_id == user_id, ReviewEvent.created_at >= since,
                                      ReviewEvent.action.in_((*DECISIONS, "undo")))
                               .group_by(ReviewEvent.action)).all()
        made = sum(n for action, n, _ in rows if action != "undo")
        undone = sum(n for action, n, _ in rows if action == "undo")
        first = min((when for _, _, when in rows), default=None)
        minutes = max(1.0, (utcnow() - first).total_seconds() / 60) if first else 1.0
        out["decisions"] = max(0, made - undone)
        out["per_minute"] = round(out["decisions"] / minutes, 1)
    return out


@dataclass
class BulkResult:
    """What a bulk accept did, label by label, in the order the labels were asked for.

    ``results`` has one ``{"id", "status", ...}`` per label: ``accepted`` (with the new ``version``),
    ``conflict`` (with the ``current_version``, or none when the catalog was busy), ``not_found`` or
    ``invalid``, each but ``accepted`` with a ``message``. ``conflicts`` lists every one not accepted.
    """

    accepted: list[int] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)  # {id, message}
    results: list[dict] = field(default_factory=list)
    bulk: BulkAction | None = None  # the one undoable event, when any label was accepted

    @classmethod
    def from_results(cls, results: list[dict]) -> "BulkResult":
        return cls(accepted=[r["id"] for r in results if r["status"] == "accepted"],
                   conflicts=[{"id": r["id"], "message": r["message"]} for r in results
                              if r["status"] != "accepted"],
                   results=results)

    @classmethod
    def busy(cls, label_ids: Sequence[int], message: str) -> "BulkResult":
        """Nothing applied: every label is a conflict with the busy catalog's ``message``."""
        return cls.from_results([{"id": int(i), "status": "conflict", "current_version": None,
                                  "message": message} for i in label_ids])


def _bulk_entry(label_id: int, exc: LabelerError) -> dict:
    if isinstance(exc, StaleLabel):
        return {"id": label_id, "status": "conflict", "current_version": exc.current_version,
                "current_value": exc.current_value, "message": str(exc)}
    if isinstance(exc, NotFound):
        return {"id": label_id, "status": "not_found", "message": str(exc)}
    return {"id": label_id, "status": "invalid", "message": str(exc)}


def accept_many(session: Session, seen: Sequence[tuple], user_id: int | None,
                threshold: float | None = None) -> BulkResult:
    """Accept each ``(label_id, seen_version)`` or ``(label_id, seen_version, seen_value)``; stale
    or missing ones are reported, not applied. The accepts are one :class:`BulkAction` (``above``
    ``threshold`` when the labels came from its preview, else ``selected``), undone as one.

    Each label and its event are saved together, independently of the others: a conflict on one
    never undoes the rest. Labels are written in id order, so two bulk accepts lock shared rows
    in the same order (no deadlock on PostgreSQL); the results keep the order asked for.
    """
    entries: dict[int, dict] = {}
    bulk = start_bulk(session, user_id, "selected" if threshold is None else "above", threshold=threshold)
    groups, values = set(), set()
    for position in sorted(range(len(seen)), key=lambda p: (int(seen[p][0]), p)):
        label_id, version = int(seen[position][0]), seen[position][1]
        seen_value = seen[position][2] if len(seen[position]) > 2 else UNSEEN
        try:
            with session.begin_nested():
                label = decide(session, label_id, "accept", user_id, version, seen_value=seen_value, bulk_id=bulk.id)
            entries[position] = {"id": label_id, "status": "accepted", "version": label.version}
            groups.add(label.group)
            values.add(label.value)
        except (StaleLabel, NotFound, ReviewError) as exc:
            entries[position] = _bulk_entry(label_id, exc)
    result = BulkResult.from_results([entries[p] for p in range(len(seen))])
    _finish_bulk(session, bulk, len(result.accepted), groups, values if threshold is not None else set())
    result.bulk = bulk if result.accepted else None
    return result


def _finish_bulk(session: Session, bulk: BulkAction, count: int, groups: set, values: set) -> None:
    """Count the bulk's accepts and name its group (and value) when they share one; none: no bulk."""
    if not count:
        session.delete(bulk)
        session.flush()
        return
    bulk.count = count
    bulk.group = groups.pop() if len(groups) == 1 else None
    bulk.value = values.pop() if len(values) == 1 and bulk.kind == "above" else None


def _above_query(group: str, threshold: float, option: str | None, selection: int | None = None):
    # Only untouched proposals: a threshold accept never overrides a person's decision.
    query = (select(Label).join(Image, Image.id == Label.image_id)
             .where(Image.status == "ok", Label.group == group, Label.status == "proposed",
                    Label.confidence >= threshold, Label.value.is_not(None)))
    if option:
        query = query.where(Label.value == option)
    if selection is not None:
        query = query.where(in_selection(selection, Label.image_id))
    return query


def preview_accept_above(session: Session, group: str, threshold: float, option: str | None = None,
                         selection: int | None = None) -> int:
    """How many proposed labels of ``group`` (and ``option``, and map ``selection``) have
    confidence >= ``threshold``."""
    query = _above_query(group, threshold, option, selection).with_only_columns(func.count(Label.id))
    return int(session.scalar(query) or 0)


def preview_accept_above_labels(session: Session, group: str, threshold: float, option: str | None = None,
                                limit: int = 5000, selection: int | None = None) -> list[Label]:
    """The proposed labels an accept above ``threshold`` would accept now, by id, at most ``limit``:
    what a preview shows, and (ids and versions) exactly what its confirmation accepts."""
    return list(session.scalars(_above_query(group, threshold, option, selection).order_by(Label.id).limit(limit)))


def accept_above_many(session: Session, group: str, threshold: float, user_id: int | None,
                      option: str | None = None, selection: int | None = None) -> BulkResult:
    """Accept every proposed label with confidence >= ``threshold`` (of ``option``, in map
    ``selection``); every result is ``accepted``.

    The labels are read ``FOR UPDATE`` in id order (PostgreSQL; SQLite's write transaction holds the
    whole catalog), so none can change between the read and the write.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ReviewError("the confidence threshold must be between 0 and 1")
    labels = session.scalars(_above_query(group, threshold, option, selection).order_by(Label.id)
                             .with_for_update(of=Label)).all()
    bulk = start_bulk(session, user_id, "above", group, option, threshold)
    events = [_record(session, label, user_id, "accept", label.value, "accepted", bulk.id) for label in labels]
    try:
        session.flush()
    except StaleDataError:
        # Only a caller outside a write transaction gets here; it rolls back: all or nothing.
        raise ReviewError("labels changed while accepting; nothing was accepted, try again") from None
    for label, event in zip(labels, events):
        qa.sample(session, label, event)
    _finish_bulk(session, bulk, len(labels), {group}, {option} if option else set())
    result = BulkResult.from_results([{"id": label.id, "status": "accepted", "version": label.version}
                                      for label in labels])
    result.bulk = bulk if labels else None
    return result


def accept_above(session: Session, group: str, threshold: float, user_id: int | None,
                 option: str | None = None) -> int:
    """Accept every proposed label with confidence >= ``threshold``; returns how many."""
    return len(accept_above_many(session, group, threshold, user_id, option).accepted)


# -- reading -----------------------------------------------------------------------------

def _ordered(group: str | None, value: str | None, status: str | None, sort: str, user_id: int | None,
             flag: str | None = None):
    """The filtered query of present images' labels and its sort keys: SQL expressions, each
    ascending and never NULL, that order the queue and let a page start after a given key.
    ``flag``: only labels that carry it, or whose image does."""
    if status and status not in STATUSES:
        raise ReviewError(f"unknown status '{status}'; use one of: {', '.join(STATUSES)}")
    if sort not in SORTS:
        raise ReviewError(f"unknown sort '{sort}'; use one of: {', '.join(SORTS)}")
    # a marked duplicate is out of every queue until its mark is undone
    query = (select(Label).join(Image, Image.id == Label.image_id)
             .where(Image.status == "ok", duplicate_marks.not_marked(Label.image_id)))
    if group:
        query = query.where(Label.group == group)
    if value:
        query = query.where(Label.value == value)
    if status:
        query = query.where(Label.status == status)
        if status != "proposed":
            query = query.where(REVIEWED_ONLY)

    query, keys = _sort_keys(query, group, sort)
    if flag:
        query = query.where(flags.flagged(flag))
    if user_id is not None and status == "proposed":
        # A team's queue: labels another reviewer's queue holds, or an admin gave to others, are not here.
        query = query.where(leases.not_held_by_others(user_id), leases.not_assigned_to_others(user_id))
    if user_id is not None:
        # The reviewer's skips go last, oldest skip first.
        skips = select(ReviewSkip.label_id, ReviewSkip.id).where(ReviewSkip.user_id == user_id).subquery()
        query = query.outerjoin(skips, skips.c.label_id == Label.id)
        keys = [case((skips.c.id.is_(None), 0), else_=1), func.coalesce(skips.c.id, 0), *keys]
    return query, keys


def _last_if_null(column):
    return [case((column.is_(None), 1), else_=0), func.coalesce(column, 0)]


def _sort_keys(query, group: str | None, sort: str):
    """``query`` (joined as the sort needs) and the sort's keys, ascending and never NULL."""
    if sort == "informative":
        return _informative(query, group, _last_if_null)
    if sort == "spot-check":  # with status=auto: only the auto labels
        return query, [case((Label.status == "auto", 0), else_=1),
                       case((Label.status == "auto", SPOT_CHECK), else_=0), Label.id]
    if sort == "suspect":
        return query, [case((Label.suspect_score.is_(None), 1), else_=0), -func.coalesce(Label.suspect_score, 0),
                       Label.id]
    return query, {
        "uncertainty": [*_last_if_null(Label.margin), Label.id],
        "confidence": [case((Label.confidence.is_(None), 1), else_=0), -func.coalesce(Label.confidence, 0), Label.id],
        "confidence_asc": [*_last_if_null(Label.confidence), Label.id],
        "id": [Label.id],
    }[sort]


def _informative(query, group: str | None, last_if_null):
    """Most informative first: the cold-start picks (typical images, while a group has no reviews),
    then the smallest calibrated margins taking turns over the proposed values, so a rare value is
    not starved by a common one (the same order ``evaluate --replay --order informative`` replays).
    Each label run stores a label's place in it (``labeling.queue_order``)."""
    return query, [*last_if_null(Label.informative_rank), Label.id]


def label_query(group: str | None = None, value: str | None = None, status: str | None = None,
                sort: str = "uncertainty", user_id: int | None = None, flag: str | None = None):
    """Labels of present images, filtered, in review order (smallest margin first by default);
    with ``user_id``, that reviewer's skips last."""
    query, keys = _ordered(group, value, status, sort, user_id, flag)
    return query.order_by(*keys)


def list_labels(session: Session, group: str | None = None, value: str | None = None,
                status: str | None = None, sort: str = "uncertainty", limit: int = 60,
                offset: int = 0, user_id: int | None = None, flag: str | None = None) -> tuple[list[Label], int]:
    """One page of labels and the total that match."""
    query = label_query(group, value, status, sort, user_id, flag)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    labels = session.scalars(query.limit(max(1, min(limit, 500))).offset(max(0, offset))).all()
    return list(labels), int(total or 0)


Key = tuple[float, ...]  # a label's place in a queue: its sort keys' values


@dataclass
class QueuePage:
    """One page of a review queue, and the keys that page on from it.

    ``first``/``last`` are the keys of its first and last label (None when empty); ``more_before``
    and ``more_after`` say whether labels precede or follow it.
    """

    labels: list[Label]
    total: int
    first: Key | None
    last: Key | None
    more_before: bool
    more_after: bool
    keys: list[Key] = field(default_factory=list)  # each label's key
    total_capped: bool = False  # more than ``total`` match (it stopped counting at COUNT_CAP)


COUNT_CAP = 1_000  # a queue counts its labels exactly up to here; past it, the page says "more than"


@dataclass(frozen=True)
class _Segment:
    """A run of one sort's order that one index serves: the labels matching ``where``, ordered by
    ``order`` (``(column, descending)`` pairs, the last unique); ``statuses``: the only statuses it holds."""

    where: tuple
    order: tuple
    statuses: tuple | None = None


def _by_then_nulls(column, descending: bool = False) -> list[_Segment]:
    return [_Segment((column.is_not(None),), ((column, descending), (Label.id, False))),
            _Segment((column.is_(None),), ((Label.id, False),))]


def _segments(sort: str) -> list[_Segment]:
    """The sort as segments, in order; each is walked through its ``ix_labels_queue_*`` index."""
    if sort == "spot-check":
        others = tuple(s for s in STATUSES if s != "auto")
        return [_Segment((), ((SPOT_CHECK, False), (Label.id, False)), ("auto",)),
                _Segment((), ((Label.id, False),), others)]
    return {"uncertainty": lambda: _by_then_nulls(Label.margin),
            "informative": lambda: _by_then_nulls(Label.informative_rank),
            "confidence": lambda: _by_then_nulls(Label.confidence, True),
            "confidence_asc": lambda: _by_then_nulls(Label.confidence),
            "suspect": lambda: _by_then_nulls(Label.suspect_score, True),
            "id": lambda: [_Segment((), ((Label.id, False),))]}[sort]()


@dataclass(frozen=True)
class _Part:
    """What one query reads: rows whose keys start with ``prefix``, then the ``order`` columns' values
    (negated where descending), padded with zeros to the sort's width."""

    prefix: tuple
    where: tuple
    order: tuple
    skips: bool = False  # the reviewer's skipped labels, ordered by their skip


def _parts(sort: str, statuses: Sequence[str], user_id: int | None) -> list[_Part]:
    """The queue's order as parts: with a reviewer, their unskipped labels, then their skips."""
    parts = []
    for i, segment in enumerate(_segments(sort)):
        for status in statuses:
            if segment.statuses is None or status in segment.statuses:
                prefix = (0, 0, i) if user_id is not None else (i,)
                parts.append(_Part(prefix, (*segment.where, Label.status == status), segment.order))
    if user_id is not None:
        skipped = select(ReviewSkip.id).where(ReviewSkip.label_id == Label.id, ReviewSkip.user_id == user_id)
        parts = [replace(p, where=(*p.where, ~skipped.exists())) for p in parts]
        parts.append(_Part((1,), (Label.status.in_(list(statuses)),), ((ReviewSkip.id, False),), skips=True))
    return parts


def _filtered(session: Session, group: str | None, value: str | None, status: str | None, user_id: int | None,
              flag: str | None, selection: int | None = None) -> list:
    """The queue's conditions on a present image's :class:`Label`, whatever its order. A marked
    duplicate is out of every queue until its mark is undone. ``selection``: only the images of
    that map selection (``labeler.curation.maps``)."""
    where = [Image.status == "ok", duplicate_marks.not_marked(Label.image_id)]
    if selection is not None:
        where.append(in_selection(selection, Label.image_id))
    if group:
        where.append(Label.group == group)
    if value:
        where.append(Label.value == value)
    if flag:
        where.append(flags.flagged(flag))
    if user_id is not None and status == "proposed":
        # A team's queue: labels another reviewer's queue holds, or an admin gave to others, are not here.
        where += [leases.not_held_by_others(user_id), leases.assigned_filter(session, user_id, group)]
    return where


def _part_rows(session: Session, part: _Part, where: list, user_id: int | None, width: int, key: Key | None,
               forward: bool, limit: int) -> list[tuple[Key, Label]]:
    """Up to ``limit`` of the part's rows beyond ``key`` (None: from its start), nearest first."""
    columns = [column for column, _ in part.order]
    query = select(Label, *columns).join(Image, Image.id == Label.image_id).where(*where, *part.where)
    if part.skips:
        query = query.join(ReviewSkip, and_(ReviewSkip.label_id == Label.id, ReviewSkip.user_id == user_id))
    if key is not None:
        query = query.where(*_beyond(part.order, key[len(part.prefix):], forward))
    ascending = [(column.desc() if descending == forward else column.asc()) for column, descending in part.order]
    rows = session.execute(query.order_by(*ascending).limit(limit)).all()
    pad = (0,) * (width - len(part.prefix) - len(columns))
    return [((*part.prefix, *[_plain(-v if descending else v) for v, (_, descending) in zip(row[1:], part.order)],
              *pad), row[0]) for row in rows]


def _beyond(order: tuple, key: Key, forward: bool) -> list:
    """Conditions for rows strictly after ``key`` (before it when not ``forward``) in ``order``.

    The first column's bound is said alone too (``>=``), so a database seeks the index to it
    instead of reading the segment from its start."""
    clauses, equal = [], []
    for (column, descending), k in zip(order, key):
        bound = -k if descending else k
        later = forward != descending
        clauses.append(and_(*equal, column > bound if later else column < bound))
        equal.append(column == bound)
    first, descending = order[0]
    bound = -key[0] if descending else key[0]
    return [first >= bound if forward != descending else first <= bound, or_(*clauses)]


def queue_page(session: Session, group: str | None = None, value: str | None = None, status: str | None = None,
               sort: str = "uncertainty", limit: int = 48, user_id: int | None = None,
               after: Key | None = None, before: Key | None = None, flag: str | None = None,
               selection: int | None = None) -> QueuePage:
    """The page of ``limit`` labels just after ``after`` (or just before ``before``; else the first).

    Keyset paging, not an offset: labels decided since the previous page (which leave a "proposed"
    queue) or skipped never shift the next page, so no label is skipped or shown twice. Each part of
    the order (``_parts``) is one query that walks its index from the key and stops after the page,
    so a page costs the same at a million labels as at a thousand. ``total`` counts up to
    :data:`COUNT_CAP` (``total_capped`` past it).
    """
    if status and status not in STATUSES:
        raise ReviewError(f"unknown status '{status}'; use one of: {', '.join(STATUSES)}")
    if sort not in SORTS:
        raise ReviewError(f"unknown sort '{sort}'; use one of: {', '.join(SORTS)}")
    limit = max(1, min(limit, 500))
    where = _filtered(session, group, value, status, user_id, flag, selection)
    counted = select(Label.id).join(Image, Image.id == Label.image_id).where(*where)
    if status:
        counted = counted.where(Label.status == status)
    total = int(session.scalar(select(func.count()).select_from(counted.limit(COUNT_CAP + 1).subquery())) or 0)
    forward = before is None
    key = after if forward else before
    parts = _parts(sort, [status] if status else STATUSES, user_id)
    width = 5 if user_id is not None else 3
    if key is not None and len(key) != width:
        raise ReviewError("this page link belongs to another sort; open the queue again")
    rows = _walk(session, parts if forward else parts[::-1], where, user_id, width, key, forward, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    keys = [k for k, _ in rows]
    return QueuePage(labels=[label for _, label in rows], total=min(total, COUNT_CAP),
                     first=keys[0] if rows else None, last=keys[-1] if rows else None,
                     more_before=more if not forward else after is not None and bool(rows),
                     more_after=more if forward else True, keys=keys, total_capped=total > COUNT_CAP)


def _walk(session: Session, parts: list[_Part], where: list, user_id: int | None, width: int, key: Key | None,
          forward: bool, want: int) -> list[tuple[Key, Label]]:
    """The first ``want`` rows beyond ``key`` over ``parts`` (in walking order). Parts that share a
    prefix (one segment's statuses) are read together and merged by key; the walk stops once full."""
    rows: list[tuple[Key, Label]] = []
    i = 0
    while i < len(parts) and len(rows) < want:
        prefix = parts[i].prefix
        same = [p for p in parts[i:] if p.prefix == prefix]
        i += len(same)
        at = key[:len(prefix)] if key is not None else None
        if at is not None and (at > prefix if forward else at < prefix):
            continue  # wholly before the key
        start = key if at == prefix else None
        found = [row for p in same for row in _part_rows(session, p, where, user_id, width, start, forward,
                                                         want - len(rows))]
        found.sort(key=lambda row: row[0], reverse=not forward)
        rows += found[:want - len(rows)]
    return rows


def _plain(value) -> float:
    return int(value) if isinstance(value, (bool, int)) else float(value)


def format_key(key: Key) -> str:
    """A key as a page link carries it: its values, comma-separated (floats round-trip exactly)."""
    return ",".join(repr(v) for v in key)


def parse_key(text: str) -> Key:
    """A key from :func:`format_key`; :class:`ReviewError` for anything else."""
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            number = int(part) if part.lstrip("-").isdigit() else float(part)
        except ValueError:
            raise ReviewError(f"a page key must be numbers separated by commas, not {text[:40]!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ReviewError("a page key must hold finite numbers")
        if abs(number) > MAX_ID:  # no column holds more: a database would refuse to bind it
            raise ReviewError("a page key's numbers are out of range")
        values.append(number)
    if not 1 <= len(values) <= 12:
        raise ReviewError("a page key has between 1 and 12 numbers")
    return tuple(values)


def image_names(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """Each image's file name (the last part of its path, as :attr:`Image.path` picks it), by image id."""
    if not image_ids:
        return {}
    rows = session.execute(select(ImageFile.image_id, ImageFile.path).where(ImageFile.image_id.in_(set(image_ids)))
                           .order_by(ImageFile.status != "ok", ImageFile.id))
    names: dict[int, str] = {}
    for image_id, path in rows:
        names.setdefault(image_id, path.replace("\\", "/").rsplit("/", 1)[-1])
    return names


def skipped(session: Session, user_id: int, label_ids: Sequence[int]) -> set[int]:
    """Which of ``label_ids`` the reviewer skipped (and has not decided since)."""
    if not label_ids:
        return set()
    return set(session.scalars(select(ReviewSkip.label_id).where(ReviewSkip.user_id == user_id,
                                                                 ReviewSkip.label_id.in_(list(label_ids)))))


def labels_by_id(session: Session, label_ids: Sequence[int]) -> list[Label]:
    """The labels of ``label_ids`` that exist, in id order."""
    if not label_ids:
        return []
    return list(session.scalars(select(Label).where(Label.id.in_(set(label_ids))).order_by(Label.id)))


def labels_of_image(session: Session, image_id: int) -> list[Label]:
    """An image's labels, by group."""
    return list(session.scalars(select(Label).where(Label.image_id == image_id).order_by(Label.group)))


# Loose index scans: one index seek per distinct name instead of reading every label (a million
# images are eight million labels); SQLite and PostgreSQL both plan min() over an index prefix as a seek.
_GROUPS = text("""
    WITH RECURSIVE seen(name) AS (
        SELECT min("group") FROM labels
        UNION ALL
        SELECT (SELECT min("group") FROM labels WHERE "group" > seen.name) FROM seen WHERE seen.name IS NOT NULL)
    SELECT name FROM seen WHERE name IS NOT NULL""")
_VALUES = text("""
    WITH RECURSIVE seen(value) AS (
        SELECT min(value) FROM labels WHERE "group" = :group
        UNION ALL
        SELECT (SELECT min(value) FROM labels WHERE "group" = :group AND value > seen.value)
        FROM seen WHERE seen.value IS NOT NULL)
    SELECT value, EXISTS (SELECT 1 FROM labels WHERE "group" = :group AND value = seen.value
                          AND status || '' IN ('proposed', 'auto')) AS proposed
    FROM seen WHERE value IS NOT NULL""")
# ``status || ''`` (and ``_unindexed``) keeps a column's index out of a plan: without statistics
# SQLite would walk every proposed label of the group for a typed value instead of (group, value).
HUMAN = ("accepted", "corrected", "rejected")  # a person's decision (auto: manage.py accept's)


def groups(session: Session) -> list[str]:
    return sorted(session.scalars(_GROUPS))


def options(session: Session, group: str, free_limit: int | None = None) -> list[str]:
    """Every value seen in ``group``: predicted ones and corrections, sorted; with ``free_limit``,
    only that many free-text corrections (values the model never proposed), the most used first,
    so a page that lists them stays small however many were typed.

    A proposed or auto label's value is the model's proposal; a decided one keeps it in ``predicted``.
    """
    seen = session.execute(_VALUES, {"group": group}).all()
    predicted = {value for value, proposed in seen if proposed}
    predicted |= set(session.scalars(select(Label.predicted).where(Label.group == group, Label.status.in_(HUMAN),
                                                                   Label.predicted.is_not(None)).distinct()))
    free = [value for value, _ in seen if value not in predicted]
    if free_limit is not None and len(free) > free_limit:
        used = session.execute(select(Label.value, func.count()).where(Label.group == group, Label.value.in_(free))
                               .group_by(Label.value)).all()
        free = [value for value, _ in sorted(used, key=lambda vc: (-vc[1], vc[0]))[:free_limit]]
    return sorted(predicted | set(free))


def history(session: Session, label_ids: Sequence[int]) -> list[ReviewEvent]:
    """The review events of the labels, oldest first."""
    if not label_ids:
        return []
    return list(session.scalars(select(ReviewEvent).where(ReviewEvent.label_id.in_(list(label_ids)))
                                .order_by(ReviewEvent.id)))


_BIN_EDGES = [k / HISTOGRAM_BINS for k in range(1, HISTOGRAM_BINS)]  # bin k starts at edge k-1


def _confidence_counts(session: Session, group: str, status: str) -> list[int]:
    """``group``'s labels of ``status``: how many in each histogram bin, then how many have no
    confidence. One statement of range counts, each a seek into ``ix_labels_queue_confidence``."""
    mine = and_(Label.group == group, Label.status == status)
    ranges = [Label.confidence < _BIN_EDGES[0],
              *(and_(Label.confidence >= low, Label.confidence < high) for low, high in zip(_BIN_EDGES, _BIN_EDGES[1:])),
              Label.confidence >= _BIN_EDGES[-1], Label.confidence.is_(None)]
    counts = [select(func.count()).select_from(Label).where(mine, where).scalar_subquery() for where in ranges]
    return [int(n) for n in session.execute(select(*counts)).one()]


def stats(session: Session) -> dict:
    """Per group: counts per option, counts per status, and a confidence histogram, of the labels
    of present images.

    ``histogram`` has ``HISTOGRAM_BINS`` equal bins over [0, 1]: bin k holds k/BINS <= confidence
    < (k+1)/BINS, the first also what lies below 0 and the last 1.0 and above.

    Counted from the indexes alone, never the rows (at 9,000,000 labels, grouping the rows joined
    to their images took 43.5 s; this takes about 3): the options by one scan of
    ``ix_labels_group_value``, the statuses and the histogram by a range count in
    ``ix_labels_queue_confidence`` for each group, status and bin. The labels of images that are
    not present (few) are then read and taken off.
    """
    out: dict[str, dict] = {}
    for group, value, count in session.execute(select(Label.group, Label.value, func.count())
                                               .group_by(Label.group, Label.value)).all():
        entry = out.setdefault(group, {"options": {}, "statuses": {s: 0 for s in STATUSES}, "total": 0,
                                       "histogram": [0] * HISTOGRAM_BINS})
        key = value if value is not None else "(none)"
        entry["options"][key] = entry["options"].get(key, 0) + count
        entry["total"] += count
    for group, entry in out.items():
        for status in STATUSES:
            *bins, unscored = _confidence_counts(session, group, status)
            entry["statuses"][status] = sum(bins) + unscored
            entry["histogram"] = [have + more for have, more in zip(entry["histogram"], bins)]
        if sum(entry["statuses"].values()) != entry["total"]:  # a status this version does not know
            entry["statuses"].update(session.execute(select(Label.status, func.count()).where(
                Label.group == group, Label.status.not_in(STATUSES)).group_by(Label.status)).all())
    gone = session.execute(select(Label.group, Label.value, Label.status, Label.confidence).where(
        Label.image_id.in_(select(Image.id).where(Image.status != "ok")))).all()
    for group, value, status, confidence in gone:
        entry = out[group]
        key = value if value is not None else "(none)"
        entry["options"][key] -= 1
        entry["statuses"][status] -= 1
        entry["total"] -= 1
        if confidence is not None and status in STATUSES:  # the histogram counts the known statuses
            entry["histogram"][bisect.bisect_right(_BIN_EDGES, confidence)] -= 1
    for group in [g for g, entry in out.items() if entry["total"] == 0]:
        del out[group]  # every label of the group is on an image that is gone
    for entry in out.values():
        # by people: an auto label (manage.py accept) is not reviewed
        entry["reviewed"] = entry["total"] - entry["statuses"].get("proposed", 0) - entry["statuses"].get("auto", 0)
        entry["options"] = dict(sorted(((k, v) for k, v in entry["options"].items() if v),
                                       key=lambda kv: (-kv[1], kv[0])))
    return dict(sorted(out.items()))
