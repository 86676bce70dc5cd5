"""The review queue's stored orders: what a label run writes so that a queue page walks an index.

"Most informative" is a window over a whole group (the k-th most uncertain proposal of every value
takes its turn before any value's (k+1)-th; ``fewshot.balanced_order`` is the same order in numpy),
so a page could not be served without sorting the group. Each label run stores every label's place
in that order (``labels.informative_rank``); the queue reads it through an index. The turns count
every label of the group, whatever its status, so a decision never renumbers the labels to come.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sqlalchemy import text
from sqlalchemy.orm import Session

# Migration 0013 runs the same statement for every group; a change here is a change there.
_RANKED = """
    SELECT id, row_number() OVER (ORDER BY
        priority IS NULL, priority, turn, margin IS NULL, margin, id) - 1 AS rank
    FROM (SELECT id, priority, margin, row_number() OVER (
              PARTITION BY predicted ORDER BY margin IS NULL, margin, id) AS turn
          FROM labels WHERE "group" = :group) AS turns"""


def store_informative(session: Session, groups: Sequence[str]) -> int:
    """Write each label's place in its group's "most informative" order for ``groups``; returns how
    many labels moved. Only moved ones are written (a relabel that keeps its proposals writes none).

    PostgreSQL runs the order as one set-based ``UPDATE ... FROM`` (window functions, hashed join).
    SQLite's plan for the same statement sorts the group twice and then rewrites the rows in rank
    order, a page at random per row (about 2 s per 100,000 labels); there each group is read once in
    id order and ordered with numpy (:func:`ranks`), and the moved ranks of all groups are written
    back together in id order."""
    if session.get_bind().dialect.name == "postgresql":
        moved = 0
        for group in groups:
            result = session.execute(text(
                f"UPDATE labels SET informative_rank = ranked.rank FROM ({_RANKED}) AS ranked "
                "WHERE ranked.id = labels.id AND labels.informative_rank IS DISTINCT FROM ranked.rank"), {"group": group})
            moved += int(result.rowcount or 0)
        return moved
    cursor = session.connection().connection.driver_connection.cursor()  # this unit of work's transaction
    try:
        moved_ids, moved_ranks = [], []
        for group in groups:
            rows = cursor.execute('SELECT id, priority, margin, predicted, informative_rank FROM labels '
                                  'WHERE "group" = ? ORDER BY id', (group,)).fetchall()
            if not rows:
                continue
            ids, priority, margin, predicted, stored = zip(*rows)
            ids = np.array(ids, np.int64)
            rank = ranks(ids, _nullable(priority), _nullable(margin), predicted)
            was = _nullable(stored)
            at = np.flatnonzero(np.isnan(was) | (was != rank))
            moved_ids.append(ids[at])
            moved_ranks.append(rank[at])
        if not moved_ids:
            return 0
        # every group at once, in id order: a group's labels lie on every page of the table (each
        # image's labels are neighbours), so group by group would rewrite the whole table per group
        ids, rank = np.concatenate(moved_ids), np.concatenate(moved_ranks)
        order = np.argsort(ids, kind="stable")
        ids, rank = ids[order], rank[order]
        for start in range(0, len(ids), _WRITE_ROWS):
            cursor.executemany("UPDATE labels SET informative_rank = ? WHERE id = ?",
                               zip(rank[start:start + _WRITE_ROWS].tolist(), ids[start:start + _WRITE_ROWS].tolist()))
        return len(ids)
    finally:
        cursor.close()


_WRITE_ROWS = 200_000  # rows made into Python values at a time


def ranks(ids: np.ndarray, priority: np.ndarray, margin: np.ndarray, predicted: Sequence[str | None]) -> np.ndarray:
    """Each label's place ``[N]`` in :data:`_RANKED`'s order, from its ``ids``, ``priority`` and
    ``margin`` (NaN for NULL) and ``predicted`` value: priority first (NULL last), then the turn
    (its place among its predicted value's labels by margin, NULL last, then id), then margin, id."""
    missing_margin = np.isnan(margin)
    margin = np.where(missing_margin, 0.0, margin)
    _, value = np.unique(np.array([v if v is not None else "" for v in predicted], dtype=object).astype(str),
                         return_inverse=True)
    value = np.where(np.array([v is None for v in predicted]), -1, value)  # NULL is a value of its own
    within = np.lexsort((ids, margin, missing_margin, value))
    sorted_value = value[within]
    starts = np.searchsorted(sorted_value, sorted_value, side="left")  # value sorts first: runs are contiguous
    turn = np.empty(len(ids), np.int64)
    turn[within] = np.arange(len(ids)) - starts
    missing_priority = np.isnan(priority)
    order = np.lexsort((ids, margin, missing_margin, turn, np.where(missing_priority, 0.0, priority),
                        missing_priority))
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids))
    return rank


def _nullable(values: Sequence) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64)
