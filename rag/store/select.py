"""Pick the search store for a database: Postgres gets its own, everything else the files."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from rag.locks import ProcessLock
from rag.protocols import SearchStore
from rag.settings import IndexSettings
from rag.store.files import FileSearchStore


def make_search_store(
    engine: Engine,
    sessions: sessionmaker[Session],
    index_dir: Path,
    settings: IndexSettings,
    writer_lock: ProcessLock,
) -> SearchStore:
    """Pgvector + BM25 tables on PostgreSQL; FAISS + BM25 files (journaled in SQL) otherwise."""
    if engine.dialect.name == "postgresql":
        from rag.store.postgres import PostgresSearchStore

        return PostgresSearchStore(sessions, settings)
    return FileSearchStore(sessions, index_dir, settings, writer_lock)
