"""stored skips: a reviewer's skip sends the label to the end of that reviewer's queue

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_skips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('label_id', 'user_id')
    )
    with op.batch_alter_table('review_skips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_skips_user_id'), ['user_id'], unique=False)
    # A reviewer's recent decisions, newest first, for an undo that lasts across pages.
    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.create_index('ix_review_events_user_id', ['user_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.drop_index('ix_review_events_user_id')
    with op.batch_alter_table('review_skips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_skips_user_id'))
    op.drop_table('review_skips')
