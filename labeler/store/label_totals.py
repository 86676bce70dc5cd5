"""How many labels a group has, without counting a million-label group on every queue page.

A group's number of labels changes only when labels are added (``label``, ``import-labels``);
reviews change statuses, never how many labels there are. Each write that adds or rewrites labels
sets a new token under :data:`GENERATION` in its own transaction (:func:`bump`, :data:`BUMP_SQL`).
A process keeps each group's count beside the token it was counted under and uses it while the
catalog's token is unchanged; after any write it counts once again. The truth stays in the
catalog: every process checks the token on every read, so ``serve --processes N`` and several
servers on one PostgreSQL catalog agree.
"""

from __future__ import annotations

import secrets
import threading

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .catalog import Label, Setting

GENERATION = "labels_generation"
# Plain SQL, so the SQLite writer process (sqlite3, no SQLAlchemy session) runs the same statement.
BUMP_SQL = (f"INSERT INTO settings (key, value) VALUES ('{GENERATION}', :token) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value")

_kept: dict[tuple[str, str], tuple[str, int]] = {}  # (catalog url, group) -> (token, count)
_lock = threading.Lock()


def new_token() -> str:
    return secrets.token_hex(8)


def bump(session: Session) -> None:
    """Mark the catalog's labels as added to, in ``session``'s transaction: kept counts are stale."""
    session.execute(text(BUMP_SQL), {"token": new_token()})


def group_total(session: Session, group: str) -> int:
    """How many labels ``group`` has (every status, present images or not): counted once per token."""
    token = session.scalar(select(Setting.value).where(Setting.key == GENERATION)) or ""
    key = (str(session.get_bind().url), group)
    with _lock:
        kept = _kept.get(key)
    if kept is not None and kept[0] == token:
        return kept[1]
    # read after the token: rows added in between are counted now and the next read counts again
    total = int(session.scalar(select(func.count()).select_from(Label).where(Label.group == group)))
    with _lock:
        _kept[key] = (token, total)
    return total
