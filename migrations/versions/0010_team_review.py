"""review leases, assignments and flags: a team splits one collection's work

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``review_leases``: a reviewer's queue claims the cards it shows (and the next batch) for a few
minutes; other reviewers' queues skip them. ``review_assignments``: an admin gives a group, or a
group's value, to named reviewers; other reviewers' queues skip those labels. Both live in the
catalog, so they hold across ``serve --processes`` and across servers on one PostgreSQL catalog.
``flags``: a reviewer flags an image or a label ("ambiguous", "bad image", the team's own names)
with an optional note. ``qa_tasks``: a random share of each reviewer's decisions, checked blind by
another reviewer; disagreements go to an admin.
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_leases',
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('label_id')
    )
    with op.batch_alter_table('review_leases', schema=None) as batch_op:
        batch_op.create_index('ix_review_leases_user_id', ['user_id', 'expires_at'], unique=False)
        batch_op.create_index('ix_review_leases_expires_at', ['expires_at'], unique=False)
    op.create_table('review_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=128), nullable=False),
    sa.Column('value', sa.String(length=256), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('group', 'value', 'user_id')
    )
    with op.batch_alter_table('review_assignments', schema=None) as batch_op:
        batch_op.create_index('ix_review_assignments_group', ['group', 'value'], unique=False)


    op.create_table('flags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.create_index('ix_flags_image_id', ['image_id', 'name'], unique=False)
        batch_op.create_index('ix_flags_label_id', ['label_id'], unique=False)
        batch_op.create_index('ix_flags_name', ['name'], unique=False)

    op.create_table('qa_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=128), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('value', sa.String(length=256), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('qa_user_id', sa.Integer(), nullable=True),
    sa.Column('qa_value', sa.String(length=256), nullable=True),
    sa.Column('resolved_by', sa.Integer(), nullable=True),
    sa.Column('resolved_value', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('done_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['event_id'], ['review_events.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['qa_user_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['resolved_by'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('qa_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_qa_tasks_status', ['status', 'group'], unique=False)
        batch_op.create_index('ix_qa_tasks_label_id', ['label_id'], unique=False)


def downgrade() -> None:
    op.drop_table('qa_tasks')
    with op.batch_alter_table('flags', schema=None) as batch_op:
        batch_op.drop_index('ix_flags_name')
        batch_op.drop_index('ix_flags_label_id')
        batch_op.drop_index('ix_flags_image_id')
    op.drop_table('flags')
    with op.batch_alter_table('review_assignments', schema=None) as batch_op:
        batch_op.drop_index('ix_review_assignments_group')
    op.drop_table('review_assignments')
    with op.batch_alter_table('review_leases', schema=None) as batch_op:
        batch_op.drop_index('ix_review_leases_expires_at')
        batch_op.drop_index('ix_review_leases_user_id')
    op.drop_table('review_leases')
