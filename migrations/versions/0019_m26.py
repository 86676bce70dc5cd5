"""map_layouts, map_positions, map_selections, map_selection_members: the map of the collection

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

``manage.py map`` and ``/map`` (issue 26, part 3) place every image's vector on a 2-D map, per
model: a layout is fitted on a sample (``anchor`` rows) and every other image is placed from its
nearest anchors, so new images never move the old ones. A selection made on the map is kept as
its image ids, so a review queue can hold exactly those images.
"""
import sqlalchemy as sa
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "map_layouts",
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("anchors", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "map_positions",
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("anchor", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "map_selections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "map_selection_members",
        sa.Column("selection_id", sa.Integer(), sa.ForeignKey("map_selections.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("map_selection_members")
    op.drop_table("map_selections")
    op.drop_table("map_positions")
    op.drop_table("map_layouts")
