"""A second pass: a random share of each reviewer's decisions is checked, blind, by another reviewer.

Each group has a QA share in [0, 1] (a setting; 0 by default). Each accept, correct or reject is
drawn with that probability into a QA task; another reviewer answers it without seeing the first
answer; a disagreement waits for an admin, who resolves it (``decisions.resolve_qa``). Per
reviewer, :func:`report` gives their decisions, their agreement with QA (raw and Cohen's kappa)
and their speed. Pure catalog logic: no Flask here.
"""

from __future__ import annotations

import random
from statistics import median
from typing import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..core.agreement import cohens_kappa, kappa_interval, raw_agreement
from ..errors import LabelerError, NotFound
from ..store.catalog import Label, QaTask, ReviewEvent, Setting, User, utcnow

DECIDED = ("accept", "correct", "reject")
FINISHED = ("agreed", "disagreed", "resolved")
SPEED_GAP_S = 600  # a pause longer than this between two decisions is a break, not work
SPEED_EVENTS = 2000  # the newest decisions per reviewer that speed is measured on
# QA'd decisions a reviewer needs before their kappa is a finding rather than a first look: at 100,
# a kappa's 95% interval is about ±0.1, so a 0.2 gap between two reviewers shows beyond it. Below it
# the sampling error is as large as the gap (bench/bench_qa.py; README "A second pass: QA").
MIN_QA_CHECKED = 100
sampler = random.Random()  # which decisions go to QA; a test may seed it


class QaError(LabelerError):
    """A QA step that cannot be taken as asked (a share outside [0, 1], your own decision, ...)."""


def _share_key(group: str) -> str:
    return f"qa_share:{group}"


def set_share(session: Session, group: str, share: object) -> float:
    """Set ``group``'s QA share; :class:`QaError` naming ``share`` unless it is a number in [0, 1]."""
    if not isinstance(group, str) or not group.strip():
        raise QaError("group: name the group whose QA share to set")
    if isinstance(share, bool) or not isinstance(share, (int, float, str)):
        raise QaError("share: the QA share must be a number between 0 and 1")
    try:
        value = float(share)
    except ValueError:
        raise QaError("share: the QA share must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise QaError(f"share: the QA share must be between 0 and 1, not {share}")
    session.merge(Setting(key=_share_key(group), value=repr(value)))
    return value


def shares(session: Session) -> dict[str, float]:
    """Every group's QA share that was set."""
    prefix = _share_key("")
    return {key[len(prefix):]: float(value) for key, value in session.execute(
        select(Setting.key, Setting.value).where(Setting.key.startswith(prefix)))}


def share(session: Session, group: str) -> float:
    raw = session.scalar(select(Setting.value).where(Setting.key == _share_key(group)))
    return float(raw) if raw is not None else 0.0


def sample(session: Session, label: Label, event: ReviewEvent) -> QaTask | None:
    """Draw ``event`` (a reviewer's decision on ``label``, flushed) into QA with its group's share.

    A newer decision on the label supersedes any open task of an earlier one.
    """
    # "fetch", not the default "evaluate": that tests every object the session holds, so a bulk accept
    # of n labels in one session took n^2 steps (half of a decision's time at 540 labels)
    session.execute(update(QaTask).where(QaTask.label_id == label.id, QaTask.status == "open")
                    .values(status="superseded", done_at=utcnow())
                    .execution_options(synchronize_session="fetch"))
    if event.user_id is None or event.action not in DECIDED:
        return None
    chance = share(session, label.group)
    if chance <= 0.0 or sampler.random() >= chance:
        return None
    task = QaTask(label_id=label.id, group=label.group, event_id=event.id, reviewer_id=event.user_id,
                  value=event.after_value, status="open")
    session.add(task)
    return task


def queue(session: Session, user_id: int, group: str | None = None, limit: int = 48) -> list[QaTask]:
    """Open tasks for ``user_id``: anyone's decisions but their own, oldest first."""
    query = select(QaTask).where(QaTask.status == "open", QaTask.reviewer_id != user_id)
    if group:
        query = query.where(QaTask.group == group)
    return list(session.scalars(query.order_by(QaTask.id).limit(max(1, min(limit, 500)))))


def get(session: Session, task_id: int) -> QaTask:
    task = session.get(QaTask, task_id)
    if task is None:
        raise NotFound(f"no QA task with id {task_id}")
    return task


def answer(session: Session, task_id: int, user_id: int, value: str | None) -> QaTask:
    """The QA reviewer's own answer (None: none of these): ``agreed`` or ``disagreed``."""
    task = get(session, task_id)
    if task.reviewer_id == user_id:
        raise QaError("a reviewer never QAs their own decision; this task is for someone else")
    if task.status != "open":
        raise QaError(f"QA task {task_id} is {task.status} already")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise QaError("value: the answer must be an option (text) or null for none of these")
    task.qa_user_id, task.qa_value, task.done_at = user_id, value, utcnow()
    task.status = "agreed" if value == task.value else "disagreed"
    session.flush()
    return task


def disagreements(session: Session, limit: int = 200) -> list[QaTask]:
    return list(session.scalars(select(QaTask).where(QaTask.status == "disagreed").order_by(QaTask.id).limit(limit)))


def task_dict(task: QaTask, names: dict[int, str], blind: bool = False) -> dict:
    """A task as the API shows it; ``blind`` leaves out the first answer (for the QA reviewer)."""
    out = {"id": task.id, "label_id": task.label_id, "group": task.group, "status": task.status,
           "reviewer": names.get(task.reviewer_id)}
    if not blind:
        out.update(value=task.value, qa_by=names.get(task.qa_user_id), qa_value=task.qa_value,
                   resolved_by=names.get(task.resolved_by), resolved_value=task.resolved_value)
    return out


def user_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(User.id, User.name)).all())


