"""labels.updated_at as seconds since 1970 on SQLite

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28

Every label carries ``updated_at``; as SQLite text ('YYYY-MM-DD HH:MM:SS[.ffffff]') it took 19
or 26 bytes, as an integer it takes 4: 15 bytes or more of about 170 per label, so a million
images labeled in eight groups make a catalog 120 MB smaller. The column keeps its declared type
(SQLite stores what it is given); ``catalog.Seconds`` writes and reads the integers. PostgreSQL
keeps its timestamp and has nothing to do.
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE labels SET updated_at = CAST(strftime('%s', updated_at) AS INTEGER) "
                   "WHERE typeof(updated_at) = 'text'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE labels SET updated_at = datetime(updated_at, 'unixepoch') "
                   "WHERE typeof(updated_at) = 'integer'")
