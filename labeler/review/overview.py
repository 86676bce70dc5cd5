"""What a collection is about, as a first screen needs it: the prompt set its labels were made
with, its groups in that set's order (the set's first group is the collection's main group, not
the alphabetically first), and the next thing a reviewer should do.

No Flask here: the dashboard, the queue's default group and the prompt lab all ask this module.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import stored_scores
from ..store.catalog import Label, PromptSetRecord
from . import decisions as review


def prompt_set_record(session: Session, groups: list[str] | None = None) -> PromptSetRecord | None:
    """The newest prompt set the collection's labels were proposed with (one indexed read per group)."""
    ids = set()
    for group in groups if groups is not None else review.groups(session):
        # in (group, value) order: the group's index then serves it from its first entries, where
        # PostgreSQL's planner otherwise scans the table, through every dead row a relabel left
        found = session.scalar(select(Label.prompt_set_id).where(Label.group == group, Label.prompt_set_id.is_not(None))
                               .order_by(Label.group, Label.value).limit(1))
        if found is not None:
            ids.add(found)
    if not ids:
        return None
    return session.get(PromptSetRecord, max(ids))


def ordered_groups(session: Session) -> list[str]:
    """The collection's groups, those of its prompt set first in the set's order, then the rest by name."""
    groups = review.groups(session)
    record = prompt_set_record(session, groups)
    order = list(stored_scores.group_names(record)) if record is not None else []
    rank = {name: i for i, name in enumerate(order)}
    return sorted(groups, key=lambda name: (rank.get(name, len(rank)), name))


def main_group(session: Session) -> str | None:
    """The group a reviewer starts with: the prompt set's first group that has labels."""
    groups = ordered_groups(session)
    return groups[0] if groups else None


def prompt_set_stem(record: PromptSetRecord | None, stems: list[str]) -> str | None:
    """Which of the prompt sets on offer (by file stem) ``record`` is: its file's stem, else its name."""
    if record is None:
        return None
    for candidate in (Path(record.path).stem if record.path else None, record.name):
        if candidate in stems:
            return candidate
    return None


def next_step(stats: dict, order: list[str]) -> dict | None:
    """The one thing the dashboard offers first: ``{"group", "count", "text"}``, or None when
    every label has been decided.

    ``stats`` is :func:`decisions.stats`; ``order`` the groups as :func:`ordered_groups` gives them.
    The main group's proposed labels come first; a finished group hands over to the next one.
    """
    for group in order:
        left = (stats.get(group) or {}).get("statuses", {}).get("proposed", 0)
        if left:
            return {"group": group, "count": left, "text": f"Review {group}: {left:,} to go"}
    return None
