"""labels.reviewer_name, review_events.reviewer_name: a reviewer who is no labeler user, kept as text

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

``import-labels`` reads who reviewed each value (Label Studio's ``completed_by``, JSON-MIN's
``annotator``, ``--user``). A name that matches a labeler user goes to ``reviewed_by`` as before; one
that matches no user was dropped, so a round trip through Label Studio lost its reviewers (issue 27).
Now it is kept as text: on the label (``reviewed_by`` stays NULL) and on its ``import`` event. A
later decision by a labeler user clears the label's; the event keeps it.
"""
import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a nullable column: a plain ALTER TABLE, no copy of a million labels
    op.add_column("labels", sa.Column("reviewer_name", sa.String(length=256), nullable=True))
    op.add_column("review_events", sa.Column("reviewer_name", sa.String(length=256), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE review_events DROP COLUMN reviewer_name")
    op.execute("ALTER TABLE labels DROP COLUMN reviewer_name")
