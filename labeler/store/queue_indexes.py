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
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from . import db
from .catalog import Label

QUEUE_INDEXES = tuple(sorted((ix for ix in Label.__table__.indexes if ix.name.startswith("ix_labels_queue_")),
                             key=lambda ix: ix.name))

# A run sets them aside when it will write at least this many labels, at least this share of the
# labels it proposes (measured on its first chunk), and its groups hold at least this share of the
# labels the indexes will hold: a one-group relabel of a nine-group catalog updates a ninth of each
# index in place rather than rebuilding all of them (relabeling one group of nine at 1,000,000
# images: 82-98 s in place, 141-167 s rebuilding).
BULK_ROWS = 500_000
BULK_SHARE = 0.5


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


def missing(session: Session) -> list[str]:
    """The queue indexes the catalog lacks (a run that set them aside and stopped)."""
    # from the database's own list: SQLAlchemy's reflection skips the expression index (spot-check)
    listed = ("SELECT indexname FROM pg_indexes WHERE tablename = 'labels' AND schemaname = current_schema()"
              if session.get_bind().dialect.name == "postgresql" else
              "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'labels'")
    have = set(session.scalars(text(listed)))
    return [ix.name for ix in QUEUE_INDEXES if ix.name not in have]


def set_aside(session: Session) -> None:
    """Drop the queue indexes, in ``session``'s transaction."""
    for ix in QUEUE_INDEXES:
        session.execute(text(f"DROP INDEX IF EXISTS {ix.name}"))


def restore(session: Session) -> list[str]:
    """Build the queue indexes that are missing, in ``session``'s transaction; returns their names."""
    gone = missing(session)
    connection = session.connection()
    with db.index_build_settings(session):
        for ix in QUEUE_INDEXES:
            if ix.name in gone:
                ix.create(connection)
    return gone
