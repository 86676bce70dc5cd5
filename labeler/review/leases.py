"""Splitting a team's work: leases on the cards a reviewer's queue shows, and admin assignments.

A reviewer's queue claims the labels it shows and the next batch for :data:`LEASE_SECONDS`; the
claim is renewed while the reviewer decides or loads batches, and lapses by itself when the tab is
gone. Other reviewers' queues skip labels someone else holds. An assignment gives a group (or one
value of it) to named reviewers: other reviewers' queues skip the labels it matches.

State lives in the catalog (``review_leases``, ``review_assignments``; migration 0010), so it
holds across ``serve --processes`` and across servers on one PostgreSQL catalog. A claim is one
conditional upsert: of two reviewers claiming the same label at once, exactly one gets it.

Pure catalog logic: no Flask here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import and_, delete, exists, func, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..errors import LabelerError
from ..store.catalog import Label, ReviewAssignment, ReviewLease, User, utcnow

LEASE_SECONDS = 300  # a few minutes: long enough to work a batch, short enough for a closed tab


class AssignmentError(LabelerError):
    """An assignment that cannot be made as asked (unknown reviewer, no group)."""


def _until(now: datetime) -> datetime:
    return now + timedelta(seconds=LEASE_SECONDS)


def claim(session: Session, user_id: int, label_ids: Sequence[int], now: datetime | None = None) -> set[int]:
    """Claim ``label_ids`` for ``user_id`` at ``now`` (their ``claimed_at``); returns those the reviewer now holds.

    A label held by someone else, unexpired, stays theirs; one the reviewer holds is renewed. The
    caller's write transaction commits.
    """
    now = now or utcnow()
    ids = sorted({int(i) for i in label_ids})
    session.execute(delete(ReviewLease).where(ReviewLease.expires_at <= now))
    renew(session, user_id, now)  # loading a batch is activity: the rest of their claim holds too
    if not ids:
        return set()
    table = ReviewLease.__table__
    insert_of = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One statement over a list of rows (executemany), not 96 rows of VALUES in the SQL: SQLAlchemy
    # compiled that anew on every queue load (about a third of GET /review's time at 30,000 images).
    statement = insert_of(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.label_id],
        set_={"user_id": statement.excluded.user_id, "expires_at": statement.excluded.expires_at,
              "claimed_at": statement.excluded.claimed_at},
        # claimed_at is the claim's now: a lease expired by then goes to the new claimant
        where=or_(table.c.user_id == statement.excluded.user_id, table.c.expires_at <= statement.excluded.claimed_at))
    session.execute(statement, [{"label_id": i, "user_id": user_id, "expires_at": _until(now), "claimed_at": now}
                                for i in ids])
    return set(session.scalars(select(ReviewLease.label_id).where(ReviewLease.label_id.in_(ids),
                                                                  ReviewLease.user_id == user_id)))


def renew(session: Session, user_id: int, now: datetime | None = None) -> int:
    """Extend every unexpired lease of the reviewer (they are active); returns how many."""
    now = now or utcnow()
    result = session.execute(update(ReviewLease).where(ReviewLease.user_id == user_id, ReviewLease.expires_at > now)
                             .values(expires_at=_until(now)))
    return int(result.rowcount or 0)


def release(session: Session, user_id: int, label_ids: Sequence[int] | None = None,
            claimed_by: datetime | None = None) -> int:
    """Give up the reviewer's leases on ``label_ids`` (None: all of them); returns how many.

    ``claimed_by``: only leases claimed at or before then (a page's own claims: a newer page of the
    same reviewer, loaded before the old one's tab sent its release, keeps what it claimed)."""
    query = delete(ReviewLease).where(ReviewLease.user_id == user_id)
    if label_ids is not None:
        query = query.where(ReviewLease.label_id.in_([int(i) for i in label_ids]))
    if claimed_by is not None:
        query = query.where(or_(ReviewLease.claimed_at.is_(None), ReviewLease.claimed_at <= claimed_by))
    return int(session.execute(query).rowcount or 0)


def not_held_by_others(user_id: int, now: datetime | None = None):
    """A condition on :class:`Label`: nobody but ``user_id`` holds an unexpired lease on it."""
    now = now or utcnow()
    return ~exists().where(ReviewLease.label_id == Label.id, ReviewLease.user_id != user_id,
                           ReviewLease.expires_at > now)


def not_assigned_to_others(user_id: int):
    """A condition on :class:`Label`: no assignment matches it, or one that matches is the reviewer's."""
    matches = and_(ReviewAssignment.group == Label.group,
                   or_(ReviewAssignment.value.is_(None), ReviewAssignment.value == Label.value))
    return or_(~exists().where(matches), exists().where(matches, ReviewAssignment.user_id == user_id))


def assigned_filter(session: Session, user_id: int, group: str | None):
    """:func:`not_assigned_to_others` for a queue of one ``group``, said as a test of the label's value
    alone: the group's assignments (a handful of rows) are read first, so a queue page checks no
    assignment per label, and a group given wholly to others is known empty without reading it."""
    if not group:
        return not_assigned_to_others(user_id)
    whole: set[int] = set()
    by_value: dict[str, set[int]] = {}
    for value, holder in session.execute(select(ReviewAssignment.value, ReviewAssignment.user_id)
                                         .where(ReviewAssignment.group == group)):
        (whole if value is None else by_value.setdefault(value, set())).add(holder)
    if whole and user_id not in whole:  # every label matches the group's: only values also given to them
        return Label.value.in_(sorted(v for v, holders in by_value.items() if user_id in holders))
    if whole:
        return true()
    others = sorted(v for v, holders in by_value.items() if user_id not in holders)
    return or_(Label.value.is_(None), Label.value.not_in(others)) if others else true()


def holdings(session: Session, now: datetime | None = None) -> list[dict]:
    """Who holds what: per reviewer and group, how many unexpired leases and until when."""
    now = now or utcnow()
    rows = session.execute(
        select(User.name, Label.group, func.count(), func.max(ReviewLease.expires_at))
        .join(ReviewLease, ReviewLease.user_id == User.id).join(Label, Label.id == ReviewLease.label_id)
        .where(ReviewLease.expires_at > now).group_by(User.name, Label.group).order_by(User.name, Label.group)).all()
    return [{"reviewer": name, "group": group, "labels": int(count), "until": until.isoformat()}
            for name, group, count, until in rows]


def assign(session: Session, group: str, value: str | None, reviewers: Sequence[str],
           by: int | None = None) -> list[dict]:
    """Give ``group`` (or its ``value``) to ``reviewers`` by name, replacing who had it; returns
    :func:`assignments`. :class:`AssignmentError` for an unknown or disabled reviewer, or no group."""
    group = (group or "").strip()
    if not group:
        raise AssignmentError("group: an assignment needs a group")
    if not reviewers or not all(isinstance(r, str) and r.strip() for r in reviewers):
        raise AssignmentError("reviewers: name at least one reviewer")
    names = sorted({r.strip() for r in reviewers})
    found = dict(session.execute(select(User.name, User.id).where(User.name.in_(names),
                                                                   User.disabled_at.is_(None))).all())
    unknown = [n for n in names if n not in found]
    if unknown:
        raise AssignmentError(f"reviewers: no active account named {', '.join(repr(n) for n in unknown)}")
    value = value or None
    same = and_(ReviewAssignment.group == group,
                ReviewAssignment.value.is_(None) if value is None else ReviewAssignment.value == value)
    session.execute(delete(ReviewAssignment).where(same))
    session.add_all(ReviewAssignment(group=group, value=value, user_id=found[n], created_by=by) for n in names)
    session.flush()
    return assignments(session)


def unassign(session: Session, group: str, value: str | None) -> int:
    """Drop the assignment of ``group`` (or its ``value``); returns how many reviewers it named."""
    same = and_(ReviewAssignment.group == group,
                ReviewAssignment.value.is_(None) if not value else ReviewAssignment.value == value)
    return int(session.execute(delete(ReviewAssignment).where(same)).rowcount or 0)


def assignments(session: Session) -> list[dict]:
    """Every assignment: ``{"group", "value", "reviewers": [names]}``, by group and value."""
    out: dict[tuple, list[str]] = {}
    for group, value, name in session.execute(
            select(ReviewAssignment.group, ReviewAssignment.value, User.name)
            .join(User, User.id == ReviewAssignment.user_id)
            .order_by(ReviewAssignment.group, ReviewAssignment.value, User.name)):
        out.setdefault((group, value), []).append(name)
    return [{"group": g, "value": v, "reviewers": names} for (g, v), names in out.items()]
