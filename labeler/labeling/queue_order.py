"""The review queue's stored orders: what a label run writes so that a queue page walks an index.

"Most informative" is a window over a whole group (the k-th most uncertain proposal of every value
takes its turn before any value's (k+1)-th; ``fewshot.balanced_order`` is the same order in numpy),
so a page could not be served without sorting the group. Each label run stores every label's place
in that order (``labels.informative_rank``); the queue reads it through an index. The turns count
every label of the group, whatever its status, so a decision never renumbers the labels to come.
"""

from __future__ import annotations

from typing import Sequence

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
    many labels moved. Only moved ones are written (a relabel that keeps its proposals writes none)."""
    differs = "IS DISTINCT FROM" if session.get_bind().dialect.name == "postgresql" else "IS NOT"
    moved = 0
    for group in groups:
        result = session.execute(text(
            f"UPDATE labels SET informative_rank = ranked.rank FROM ({_RANKED}) AS ranked "
            f"WHERE ranked.id = labels.id AND labels.informative_rank {differs} ranked.rank"), {"group": group})
        moved += int(result.rowcount or 0)
    return moved
