"""Engine and session factory; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from rag.db.migrate import require_current_schema, upgrade_database

log = logging.getLogger(__name__)


def create_database_engine(url: str) -> Engine:
    """The engine alone, with the SQLite pragmas; the schema is left as it is.

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

    return engine


def make_engine(url: str, *, auto_upgrade: bool = True) -> Engine:
    """Create the engine and bring the schema to this version's (see ``rag.db.migrate``).

    Args:
        url: SQLAlchemy URL (SQLite file or PostgreSQL).
        auto_upgrade: Upgrade a new, older or pre-migration database to head. When
            False the database must already be at head (``rag db upgrade``).

    Raises:
        ConfigError: The database was made by a newer version of the software, or
            it is behind and ``auto_upgrade`` is False.
    """
    engine = create_database_engine(url)
    try:
        if auto_upgrade:
            upgrade_database(engine)
        else:
            require_current_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (we hand rows to other layers)."""
    return sessionmaker(engine, expire_on_commit=False)
