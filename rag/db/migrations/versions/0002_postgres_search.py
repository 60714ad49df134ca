"""The PostgreSQL search store's tables: pgvector vectors and BM25 postings, lengths, stats.

PostgreSQL only: on SQLite (the embedded FAISS + BM25 file store) this
revision does nothing. Written out, not read from ``rag.store.pg_schema``, so
later changes there do not change what this revision creates; a table that is
already there (made by ``pg_schema.create_schema`` in development) is left
alone. The per-collection HNSW indexes are made by the store itself once a
collection's vector size is known.

Revision ID: 0002_postgres_search
Revises: 0001_initial
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

from rag.errors import ConfigError

revision: str = "0002_postgres_search"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("bm25_stats", "bm25_lengths", "bm25_postings", "chunk_vectors")


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _create_pgvector() -> None:
    bind = op.get_bind()
    available = bind.execute(
        sa.text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    if available is None:
        raise ConfigError(
            "the PostgreSQL search store needs the pgvector extension, which this server "
            "lacks: install pgvector >= 0.7 (https://github.com/pgvector/pgvector), then "
            "run the migrations again"
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")


def upgrade() -> None:
    """Create the extension and the four tables (PostgreSQL only)."""
    if not _is_postgres():
        return
    _create_pgvector()
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "chunk_vectors" not in have:
        op.create_table(
            "chunk_vectors",
            sa.Column("chunk_id", sa.Integer(), nullable=False),
            sa.Column("collection_id", sa.Integer(), nullable=False),
            sa.Column("embedding", Vector(), nullable=False),
            sa.ForeignKeyConstraint(["chunk_id"], ["chunks.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("chunk_id"),
        )
        op.create_index(
            "ix_chunk_vectors_collection", "chunk_vectors", ["collection_id", "chunk_id"]
        )
    if "bm25_postings" not in have:
        # No foreign key and no chunk_id index, on purpose: see rag.store.pg_schema.
        op.create_table(
            "bm25_postings",
            sa.Column("collection_id", sa.Integer(), nullable=False),
            sa.Column("term", sa.Text(), nullable=False),
            sa.Column("chunk_id", sa.Integer(), nullable=False),
            sa.Column("tf", sa.Integer(), nullable=False),
            sa.Column("length", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint(
                "collection_id", "term", "chunk_id", postgresql_include=["tf", "length"]
            ),
        )
    if "bm25_lengths" not in have:
        op.create_table(
            "bm25_lengths",
            sa.Column("chunk_id", sa.Integer(), nullable=False),
            sa.Column("collection_id", sa.Integer(), nullable=False),
            sa.Column("length", sa.Integer(), nullable=False),
            sa.Column("terms", sa.ARRAY(sa.Text()), nullable=False),
            sa.ForeignKeyConstraint(["chunk_id"], ["chunks.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("chunk_id"),
        )
        op.create_index("ix_bm25_lengths_collection", "bm25_lengths", ["collection_id"])
    if "bm25_stats" not in have:
        op.create_table(
            "bm25_stats",
            sa.Column("collection_id", sa.Integer(), nullable=False),
            sa.Column("n_docs", sa.BigInteger(), nullable=False),
            sa.Column("total_len", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("collection_id"),
        )


def downgrade() -> None:
    """Drop the four tables (the HNSW indexes go with ``chunk_vectors``); keep the extension."""
    if not _is_postgres():
        return
    have = set(sa.inspect(op.get_bind()).get_table_names())
    for table in _TABLES:
        if table in have:
            op.drop_table(table)