def qa_by_label(session: Session, label_ids: Sequence[int] | None = None) -> dict[int, int]:
    """Who QA'd each label last (a user id), for the labels given (None: all)."""
    query = select(QaTask.label_id, QaTask.qa_user_id).where(QaTask.status.in_(FINISHED)).order_by(QaTask.id)
    if label_ids is not None:
        query = query.where(QaTask.label_id.in_(list(label_ids)))
    return {label_id: user for label_id, user in session.execute(query)}


def _speed(session: Session, user_id: int) -> float | None:
    """Median seconds between a reviewer's consecutive decisions, breaks left out."""
    stamps = sorted(session.scalars(select(ReviewEvent.created_at).where(
        ReviewEvent.user_id == user_id, ReviewEvent.action.in_(DECIDED)).order_by(ReviewEvent.id.desc())
        .limit(SPEED_EVENTS)))
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
    gaps = [g for g in gaps if g <= SPEED_GAP_S]
    return round(median(gaps), 2) if gaps else None


def report(session: Session) -> list[dict]:
    """Per reviewer: decisions, QA'd decisions, raw agreement and Cohen's kappa with QA (with its 95%
    interval), and speed (median seconds per decision), by name.

    ``enough_qa`` says whether the reviewer has :data:`MIN_QA_CHECKED` QA'd decisions; below it the
    kappa is shown as provisional. ``lower_than`` names the reviewers, each with enough QA'd
    decisions too, whose kappa interval lies wholly above this reviewer's.
    """
    names = user_names(session)
    made = dict(session.execute(select(ReviewEvent.user_id, func.count()).where(
        ReviewEvent.action.in_(DECIDED), ReviewEvent.user_id.is_not(None)).group_by(ReviewEvent.user_id)).all())
    pairs: dict[int, list[tuple]] = {}
    groups: dict[int, list[str]] = {}
    for reviewer, group, value, qa_value in session.execute(
            select(QaTask.reviewer_id, QaTask.group, QaTask.value, QaTask.qa_value)
            .where(QaTask.status.in_(FINISHED)).order_by(QaTask.id)):
        pairs.setdefault(reviewer, []).append((value, qa_value))
        groups.setdefault(reviewer, []).append(group)
    out = []
    for user_id in sorted(set(made) | set(pairs), key=lambda u: names.get(u, "")):
        mine = pairs.get(user_id, [])
        # chance agreement within each group: values of two groups never meet
        raw, kappa = raw_agreement(mine), cohens_kappa(mine, groups.get(user_id, []))
        interval = kappa_interval(mine, groups.get(user_id, []))
        out.append({"reviewer": names.get(user_id), "decisions": int(made.get(user_id, 0)), "qa_checked": len(mine),
                    "agreement": None if raw is None else round(raw, 3),
                    "kappa": None if kappa is None else round(kappa, 3),
                    "kappa_low": None if interval is None else round(interval[0], 3),
                    "kappa_high": None if interval is None else round(interval[1], 3),
                    "enough_qa": len(mine) >= MIN_QA_CHECKED,
                    "seconds_per_decision": _speed(session, user_id)})
    judged = [row for row in out if row["enough_qa"] and row["kappa_low"] is not None]
    for row in out:
        row["lower_than"] = []
    for row in judged:
        row["lower_than"] = [other["reviewer"] for other in judged if other["kappa_low"] > row["kappa_high"]]
    return out
