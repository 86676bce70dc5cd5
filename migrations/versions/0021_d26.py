"""duplicate_calibrations.residual, .aligned_colour: the limits of the aligned thumbnail check

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-07

``duplicates --level near`` decides a candidate pair on the thumbnails aligned one on the other
(``labeler/curation/copies.py``, :func:`aligned`): the worst cell's grey residual and the colour
distance, each with a limit calibrated on the collection's own copies. A calibration stored
before this revision has neither (NULL) and is measured again on the next run.
"""
import sqlalchemy as sa
from alembic import op


revision = '0021'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("duplicate_calibrations") as batch:
        batch.add_column(sa.Column("residual", sa.Float(), nullable=True))
        batch.add_column(sa.Column("aligned_colour", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("duplicate_calibrations") as batch:
        batch.drop_column("aligned_colour")
        batch.drop_column("residual")
