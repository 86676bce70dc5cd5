"""The review queue's indexes on ``labels``, set aside while one run rewrites most of the table.

Every queue sort walks an index of its own (``ix_labels_queue_*``, migration 0013), so each label
written updates six B-trees besides the table. A run that writes a few labels pays that in
microseconds. A run that writes most of them (the first ``label`` of a collection, or a relabel
that changes most proposals) pays it as a random write into every index for every row: at
1,000,000 images × 8 groups that was most of ten minutes, where building the same indexes from the
finished table, one sort each, takes seconds. That is the bulk-load advice of both databases
(PostgreSQL's "Populating a Database": remove indexes, load, create them again).

While they are away the queue still answers, by sorting the group: slower, never wrong. A run that
stops half way leaves them away until the next ``label`` run finishes, or ``restore`` is called
(``manage.py check`` says so).

On PostgreSQL the labels' foreign keys go aside with them, as the same advice says: each new
label's keys are checked by a trigger per row and key (at 100,000 images × 9 groups, 9 of the 15 s
the first run's upsert took), where adding a key back checks the whole table in one scan. Their
definitions wait in ``settings`` (:data:`KEYS_ASIDE`), so a run that stops half way leaves them
for the next run, or ``check --repair``, to add back as they were. SQLite checks a chunk's
references once per parent already (``db.unchecked_references``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import db
from .catalog import Label, Setting

QUEUE_INDEXES = tuple(sorted((ix for ix in Label.__table__.indexes if ix.name.startswith("ix_labels_queue_")),
                             key=lambda ix: ix.name))

# A run sets them aside when it will write at least this many labels, at least this share of the
# labels it proposes (measured on its first chunk), and its groups hold at least this share of the
# labels the indexes will hold: a one-group relabel of a nine-group catalog updates a ninth of each
# index in place rather than rebuilding all of them (relabeling one group of nine at 1,000,000
# images: 82-98 s in place, 141-167 s rebuilding).
BULK_ROWS = 500_000
BULK_SHARE = 0.5
KEYS_ASIDE = "labels_foreign_keys_aside"  # settings: {constraint name: definition} of the keys set aside


def worth_setting_aside(expected_rows: int, written: int, proposed: int,
                        other_rows: Callable[[], int] = lambda: 0) -> bool:
    """Whether a run expected to propose ``expected_rows`` labels, whose first chunk wrote
    ``written`` of ``proposed``, writes enough to rebuild the indexes rather than update them.
    ``other_rows()`` counts the labels of the groups the run leaves alone (asked last: it reads an
    index)."""
    return (proposed > 0 and expected_rows >= BULK_ROWS and written >= BULK_SHARE * proposed
            and expected_rows >= BULK_SHARE * (expected_rows + other_rows()))


def rows_of_other_groups(session: Session, groups: list[str]) -> int:
    """How many labels belong to groups other than ``groups`` (a scan of the narrowest index)."""
    return session.scalar(select(func.count()).select_from(Label).where(Label.group.not_in(groups))) or 0


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def missing(session: Session) -> list[str]:
    """The queue indexes the catalog lacks, then (PostgreSQL) the labels' foreign keys set aside: a
    run that set them aside and stopped."""
    # from the database's own list: SQLAlchemy's reflection skips the expression index (spot-check)
    listed = ("SELECT indexname FROM pg_indexes WHERE tablename = 'labels' AND schemaname = current_schema()"
              if _postgresql(session) else
              "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'labels'")
    have = set(session.scalars(text(listed)))
    return [ix.name for ix in QUEUE_INDEXES if ix.name not in have] + list(_keys_aside(session))


def set_aside(session: Session, keys: bool = True) -> None:
    """Drop the queue indexes (and with ``keys``, on PostgreSQL, the labels' foreign keys), in
    ``session``'s transaction. A run that writes no key column (``accept`` changes statuses) keeps
    its keys: adding them back would cost a scan and save nothing."""
    for ix in QUEUE_INDEXES:
        session.execute(text(f"DROP INDEX IF EXISTS {ix.name}"))
    if not (keys and _postgresql(session)):
        return
    found = dict(session.execute(text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'labels'::regclass AND contype = 'f' ORDER BY conname")).all())
    if found:
        session.merge(Setting(key=KEYS_ASIDE, value=json.dumps({**_keys_aside(session), **found})))
        for name in found:
            session.execute(text(f'ALTER TABLE labels DROP CONSTRAINT "{name}"'))


def restore(session: Session) -> list[str]:
    """Build the queue indexes that are missing and add back the foreign keys set aside, in
    ``session``'s transaction; returns their names."""
    gone = missing(session)
    connection = session.connection()
    with db.index_build_settings(session):
        for ix in QUEUE_INDEXES:
            if ix.name in gone:
                ix.create(connection)
    keys = _keys_aside(session)
    for name, definition in keys.items():
        _add_key(session, name, definition)
    if keys:
        session.execute(delete(Setting).where(Setting.key == KEYS_ASIDE))
    return gone


def _keys_aside(session: Session) -> dict[str, str]:
    value = session.scalar(select(Setting.value).where(Setting.key == KEYS_ASIDE)) if _postgresql(session) else None
    return json.loads(value) if value else {}


def _add_key(session: Session, name: str, definition: str) -> None:
    """Add foreign key ``name`` back to ``labels`` (one scan checks every row). Labels that lost
    their parent while it was away (a user deleted meanwhile) get what its ``ON DELETE`` gives
    them first: removed (``CASCADE``) or the reference cleared (``SET NULL``)."""
    add = text(f'ALTER TABLE labels ADD CONSTRAINT "{name}" {definition}')
    try:
        with session.begin_nested():
            session.execute(add)
        return
    except IntegrityError:
        found = re.match(r"FOREIGN KEY \((\w+)\) REFERENCES (\w+)\(id\).*ON DELETE (CASCADE|SET NULL)", definition)
        if found is None:
            raise
    column, parent, action = found.groups()
    labels = Label.__table__
    orphan = labels.c[column].is_not(None) & ~select(text("1")).select_from(text(parent)).where(
        text(f"{parent}.id = labels.{column}")).exists()
    session.execute(delete(labels).where(orphan) if action == "CASCADE" else
                    update(labels).where(orphan).values({column: None}))
    session.execute(add)
