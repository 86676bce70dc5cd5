"""the source of an import on its review events

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-07

``import-labels`` records the file it read (its name) on each ``import`` event
(``review_events.source``), so the dashboard can count ``audit``'s suspects per import as well as
per reviewer. A plain nullable column: SQLite adds it in place; events from before have none.
"""
import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('review_events', sa.Column('source', sa.String(length=256), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35+ and PostgreSQL), as 0009 does: a batch copy would cascade.
    op.execute('ALTER TABLE review_events DROP COLUMN source')
