"""sessions that end and throttled logins: a per-user session generation, disabled accounts, failed logins

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_generation', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))

    op.create_table('login_failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('cleared', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index('ix_login_failures_name', ['name', 'created_at'], unique=False)
        batch_op.create_index('ix_login_failures_address', ['address', 'created_at'], unique=False)
        batch_op.create_index('ix_login_failures_created_at', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_created_at')
        batch_op.drop_index('ix_login_failures_address')
        batch_op.drop_index('ix_login_failures_name')
    op.drop_table('login_failures')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('session_generation')
