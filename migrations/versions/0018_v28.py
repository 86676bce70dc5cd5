"""bulk_actions: a bulk accept as one undoable event; user_preferences: a reviewer's settings

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

A bulk accept (the selection, or every proposal above a threshold) writes one ``bulk_actions`` row
and tags each of its ``review_events`` with it (``bulk_id``), so one undo steps back through the
whole of it and the queue can say "Accepted N" from the catalog after a reload (issue 28).
``undone_at`` is set when it is undone; ``undone`` and ``kept`` count what the undo restored and
what it left because someone had changed those labels since.

``user_preferences``: one row per user, their review settings as JSON (theme, density, key map),
validated by ``labeler.review.preferences`` before they are stored.
"""
import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("group", sa.String(128), nullable=True),
        sa.Column("value", sa.String(256), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
        sa.Column("undone", sa.Integer(), nullable=True),
        sa.Column("kept", sa.Integer(), nullable=True),
    )
    op.create_index("ix_bulk_actions_user_id", "bulk_actions", ["user_id", "id"])
    # In place, as 0014 does: a batch copy of every review event would take minutes at a million images.
    op.add_column("review_events", sa.Column("bulk_id", sa.Integer(), nullable=True))
    op.create_index("ix_review_events_bulk_id", "review_events", ["bulk_id"],
                    sqlite_where=sa.text("bulk_id IS NOT NULL"), postgresql_where=sa.text("bulk_id IS NOT NULL"))
    op.create_table(
        "user_preferences",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_preferences")
    op.drop_index("ix_review_events_bulk_id", table_name="review_events")
    op.execute("ALTER TABLE review_events DROP COLUMN bulk_id")
    op.drop_index("ix_bulk_actions_user_id", table_name="bulk_actions")
    op.drop_table("bulk_actions")
