"""Trusted labels: accept a group's proposals at a stated precision (``manage.py accept``), and undo it.

The statistics are :mod:`labeler.core.trust`; this module gathers their inputs from the catalog
and writes the run. The estimate reads reviews only, never a truth file:

* the group's newest fit (``manage.py learn``) and the proposals it made (``manage.py label``);
* its **random** reviews: labels whose newest review is an import (``import-labels``, e.g. a file
  written by ``manage.py sample``). Decisions made in the queue are left out: the queue serves the
  most uncertain labels first, so its reviews say how the fit does on hard images, not on the
  images it would accept;
* each random review's out-of-fold confidence (:func:`fewshot.out_of_fold_confidence`).

Accepted labels get the status ``auto`` and their run; a review event per label records it.
``undo`` returns a run's ``auto`` labels to ``proposed``; a label a person decided since is theirs
and stays as it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sqlalchemy import DateTime, Integer, String, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..collection import Collection
from ..core import fewshot, trust
from ..errors import LabelerError, NotFound
from ..files import write_atomically
from ..labeling.bulk import logit_scale
from ..labeling.learning import option_vectors, prompt_set_of_record, reviews
from ..store import db, queue_indexes
from ..store.stats import label_groups
from ..store.catalog import (REVIEWED_ONLY, AcceptRun, Fit, ImageFile, Label, PromptSetRecord, ReviewEvent,
                             Setting, utcnow)

AUTO = "auto"
RANDOM_ACTION = "import"  # the review events whose labels form a random sample
MIN_PRECISION, MAX_PRECISION = 0.5, 1.0  # a target must lie strictly between


class AcceptError(LabelerError):
    """An accept that cannot run as asked (unknown group, no fit, a bad target, ...)."""


class AcceptRefused(AcceptError):
    """The reviews cannot support the claim; the message says how many more random reviews would."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def check_target(min_precision: float) -> float:
    if not (MIN_PRECISION < float(min_precision) < MAX_PRECISION):
        raise AcceptError(f"--min-precision must lie strictly between {MIN_PRECISION} and {MAX_PRECISION}, "
                          f"e.g. 0.99; got {min_precision}")
    return float(min_precision)


@dataclass
class Evidence:
    """What the bound rests on: the fit, the proposals it may accept, and its random reviews."""

    fit: Fit
    label_ids: np.ndarray  # [N] proposed labels with an answer from the fit, ascending
    confidence: np.ndarray  # [N]
    unreviewed: int  # the group's proposed labels, with or without an answer
    review_confidence: np.ndarray  # [K] out-of-fold confidence of each random review's answer
    review_correct: np.ndarray  # [K] bool: the reviewer kept the fit's out-of-fold answer
    reviews: int  # every review the fit learned from (random or not)


def known_groups(session: Session) -> list[str]:
    return label_groups(session)


