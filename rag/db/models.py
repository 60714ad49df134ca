"""SQLAlchemy 2.x models: the source of truth for what the knowledge base holds.

FAISS and BM25 are derived from the ``chunks`` table (each chunk keeps its
embedding), so they can always be checked against it and rebuilt from it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timezone-aware now, stored as UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random 32-hex-digit id for documents, jobs and chat sessions."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    """Declarative base of every table."""


class DocumentStatus(enum.StrEnum):
    """Lifecycle of a document: only ``ready`` documents are searchable."""

    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class JobStatus(enum.StrEnum):
    """Lifecycle of an ingest job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Collection(Base):
    """A named knowledge base with its own FAISS and BM25 indexes and one embedding model."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # The model its vectors were made with and their size ("" and 0 until the first
    # document is committed, or for a database from before these were recorded).
    embedding_model: Mapped[str] = mapped_column(String(512), default="", server_default="")
    embedding_dim: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    documents: Mapped[list[Document]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )


class Document(Base):
    """One uploaded file (one version of it)."""

    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_collection_sha", "collection_id", "sha256"),
        Index("ix_documents_collection_filename", "collection_id", "filename"),
        # One live copy of the same bytes per collection, even under concurrent
        # uploads: a partial unique index (SQLite and PostgreSQL both have them)
        # that ignores failed rows, so a failed file can be uploaded again.
        Index(
            "ux_documents_collection_sha_live",
            "collection_id",
            "sha256",
            unique=True,
            sqlite_where=text("status != 'failed'"),
            postgresql_where=text("status != 'failed'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(512))
    media_type: Mapped[str] = mapped_column(String(64), default="")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=DocumentStatus.PENDING.value)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    collection: Mapped[Collection] = relationship(back_populates="documents")
    chunks: Mapped[list[ChunkRow]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True
    )


class ChunkRow(Base):
    """A chunk of a document; its integer id is the FAISS and BM25 key.

    ``sqlite_autoincrement`` keeps ids from being reused after a delete, so a
    stale index entry can never point at a different chunk.
    """

    __tablename__ = "chunks"
    __table_args__ = (
        Index("ix_chunks_document_ordinal", "document_id", "ordinal"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    collection_id: Mapped[int] = mapped_column(Integer, index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    page_start: Mapped[int] = mapped_column(Integer)
    page_end: Mapped[int] = mapped_column(Integer)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    page_breaks: Mapped[list] = mapped_column(JSON, default=list)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    # Set when the chunk's text was read by OCR: the least confident page's mean (0-1).
    ocr_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)

    document: Mapped[Document] = relationship(back_populates="chunks")


class IngestJob(Base):
    """Progress of one file's ingestion (shown by the CLI and ``GET /jobs/{id}``)."""

    __tablename__ = "ingest_jobs"
    # Workers look for unfinished jobs by status every poll interval.
    __table_args__ = (Index("ix_ingest_jobs_status", "status"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection: Mapped[str] = mapped_column(String(128))
    filename: Mapped[str] = mapped_column(String(512))
    document_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    pages_parsed: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_embedded: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    upload_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    # The worker holding the job (``host:pid:random``) and until when: the holder
    # renews the lease while it works; once it has passed, any worker may take
    # the job back. Both are NULL while nobody holds it.
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # How many times a worker started ingesting it (a cap fails a job that keeps
    # killing its workers instead of retrying it forever).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ChatSession(Base):
    """A multi-turn conversation."""

    __tablename__ = "chat_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collections: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    messages: Mapped[list[ChatMessage]] = relationship(
        back_populates="session",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ChatMessage.id",
    )


class ChatMessage(Base):
    """One message of a chat session, with the citations given for it."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    citations: Mapped[list] = mapped_column(JSON, default=list)
    flags: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    session: Mapped[ChatSession] = relationship(back_populates="messages")


__all__ = [
    "Base",
    "ChatMessage",
    "ChatSession",
    "ChunkRow",
    "Collection",
    "Document",
    "DocumentStatus",
    "IndexJournal",
    "IngestJob",
    "JobStatus",
    "UniqueConstraint",
    "new_id",
    "utcnow",
]


class IndexJournal(Base):
    """Write-ahead journal of index changes, written in the same transaction as the rows.

    Each index file records the last sequence number it holds; on start the
    entries after it are replayed, so a crash between the SQL commit and the
    index write never leaves the stores disagreeing.
    """

    __tablename__ = "index_journal"
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(Integer, index=True)
    # "add" | "remove" | "reembed" (every vector replaced: rebuild the vector index from SQL)
    op: Mapped[str] = mapped_column(String(8))
    chunk_ids: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
