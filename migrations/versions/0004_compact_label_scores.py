"""compact label scores: per-option (cosine, confidence) as uint16 pairs instead of JSON

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

``labels.scores`` (``{option: {"cosine", "confidence"}}``, about 400 bytes a label) becomes
``labels.option_scores``: 4 bytes per option, in the order of the group's options in the label's
prompt set (labeler/core/stored_scores.py). The format is repeated here so this migration keeps
meaning what it meant when the code moves on.
"""
import json

import numpy as np
import sqlalchemy as sa
import yaml
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_TOP = 65535
_PAGE = 20_000


def _names(bind, cache: dict, prompt_set_id, group: str) -> list[str] | None:
    """The group's option names in the prompt set's own order (its YAML mapping order)."""
    if prompt_set_id is None:
        return None
    if prompt_set_id not in cache:
        source = bind.execute(sa.text("SELECT source FROM prompt_sets WHERE id = :id"), {"id": prompt_set_id}).scalar()
        try:
            groups = (yaml.safe_load(source) or {}).get("groups") or {}
            cache[prompt_set_id] = {str(g): [str(o) for o in (raw.get("options") or {})]
                                    for g, raw in groups.items() if isinstance(raw, dict)}
        except (yaml.YAMLError, AttributeError, TypeError):
            cache[prompt_set_id] = {}
    return cache[prompt_set_id].get(group)


def _pages(bind, column: str):
    """(id, group, prompt_set_id, column) of the labels whose ``column`` is set, a page at a time."""
    last = 0
    while True:
        rows = bind.execute(sa.text(f'SELECT id, "group", prompt_set_id, {column} FROM labels '
                                    f'WHERE id > :last AND {column} IS NOT NULL ORDER BY id LIMIT {_PAGE}'),
                            {"last": last}).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _encode(pairs: list[tuple[float, float]]) -> bytes:
    values = np.asarray(pairs, np.float64).reshape(-1, 2)
    cos = np.rint((np.clip(values[:, 0], -1.0, 1.0) + 1.0) * (_TOP / 2.0))
    conf = np.rint(np.clip(values[:, 1], 0.0, 1.0) * _TOP)
    return np.stack([cos, conf], axis=1).astype("<u2").tobytes()


def upgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('option_scores', sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    cache: dict = {}
    update = sa.text("UPDATE labels SET option_scores = :blob WHERE id = :id")
    for rows in _pages(bind, "scores"):
        out = []
        for label_id, group, prompt_set_id, raw in rows:
            scores = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(scores, dict) or not scores:
                continue
            names = _names(bind, cache, prompt_set_id, group)
            if names is None or set(names) != set(scores):
                continue  # scores that name no option list of the catalog cannot be kept compactly
            try:
                pairs = [(float(scores[n]["cosine"]), float(scores[n]["confidence"])) for n in names]
            except (KeyError, TypeError, ValueError):
                continue
            out.append({"id": label_id, "blob": _encode(pairs)})
        if out:
            bind.execute(update, out)
    # Native DROP COLUMN (SQLite >= 3.35, PostgreSQL): no table copy, so review_events keep their labels.
    op.drop_column('labels', 'scores')


def downgrade() -> None:
    op.add_column('labels', sa.Column('scores', sa.JSON(), nullable=True))
    bind = op.get_bind()
    cache: dict = {}
    update = sa.text("UPDATE labels SET scores = :scores WHERE id = :id")
    for rows in _pages(bind, "option_scores"):
        out = []
        for label_id, group, prompt_set_id, blob in rows:
            names = _names(bind, cache, prompt_set_id, group)
            packed = np.frombuffer(bytes(blob), dtype="<u2").reshape(-1, 2).astype(np.float64)
            if names is None or len(names) != len(packed):
                continue
            scores = {n: {"cosine": round(c * (2.0 / _TOP) - 1.0, 4), "confidence": round(p / _TOP, 4)}
                      for n, (c, p) in zip(names, packed.tolist())}
            out.append({"id": label_id, "scores": json.dumps(scores)})
        if out:
            bind.execute(update, out)
    op.drop_column('labels', 'option_scores')
