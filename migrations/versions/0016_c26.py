"""duplicate_calibrations, duplicate_groups, duplicate_members: near-duplicates found from the vectors

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07

``manage.py duplicates`` groups images whose stored vectors are close (issue 26). Thresholds are
calibrated per model on copies labeler makes of the collection's own images; each calibration is
kept (``duplicate_calibrations``), and each run replaces its model's and level's groups.

``duplicate_marks``: an image a reviewer marked as a duplicate of another (kept out of the review
queues, ``label`` and ``export --exclude-duplicates``); ``undone_at`` set when unmarked. Every
mark and unmark is also an append-only ``duplicate_mark_events`` row. Nothing leaves the disk.
"""
import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duplicate_calibrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("near", sa.Float(), nullable=False),
        sa.Column("scene", sa.Float(), nullable=False),
        sa.Column("pixels", sa.Float(), nullable=True),
        sa.Column("colour", sa.Float(), nullable=True),
        sa.Column("look", sa.Float(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_duplicate_calibrations_model_id", "duplicate_calibrations", ["model_id"])
    op.create_table(
        "duplicate_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("seed_image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("keep_image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_duplicate_groups_model_level", "duplicate_groups", ["model_id", "level"])
    op.create_table(
        "duplicate_members",
        sa.Column("group_id", sa.Integer(), sa.ForeignKey("duplicate_groups.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("similarity", sa.Float(), nullable=False),
    )
    op.create_index("ix_duplicate_members_image_id", "duplicate_members", ["image_id"])
    op.create_table(
        "duplicate_marks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("duplicate_of", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_duplicate_marks_image_id", "duplicate_marks", ["image_id", "undone_at"])
    op.create_table(
        "duplicate_mark_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mark_id", sa.Integer(), sa.ForeignKey("duplicate_marks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("duplicate_of", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_duplicate_mark_events_image_id", "duplicate_mark_events", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_duplicate_mark_events_image_id", table_name="duplicate_mark_events")
    op.drop_table("duplicate_mark_events")
    op.drop_index("ix_duplicate_marks_image_id", table_name="duplicate_marks")
    op.drop_table("duplicate_marks")
    op.drop_index("ix_duplicate_members_image_id", table_name="duplicate_members")
    op.drop_table("duplicate_members")
    op.drop_index("ix_duplicate_groups_model_level", table_name="duplicate_groups")
    op.drop_table("duplicate_groups")
    op.drop_index("ix_duplicate_calibrations_model_id", table_name="duplicate_calibrations")
    op.drop_table("duplicate_calibrations")