def _proposals(session: Session, group: str, fit_id: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(label_ids [N], confidence [N], unreviewed, stale)`` of ``group``'s proposals in one pass
    (at a million labels every pass costs seconds): ``N`` the proposals with an answer from fit
    ``fit_id``; ``stale`` those with an answer from another fit or from none."""
    rows = session.execute(select(Label.id, Label.confidence, Label.fit_id, Label.value.is_not(None))
                           .where(Label.group == group, Label.status == "proposed")).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), 0, 0
    ids, conf, fit, answered = (np.array(c) for c in zip(*rows))
    answered = answered.astype(bool)
    mine = answered & (fit == fit_id)  # fit_id None makes an object array: == is elementwise there too
    order = np.argsort(ids[mine], kind="stable")
    confidence = np.array([0.0 if c is None else c for c in conf[mine]], np.float64) if conf.dtype == object \
        else conf[mine].astype(np.float64)
    return (ids[mine].astype(np.int64)[order], confidence[order], len(rows), int(answered.sum() - mine.sum()))


def _random_image_ids(session: Session, group: str) -> set[int]:
    """Images of ``group`` whose label's newest review event is an import: the random sample.

    Only reviewed labels can have one (an import decides a label), so the join starts from the
    reviewed-labels index instead of every event of the group (a million after an accept)."""
    reviewed = (select(Label.id).where(Label.group == group, REVIEWED_ONLY)).subquery()
    newest = (select(ReviewEvent.label_id, func.max(ReviewEvent.id).label("event_id"))
              .where(ReviewEvent.label_id.in_(select(reviewed.c.id)))
              .group_by(ReviewEvent.label_id).subquery())
    return set(session.scalars(
        select(Label.image_id).join(newest, newest.c.label_id == Label.id)
        .join(ReviewEvent, ReviewEvent.id == newest.c.event_id)
        .where(ReviewEvent.action == RANDOM_ACTION)))


def gather(collection: Collection, group: str) -> Evidence:
    """The inputs of the bound for ``group``; raises :class:`AcceptError` when they are not usable."""
    with collection.session() as s:
        model_id = collection.models.require_id(s)
        groups = known_groups(s)
        if group not in groups:
            raise AcceptError(f"unknown group '{group}' (have: {', '.join(groups) or 'no labels yet'})")
        fit = s.scalar(select(Fit).where(Fit.group == group, Fit.model_id == model_id)
                       .order_by(Fit.id.desc()).limit(1))
        if fit is None:
            raise AcceptError(f"group '{group}' has no fit: review some of its labels, then run "
                              f"`manage.py learn --group {group}` and `manage.py label` (accept rests on the fit)")
        label_ids, confidence, unreviewed, stale = _proposals(s, group, fit.id)
        if stale:
            raise AcceptError(f"{stale} proposals of '{group}' were not made by its newest fit ({fit.id}): "
                              "run `manage.py label --prompt-set ...` first")
        record = s.get(PromptSetRecord, fit.prompt_set_id)  # what the fit learned with, as it was then
        prompt_set = prompt_set_of_record(record)
        options = prompt_set.groups[group].option_names
        found = reviews(s, group, options)
        random_images = _random_image_ids(s, group)
        image_ids, vecs = collection.vectors.read(s, found.image_ids, model_id=model_id)
        scale = logit_scale(collection, s)
    if len(found) != fit.reviewed:
        raise AcceptError(f"the reviews of '{group}' changed since its fit ({fit.reviewed} then, {len(found)} now): "
                          f"run `manage.py learn --group {group}` and `manage.py label` first")
    labels = found.labels[np.searchsorted(found.image_ids, image_ids)]
    report = fit.report or {}
    oof = fewshot.out_of_fold_confidence(vecs, labels, option_vectors(collection, prompt_set, group),
                                         scale, fit.method, report.get("params") or {},
                                         float(report.get("temperature") or 1.0))
    sample = np.array([int(i) in random_images for i in image_ids], bool)
    answer = oof.argmax(axis=1) if len(oof) else np.zeros(0, np.int64)
    top = oof.max(axis=1) if len(oof) else np.zeros(0)
    return Evidence(fit, label_ids, confidence, unreviewed, top[sample], (answer == labels)[sample], len(labels))


def _evidence_dict(evidence: Evidence, choice: trust.Choice | None = None) -> dict:
    out = {"random_reviews": len(evidence.review_confidence),
           "random_review_errors": int((~evidence.review_correct).sum()),
           "reviews": evidence.reviews, "fit_id": evidence.fit.id, "fit_method": evidence.fit.method}
    if choice is not None:
        curve = choice.curve
        keep = np.unique(np.linspace(0, len(curve.thresholds) - 1, min(64, len(curve.thresholds))).round()
                         .astype(int)) if len(curve.thresholds) else np.zeros(0, int)
        out["curve"] = [{"threshold": round(float(curve.thresholds[i]), 6),
                         "coverage": round(float(curve.accepted[i] / max(evidence.unreviewed, 1)), 4),
                         "estimated_precision": round(float(curve.estimated[i]), 5),
                         "lower_bound": round(float(curve.lower[i]), 5)} for i in keep.tolist()]
    return out


def plan(collection: Collection, group: str, min_precision: float) -> tuple[Evidence, trust.Choice]:
    """The threshold for ``group`` at ``min_precision``; raises :class:`AcceptRefused` when none is certified."""
    target = check_target(min_precision)
    evidence = gather(collection, group)
    choice = trust.choose_threshold(evidence.confidence, evidence.review_confidence, evidence.review_correct,
                                    target)
    if choice.found:
        return evidence, choice
    best = float(choice.curve.lower.max()) if len(choice.curve.lower) else 0.0
    need = trust.reviews_needed(evidence.confidence, evidence.review_confidence, evidence.review_correct, target)
    have = len(evidence.review_confidence)
    report = {"group": group, "min_precision": target, "best_lower_bound": round(best, 5),
              "more_random_reviews": None if need is None else max(need - have, 1), **_evidence_dict(evidence, choice)}
    why = (f"cannot certify precision {target} for '{group}': the 95% lower bound reaches at most {best:.4f} "
           f"with {have} random reviews ({report['random_review_errors']} wrong)")
    if need is None:
        raise AcceptRefused(why + "; its confidences are too low for that precision on any share of the "
                            "labels: review more of them in the queue and learn again, or ask for a lower precision",
                            report)
    more = report["more_random_reviews"]
    raise AcceptRefused(why + f"; review about {more} more random '{group}' labels: "
                        f"`manage.py sample --group {group} --count {more} --out sample.csv`, fill in its "
                        f"'{group}' column, `manage.py import-labels sample.csv`, then learn, label and accept again",
                        report)


# -- one accept of a group at a time ---------------------------------------------------------

_LOCK_PREFIX = "accept.running:"


def _lock_key(group: str) -> str:
    return _LOCK_PREFIX + hashlib.sha256(group.encode()).hexdigest()[:32]


def _owner_alive(value: str) -> bool:
    try:
        owner = json.loads(value)
    except ValueError:
        return False
    if owner.get("host") != socket.gethostname():
        return True  # another machine's: cannot tell, so it holds
    try:
        os.kill(int(owner.get("pid", 0)), 0)
    except (OSError, ValueError):
        return False
    return True


def _take_lock(collection: Collection, group: str) -> None:
    key = _lock_key(group)
    mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": utcnow().isoformat()})

    def take(s: Session) -> None:
        held = s.get(Setting, key)
        if held is not None:
            if _owner_alive(held.value):
                raise AcceptError(f"another accept of '{group}' is running (since "
                                  f"{json.loads(held.value).get('since', '?')}); wait for it to finish")
            s.delete(held)
            s.flush()
        s.add(Setting(key=key, value=mine))

    try:
        db.write_transaction(collection.config, take)
    except IntegrityError:  # PostgreSQL: the other one inserted first
        raise AcceptError(f"another accept of '{group}' is running; wait for it to finish") from None


def _release_lock(collection: Collection, group: str) -> None:
    def release(s: Session) -> None:
        held = s.get(Setting, _lock_key(group))
        if held is not None:
            s.delete(held)

    db.write_transaction(collection.config, release)


def accept(collection: Collection, group: str, min_precision: float, dry_run: bool = False,
           user_id: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Accept every proposal of ``group`` at or above the certified threshold; returns the report.

    ``{"group", "threshold", "estimated_precision", "lower_bound", "accepted", "coverage", "run"}``
    plus the evidence. ``dry_run``: the same report, nothing written (``run`` None).
    ``progress(done, total)`` follows the writing, chunk by chunk.
    Raises :class:`AcceptRefused` (exit 2) when the reviews cannot support ``min_precision``.
    """
    target = check_target(min_precision)
    if dry_run:
        return _report(group, *plan(collection, group, target), run=None)
    _take_lock(collection, group)
    try:
        evidence, choice = plan(collection, group, target)
        return _write(collection, group, target, evidence, choice, user_id, progress)
    finally:
        _release_lock(collection, group)


def _report(group: str, evidence: Evidence, choice: trust.Choice, run: int | None, accepted: int | None = None
            ) -> dict:
    curve, i = choice.curve, choice.index
    count = int(curve.accepted[i]) if accepted is None else accepted
    return {"group": group, "threshold": round(float(curve.thresholds[i]), 6),
            "estimated_precision": round(float(curve.estimated[i]), 5),
            "lower_bound": round(float(curve.lower[i]), 5), "accepted": count,
            "coverage": round(count / max(evidence.unreviewed, 1), 4), "run": run,
            **_evidence_dict(evidence, choice)}


WRITE_CHUNK = 50_000  # labels per write transaction: other writers (reviewers) get the catalog between chunks


def id_chunks(ids: np.ndarray, size: int = WRITE_CHUNK) -> list[tuple[int, int]]:
    """``(first, last)`` id ranges, each holding at most ``size`` of the ascending ``ids`` ``[N]``."""
    return [(int(ids[i]), int(ids[min(i + size, len(ids)) - 1])) for i in range(0, len(ids), size)]


def _write(collection: Collection, group: str, target: float, evidence: Evidence, choice: trust.Choice,
           user_id: int | None, progress: Callable[[int, int], None] | None) -> dict:
    """The run's row, then its labels in chunks of consecutive ids, each chunk one transaction.

    Each chunk's statements select by an id range plus the run's conditions, and never by group:
    ``fit_id`` names the group already, and with a group test SQLite walks the whole group's index
    for every chunk. A chunk re-checks every condition, so a label a person decided (or ``label``
    changed) since the estimate is left alone. Should a chunk fail, the run keeps the labels
    written so far (its ``accepted`` says how many) and ``--undo`` returns them.

    A run that moves most of the labels the queue indexes hold sets them aside and builds them
    again (:func:`_set_aside_if_worth`).
    """
    threshold = float(choice.curve.thresholds[choice.index])
    planned = _report(group, evidence, choice, run=None)
    chosen_ids = evidence.label_ids[evidence.confidence >= threshold]
    total = len(chosen_ids)

    def start(s: Session) -> int:
        run = AcceptRun(group=group, fit_id=evidence.fit.id, min_precision=target, threshold=threshold,
                        estimated_precision=planned["estimated_precision"], lower_bound=planned["lower_bound"],
                        accepted=0, coverage=0.0, report={k: v for k, v in planned.items() if k != "run"},
                        user_id=user_id)
        s.add(run)
        s.flush()
        return run.id

    run_id = db.write_transaction(collection.config, start)
    aside = _set_aside_if_worth(collection, total)
    now = utcnow().replace(microsecond=0)
    done = 0
    if progress is not None:
        progress(0, total)
    for first, last in id_chunks(chosen_ids, WRITE_CHUNK):
        def chunk(s: Session, first: int = first, last: int = last, before: int = done) -> int:
            with db.bulk_page_cache(s):
                chosen = (Label.id >= first, Label.id <= last, Label.fit_id == evidence.fit.id,
                          Label.status == "proposed", Label.value.is_not(None), Label.confidence >= threshold)
                s.execute(insert(ReviewEvent).from_select(
                    ["label_id", "user_id", "action", "before_value", "after_value", "before_status", "after_status",
                     "created_at", "run_id"],
                    select(Label.id, literal(user_id, Integer), literal(AUTO, String), Label.value, Label.value,
                           literal("proposed", String), literal(AUTO, String), literal(now, DateTime),
                           literal(run_id, Integer)).where(*chosen)))
                written = int(s.execute(update(Label).where(*chosen).values(
                    status=AUTO, accept_run_id=run_id, reviewed_by=user_id, reviewed_at=now, version=Label.version + 1)
                    .execution_options(synchronize_session=False)).rowcount)
                run = s.get(AcceptRun, run_id)
                run.accepted = before + written
                run.coverage = round(run.accepted / max(evidence.unreviewed, 1), 4)
                return written

        done += db.write_transaction(collection.config, chunk)
        if progress is not None:
            progress(done, total)
    return {**_report(group, evidence, choice, run=run_id, accepted=done),
            "rebuilt_indexes": _restore(collection, aside, done)}


def _set_aside_if_worth(collection: Collection, rows: int) -> bool:
    """Drop the queue indexes before moving ``rows`` labels between statuses, when
    building them again costs less than updating them (:func:`queue_indexes.worth_setting_aside`:
    many rows, and most of what the indexes hold).

    Status is a key of all six, and three of them (margin, confidence, informative rank) are in
    an order unrelated to the ids: on bench_scale's 1,000,000-image home, 892,799 labels to
    ``auto`` took 28.8 s of ``UPDATE`` in one transaction with the indexes, 1.5 s without, and
    8.3 s to build the six again (``ROLLBACK``ed trials on the same home).
    """
    with collection.session() as s:  # decided without the write lock: most runs keep the indexes
        worth = queue_indexes.worth_setting_aside(
            rows, rows, rows, lambda: s.scalar(select(func.count()).select_from(Label)) - rows)
    if worth:
        db.write_transaction(collection.config, lambda s: queue_indexes.set_aside(s, keys=False))
    return worth


def _restore(collection: Collection, aside: bool, changed: int) -> list[str]:
    """Build the queue indexes a run set aside (or one that stopped half way did); their names.
    On PostgreSQL a run that moved ``changed`` statuses refreshes the labels' statistics."""
    if not aside:
        with collection.session() as s:
            aside = bool(queue_indexes.missing(s))
    rebuilt = db.write_transaction(collection.config, queue_indexes.restore) if aside else []
    with collection.session() as s:
        db.analyze_after_bulk(s, changed, ("labels",))  # the queue plans from the statuses' shares
    return rebuilt


def undo(collection: Collection, run_id: int, user_id: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> dict:
    """Return run ``run_id``'s ``auto`` labels to proposed; labels a person decided since stay theirs.

    ``{"run", "group", "returned", "kept"}``; raises :class:`NotFound` for an unknown run and
    :class:`AcceptError` for one already undone. Written in chunks of ids like :func:`accept`
    (the run's labels are found through its review events' index); the run is marked undone last.
    """
    with collection.session() as s:
        run = s.get(AcceptRun, run_id)
        if run is None:
            raise NotFound(f"no accept run {run_id} (see the runs with manage.py accept --runs)")
        if run.undone_at is not None:
            raise AcceptError(f"accept run {run_id} was already undone at {run.undone_at:%Y-%m-%d %H:%M:%S}")
        group = run.group
        ids = np.array(s.scalars(select(ReviewEvent.label_id).where(
            ReviewEvent.run_id == run_id, ReviewEvent.action == AUTO)).all(), np.int64)
    ids = np.unique(ids)
    aside = _set_aside_if_worth(collection, len(ids))
    now = utcnow().replace(microsecond=0)
    returned = kept = 0
    if progress is not None:
        progress(0, len(ids))
    for first, last in id_chunks(ids, WRITE_CHUNK):
        def chunk(s: Session, first: int = first, last: int = last) -> tuple[int, int]:
            with db.bulk_page_cache(s):
                in_range = (Label.id >= first, Label.id <= last, Label.accept_run_id == run_id)
                mine = (*in_range, Label.status == AUTO)
                decided = s.scalar(select(func.count()).select_from(Label).where(*in_range, Label.status != AUTO))
                s.execute(insert(ReviewEvent).from_select(
                    ["label_id", "user_id", "action", "before_value", "after_value", "before_status", "after_status",
                     "created_at", "run_id"],
                    select(Label.id, literal(user_id, Integer), literal("undo-auto", String), Label.value, Label.value,
                           literal(AUTO, String), literal("proposed", String), literal(now, DateTime),
                           literal(run_id, Integer)).where(*mine)))
                back = s.execute(update(Label).where(*mine).values(
                    status="proposed", accept_run_id=None, reviewed_by=None, reviewed_at=None, version=Label.version + 1)
                    .execution_options(synchronize_session=False)).rowcount
                return int(back), int(decided or 0)

        back, decided = db.write_transaction(collection.config, chunk)
        returned, kept = returned + back, kept + decided
        if progress is not None:
            progress(returned + kept, len(ids))

    def finish(s: Session) -> None:
        s.get(AcceptRun, run_id).undone_at = now

    db.write_transaction(collection.config, finish)
    return {"run": run_id, "group": group, "returned": returned, "kept": int(kept),
            "rebuilt_indexes": _restore(collection, aside, returned)}


def spot_checks(session: Session, run: AcceptRun) -> dict:
    """What people decided about the run's auto labels: ``{"checked", "wrong", "verified_precision",
    "lower_bound", "upper_bound", "below_claim"}`` (Clopper-Pearson, 95% one-sided each)."""
    rows = session.execute(select(Label.status, func.count()).where(
        Label.accept_run_id == run.id, Label.group == run.group, Label.status != "proposed",
        Label.status != AUTO).group_by(Label.status)).all()
    counts = dict(rows)
    checked = int(sum(counts.values()))
    right = int(counts.get("accepted", 0))
    out = {"checked": checked, "wrong": checked - right, "verified_precision": None, "lower_bound": None,
           "upper_bound": None, "below_claim": False}
    if checked:
        upper = 1.0 - trust.clopper_pearson_lower(checked - right, checked)
        out.update(verified_precision=round(right / checked, 5),
                   lower_bound=round(trust.clopper_pearson_lower(right, checked), 5),
                   upper_bound=round(upper, 5), below_claim=upper < run.lower_bound)
    return out


def run_dict(session: Session, run: AcceptRun) -> dict:
    """One run as ``accept --runs --json`` shows it, with its spot-checks so far."""
    auto = session.scalar(select(func.count()).select_from(Label).where(
        Label.accept_run_id == run.id, Label.group == run.group, Label.status == AUTO))
    return {"run": run.id, "group": run.group, "threshold": run.threshold, "min_precision": run.min_precision,
            "estimated_precision": run.estimated_precision, "lower_bound": run.lower_bound,
            "accepted": run.accepted, "coverage": run.coverage, "still_auto": int(auto or 0),
            "created_at": run.created_at.isoformat(timespec="seconds"),
            "undone_at": run.undone_at.isoformat(timespec="seconds") if run.undone_at else None,
            "spot_checks": spot_checks(session, run)}


def runs(collection: Collection, group: str | None = None, run_id: int | None = None) -> list[dict]:
    with collection.session() as s:
        query = select(AcceptRun).order_by(AcceptRun.id)
        if run_id is not None:
            if s.get(AcceptRun, run_id) is None:
                raise NotFound(f"no accept run {run_id}")
            query = query.where(AcceptRun.id == run_id)
        if group is not None:
            query = query.where(AcceptRun.group == group)
        return [run_dict(s, r) for r in s.scalars(query)]


def sample(collection: Collection, group: str, count: int, out, seed: int | None = None) -> dict:
    """Write ``count`` of ``group``'s proposed labels, drawn uniformly at random, to the CSV ``out``.

    Columns ``image_id``, ``path`` and ``group`` (empty: the reviewer writes each image's value),
    ready for ``import-labels``: the import makes them the random reviews ``accept`` rests on.
    Returns ``{"group", "count", "out", "seed"}``.
    """
    if count < 1:
        raise AcceptError(f"--count must be at least 1; got {count}")
    with collection.session() as s:
        groups = known_groups(s)
        if group not in groups:
            raise AcceptError(f"unknown group '{group}' (have: {', '.join(groups) or 'no labels yet'})")
        ids = np.array(s.scalars(select(Label.image_id).where(Label.group == group, Label.status == "proposed")
                                 .order_by(Label.image_id)).all(), np.int64)
        seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
        chosen = np.sort(np.random.default_rng(seed).choice(ids, min(count, len(ids)), replace=False))
        paths: dict[int, str] = {}
        for image_id, path in s.execute(select(ImageFile.image_id, ImageFile.path)
                                        .where(ImageFile.image_id.in_(chosen.tolist()))
                                        .order_by(ImageFile.status != "ok", ImageFile.id)):
            paths.setdefault(image_id, path)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "path", group])
    for image_id in chosen.tolist():
        writer.writerow([image_id, paths.get(image_id, ""), ""])
    write_atomically(out, buf.getvalue())
    return {"group": group, "count": len(chosen), "out": str(out), "seed": seed}


def dashboard(session: Session, recent: int = 5) -> dict[str, dict]:
    """Per group with accept runs: ``{"runs": [run_dict, newest first], "curve": the newest run's
    coverage-vs-precision points}`` for the dashboard."""
    out: dict[str, dict] = {}
    for run in session.scalars(select(AcceptRun).order_by(AcceptRun.id.desc())):
        entry = out.setdefault(run.group, {"runs": [], "curve": (run.report or {}).get("curve") or []})
        if len(entry["runs"]) < recent:
            entry["runs"].append(run_dict(session, run))
    return out
