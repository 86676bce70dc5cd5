"""trusted labels: accept runs, the ``auto`` status's run on each label, and the run on review events

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

``manage.py accept`` turns proposals into ``auto`` labels at a stated precision; each run is a row
of ``accept_runs`` (its threshold, stated precision and evidence), each auto label names its run
(``labels.accept_run_id``), and so does every review event about it (``review_events.run_id``),
so a run can be undone and its spot-checks counted. ``labels.suspect_score`` is ``manage.py
audit``'s confident-learning score of a reviewed label (the queue's ``suspect`` sort). The two new columns are plain integers, not
foreign keys: SQLite adds a column in place only without one, where a foreign key would copy the
whole labels table; runs are never deleted.
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accept_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=128), nullable=False),
    sa.Column('fit_id', sa.Integer(), nullable=True),
    sa.Column('min_precision', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('estimated_precision', sa.Float(), nullable=False),
    sa.Column('lower_bound', sa.Float(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('coverage', sa.Float(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('undone_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['fit_id'], ['fits.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_accept_runs_group', 'accept_runs', ['group', 'id'])
    op.add_column('labels', sa.Column('accept_run_id', sa.Integer(), nullable=True))
    op.add_column('labels', sa.Column('suspect_score', sa.Float(), nullable=True))
    op.add_column('review_events', sa.Column('run_id', sa.Integer(), nullable=True))
    op.create_index('ix_review_events_run_id', 'review_events', ['run_id'],
                    sqlite_where=sa.text('run_id IS NOT NULL'), postgresql_where=sa.text('run_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_review_events_run_id', table_name='review_events')
    # In place (SQLite 3.35+ and PostgreSQL): a batch copy of labels would cascade-delete every
    # review event with the old table under SQLite's foreign keys.
    op.execute('ALTER TABLE review_events DROP COLUMN run_id')
    op.execute('ALTER TABLE labels DROP COLUMN accept_run_id')
    op.execute('ALTER TABLE labels DROP COLUMN suspect_score')
    op.drop_index('ix_accept_runs_group', table_name='accept_runs')
    op.drop_table('accept_runs')
