"""learning from reviews: fits, the fit and cold-start priority of a label, background jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('group', sa.String(length=128), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('prompt_set_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('reviewed', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('classifier', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['prompt_set_id'], ['prompt_sets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('fits', schema=None) as batch_op:
        batch_op.create_index('ix_fits_lookup', ['model_id', 'group', 'prompt_set_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )

    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fit_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_labels_fit_id', 'fits', ['fit_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_constraint('fk_labels_fit_id', type_='foreignkey')
        batch_op.drop_column('priority')
        batch_op.drop_column('fit_id')
    op.drop_table('jobs')
    with op.batch_alter_table('fits', schema=None) as batch_op:
        batch_op.drop_index('ix_fits_lookup')
    op.drop_table('fits')
