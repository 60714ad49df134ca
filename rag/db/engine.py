"""Engine and session factory; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from rag.db.models import Base

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """Create the engine and the tables (idempotent).

    SQLite is put in WAL mode with ``synchronous=FULL`` so a committed
    transaction survives a kill -9, and foreign keys are enforced so deleting a
    document deletes its chunks.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30}
        if url.startswith("sqlite")
        else {},
    )
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    Base.metadata.create_all(engine)
    _add_missing_indexes(engine)
    return engine


def _add_missing_indexes(engine: Engine) -> None:
    """Create indexes added to existing tables since the database was made.

    ``create_all`` only creates indexes together with their table. A unique
    index that existing rows violate (duplicates from before it existed) is
    skipped with a warning; ``rag doctor`` still works.
    """
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            try:
                index.create(engine, checkfirst=True)
            except (IntegrityError, OperationalError) as exc:
                log.warning("index not created name=%s reason=%s", index.name, exc)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (we hand rows to other layers)."""
    return sessionmaker(engine, expire_on_commit=False)
