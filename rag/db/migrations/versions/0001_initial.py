"""The schema of the last version without migrations: knowledge base, jobs, chat, journal.

Written out, not read from ``rag.db.models``, so that later changes to the
models do not change what this revision creates. On a database made before
Alembic it only adds what is missing (``rag.db.migrations.adopt``).

Revision ID: 0001_initial
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from rag.db.migrations.adopt import schema_operations

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tables and their indexes (or the missing ones on a pre-Alembic database)."""
    ops = schema_operations()
    ops.create_table(
        "chat_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("collections", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    ops.create_table(
        "collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("embedding_model", sa.String(length=512), server_default="", nullable=False),
        sa.Column("embedding_dim", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    ops.create_table(
        "index_journal",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("chunk_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sqlite_autoincrement=True,
    )
    ops.create_index(
        ops.f("ix_index_journal_collection_id"), "index_journal", ["collection_id"], unique=False
    )
    ops.create_table(
        "ingest_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("collection", sa.String(length=128), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("document_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pages_parsed", sa.Integer(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_embedded", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("upload_path", sa.String(length=1024), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    ops.create_index(
        ops.f("ix_ingest_jobs_document_id"), "ingest_jobs", ["document_id"], unique=False
    )
    ops.create_table(
        "chat_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("citations", sa.JSON(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["chat_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    ops.create_index(
        ops.f("ix_chat_messages_session_id"), "chat_messages", ["session_id"], unique=False
    )
    ops.create_table(
        "documents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    ops.create_index(
        "ix_documents_collection_filename",
        "documents",
        ["collection_id", "filename"],
        unique=False,
    )
    ops.create_index(
        ops.f("ix_documents_collection_id"), "documents", ["collection_id"], unique=False
    )
    ops.create_index(
        "ix_documents_collection_sha", "documents", ["collection_id", "sha256"], unique=False
    )
    # One live copy of the same bytes per collection: failed rows do not count.
    ops.create_index(
        "ux_documents_collection_sha_live",
        "documents",
        ["collection_id", "sha256"],
        unique=True,
        sqlite_where=sa.text("status != 'failed'"),
        postgresql_where=sa.text("status != 'failed'"),
    )
    ops.create_table(
        "chunks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("document_id", sa.String(length=32), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page_start", sa.Integer(), nullable=False),
        sa.Column("page_end", sa.Integer(), nullable=False),
        sa.Column("char_start", sa.Integer(), nullable=False),
        sa.Column("char_end", sa.Integer(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("page_breaks", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("ocr_confidence", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["document_id"], ["documents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        # Chunk ids are the FAISS/BM25 keys: never reuse one after a delete.
        sqlite_autoincrement=True,
    )
    ops.create_index(ops.f("ix_chunks_collection_id"), "chunks", ["collection_id"], unique=False)
    ops.create_index(ops.f("ix_chunks_document_id"), "chunks", ["document_id"], unique=False)
    ops.create_index(
        "ix_chunks_document_ordinal", "chunks", ["document_id", "ordinal"], unique=False
    )


def downgrade() -> None:
    """Drop every table (and with them every row): back to an empty database."""
    for table in (
        "chunks",
        "documents",
        "chat_messages",
        "ingest_jobs",
        "index_journal",
        "collections",
        "chat_sessions",
    ):
        op.drop_table(table)
