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

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ..store import db
from ..store.catalog import Label

# Migration 0013 runs the same statement for every group; a change here is a change there.
_RANKED = """
    SELECT id, row_number() OVER (ORDER BY
        priority IS NULL, priority, turn, margin IS NULL, margin, id) - 1 AS rank
    FROM (SELECT id, priority, margin, row_number() OVER (
              PARTITION BY predicted ORDER BY margin IS NULL, margin, id) AS turn
          FROM labels WHERE "group" = :group) AS turns"""


def stored_as_planned(session: Session, group: str, planned: int) -> bool:
    """Whether ``group``'s labels are exactly the ``planned`` ones its first run ranked before
    writing (``bulk.rank_ahead``), each inserted with its rank: then :func:`store_informative`
    would move none, and its read of every label can be skipped (24.7 s for 8,000,000 labels; the
    test reads the informative-rank index in 0.07 s a group).

    A row gets a rank only if its image was ranked, and an image has one row per group, so as many
    rows as ``planned``, all with a rank, are the ranked images themselves. Their ranks are the ones
    this module would give: ``rank_ahead`` breaks ties by image id, and a first run inserts a group's
    rows in image id order, so in label id order too. An image embedded between the two passes (no
    rank) or removed (one row fewer) fails the test."""
    rows, ranked = session.execute(select(func.count(), func.count(Label.informative_rank))
                                   .where(Label.group == group)).one()
    return rows == ranked == planned


def store_informative(session: Session, groups: Sequence[str]) -> int:
    """Write each label's place in its group's "most informative" order for ``groups``; returns how
    many labels moved. Only moved ones are written (a relabel that keeps its proposals writes none).

    PostgreSQL runs the order as one set-based ``UPDATE ... FROM`` (window functions, hashed join).
    SQLite's plan for the same statement sorts the group twice and then rewrites the rows in rank
    order, a page at random per row (about 2 s per 100,000 labels); there the groups are read in one
    pass over the table in id order (:func:`_read_groups`), each ordered with numpy (:func:`ranks`),
    and the moved ranks of all groups written back together in id order."""
    if not groups:
        return 0  # SQLite would still walk the table for none
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
        with db.bulk_page_cache(session):  # the pages an id-ordered pass touches stay in memory
            columns = _read_groups(cursor, list(groups))
            moved_ids, moved_ranks = [], []
            for ids, priority, margin, predicted, stored in columns.values():
                rank = ranks(ids, priority, margin, predicted)
                at = np.flatnonzero(np.isnan(stored) | (stored != rank))
                moved_ids.append(ids[at])
                moved_ranks.append(rank[at])
            if not moved_ids:
                return 0
            # every group at once, in id order: a group's labels lie on every page of the table (each
            # image's labels are neighbours), so group by group would rewrite the whole table per group
            ids, rank = np.concatenate(moved_ids), np.concatenate(moved_ranks)
            order = np.argsort(ids, kind="stable")
            ids, rank = ids[order], rank[order]
            for start in range(0, len(ids), _ROWS):
                cursor.executemany("UPDATE labels SET informative_rank = ? WHERE id = ?",
                                   zip(rank[start:start + _ROWS].tolist(), ids[start:start + _ROWS].tolist()))
            return len(ids)
    finally:
        cursor.close()


def _read_groups(cursor, groups: list[str]) -> dict[str, tuple]:
    """``{group: (ids, priority, margin, predicted, informative_rank)}`` as numpy columns (NaN for
    NULL; ``predicted`` as codes, -1 for NULL), each group in id order, read in one pass over the
    table in id order, :data:`_ROWS` rows at a time."""
    parts: dict[str, list[tuple]] = {g: [] for g in groups}
    codes: dict[str | None, int] = {None: -1}
    number = {name: i for i, name in enumerate(groups)}
    marks = ", ".join("?" * len(groups))
    last = -1
    while True:
        rows = cursor.execute(f'SELECT id, "group", priority, margin, predicted, informative_rank FROM labels '
                              f'WHERE id > ? AND +"group" IN ({marks}) ORDER BY id LIMIT {_ROWS}',  # + : by id, not a group index
                              (last, *groups)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        ids, group, priority, margin, predicted, stored = zip(*rows)
        group = np.array([number[g] for g in group], np.int64)
        columns = (np.array(ids, np.int64), _nullable(priority), _nullable(margin),
                   np.array([codes.setdefault(v, len(codes)) for v in predicted], np.int64), _nullable(stored))
        for name in groups:
            mine = group == number[name]
            if mine.any():
                parts[name].append(tuple(c[mine] for c in columns))
    return {name: tuple(np.concatenate(c) for c in zip(*chunks)) for name, chunks in parts.items() if chunks}


_ROWS = 200_000  # rows read, or made into Python values, at a time


def ranks(ids: np.ndarray, priority: np.ndarray, margin: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each label's place ``[N]`` in :data:`_RANKED`'s order, from its ``ids``, ``priority`` and
    ``margin`` (NaN for NULL) and ``predicted`` value as codes (each value one code, NULL one of its
    own): priority first (NULL last), then the turn (its place among its predicted value's labels
    by margin, NULL last, then id), then margin, then id."""
    missing_margin = np.isnan(margin)
    margin = np.where(missing_margin, 0.0, margin)
    within = np.lexsort((ids, margin, missing_margin, predicted))
    sorted_value = predicted[within]
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
