"""an append-only log of vector changes, so an index opens in O(changes) instead of O(N)

Triggers write it: a stored vector added, replaced or deleted, an image present again or gone.

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# (trigger, table, event, condition, image id, model id, op); the op of a status change depends on the new status
_TRIGGERS = [
    ("index_changes_embedding_add", "embeddings", "INSERT", None, "NEW.image_id", "NEW.model_id", "'add'"),
    ("index_changes_embedding_update", "embeddings", "UPDATE OF vector", None, "NEW.image_id", "NEW.model_id",
     "'update'"),
    ("index_changes_embedding_delete", "embeddings", "DELETE", None, "OLD.image_id", "OLD.model_id", "'remove'"),
    ("index_changes_image_status", "images", "UPDATE OF status", "OLD.status <> NEW.status", "NEW.id", "NULL",
     "CASE WHEN NEW.status = 'ok' THEN 'add' ELSE 'remove' END"),
]


def upgrade() -> None:
    op.create_table('index_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.BigInteger(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('op', sa.String(length=8), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,  # ids never reused: an index stamp names one point in the log
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, event, when, image_id, model_id, kind in _TRIGGERS:
        insert = (f"INSERT INTO index_changes (image_id, model_id, op) "
                  f"VALUES ({image_id}, {model_id}, {kind})")
        if postgres:
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN {insert}; RETURN NULL; END; "
                       f"$$ LANGUAGE plpgsql")
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW"
                       + (f" WHEN ({when})" if when else "") + f" EXECUTE FUNCTION {name}()")
        else:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW"
                       + (f" WHEN {when}" if when else "") + f" BEGIN {insert}; END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_table('index_changes')
