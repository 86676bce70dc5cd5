"""labels: image_id last in the four indexes a map colouring reads

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

The map colours every image by one group's values, statuses, confidences or suspect scores. A
group's labels lie on every page of ``labels`` (a label run writes all groups of a chunk of
images together), so reading a million of them through an index that lacks ``image_id`` cost a
random page each: 76 s cold at 1,000,000 images. With ``image_id`` in the index the read never
touches the table. The queue sorts that use these indexes keep their order: the column is last.

A queue index that a stopped ``label`` run set aside is built here as well.
"""
import sqlalchemy as sa
from alembic import op


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

SUSPECT = "suspect_score IS NOT NULL"
BEFORE = {"ix_labels_group_value": ["group", "value"],
          "ix_labels_queue_id": ["group", "status", "id"],
          "ix_labels_queue_confidence": ["group", "status", "confidence", "id"],
          "ix_labels_queue_suspect": ["group", "status", "suspect_score", "id"]}


def _rebuild(columns: dict[str, list[str]]) -> None:
    for name, keys in columns.items():
        op.execute(f"DROP INDEX IF EXISTS {name}")
        where = {"sqlite_where": sa.text(SUSPECT), "postgresql_where": sa.text(SUSPECT)} if "suspect" in name else {}
        op.create_index(name, "labels", keys, **where)


def upgrade() -> None:
    _rebuild({name: [*keys, "image_id"] for name, keys in BEFORE.items()})


def downgrade() -> None:
    _rebuild(BEFORE)
