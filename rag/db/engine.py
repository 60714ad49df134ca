"""Engine and session factory; SQLite gets WAL, foreign keys and a busy timeout."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
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
    _add_missing_columns(engine)
    _add_missing_indexes(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Add columns added to existing tables since the database was made.

    ``create_all`` leaves existing tables alone. Only additive changes are
    made this way (there are no migrations yet): each new column must have a
    server default or be nullable, so the rows already there stay valid.
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if column.server_default is None and not column.nullable:
                raise RuntimeError(
                    f"column {table.name}.{column.name} needs a server default to be added "
                    "to an existing database"
                )
            ddl = column.type.compile(dialect=engine.dialect)
            default = ""
            if column.server_default is not None:
                arg = column.server_default.arg  # type: ignore[attr-defined]
                value = arg.text if hasattr(arg, "text") else f"'{arg}'"
                default = f"{'' if column.nullable else ' NOT NULL'} DEFAULT {value}"
            statement = f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {ddl}{default}'
            try:
                with engine.begin() as conn:
                    conn.execute(text(statement))
            except OperationalError:
                # Another process opening the same database added it first.
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue
            log.warning("column added table=%s column=%s", table.name, column.name)


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
