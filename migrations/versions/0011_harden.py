"""prompt_embeddings.query_used_at: search texts in the text cache, least recently used dropped

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

The text cache held every search text anyone ever typed, for ever (30 queries of 84 KB added
73 MB). A search text's row now carries when it was last used (seconds since 1970); the rows of
prompts keep NULL and are never dropped. ``VectorStore.text_vectors`` keeps at most
``LABELER_QUERY_CACHE_TEXTS`` search texts.
"""
import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prompt_embeddings") as batch:
        batch.add_column(sa.Column("query_used_at", sa.Float(), nullable=True))
    op.create_index("ix_prompt_embeddings_query_used_at", "prompt_embeddings", ["query_used_at"])


def downgrade() -> None:
    op.drop_index("ix_prompt_embeddings_query_used_at", table_name="prompt_embeddings")
    with op.batch_alter_table("prompt_embeddings") as batch:
        batch.drop_column("query_used_at")
