"""Schema migrations: bring a database to this version's schema, or say where it stands.

The Alembic revisions ship inside the package (``rag/db/migrations``); the
Alembic configuration is built here, so no ``alembic.ini`` is needed at run time.

:func:`upgrade_database` handles every database it may be pointed at:

* an empty one gets every revision;
* one at an older revision gets the revisions after it;
* one made before the migrations (our tables, no ``alembic_version``) is
  adopted: ``0001_initial`` adds only the columns and indexes it lacks (see
  ``rag.db.migrations.adopt``), then the later revisions run;
* one at a revision this code does not know (made by a newer version) is
  refused with a :class:`~rag.errors.ConfigError`.

Several processes may open the same new database at once (server and CLI, two
replicas). The whole upgrade, from reading the current revision to the commit,
runs in one transaction that holds a lock first (when a first look, without
the lock, finds the database behind): ``pg_advisory_xact_lock`` on
PostgreSQL, ``BEGIN IMMEDIATE`` (the database's write lock) on SQLite. The
second process waits, then finds the database at head and does nothing. Both
databases run DDL inside transactions, so an interrupted upgrade leaves the
previous revision.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, make_url, pool, text

from rag.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held during an upgrade (any constant bigint
# works; advisory locks are per database). This one is "ragmigr" in ASCII.
PG_MIGRATION_LOCK_KEY = 0x7261676D69677200

# Tables of ``0001_initial``: finding any of them without ``alembic_version``
# means a database made before the migrations.
_PRE_ALEMBIC_TABLES = frozenset(
    {
        "collections",
        "documents",
        "chunks",
        "ingest_jobs",
        "chat_sessions",
        "chat_messages",
        "index_journal",
    }
)


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this code.

    Attributes:
        revision: The database's revision (None: no schema recorded).
        head: The newest revision this code knows.
        is_head: Whether the database is at ``head``.
        known: Whether this code knows ``revision`` (False: made by a newer version).
        pre_alembic: Our tables are there but no revision is recorded (made before
            the migrations; the next upgrade adopts it).
    """

    revision: str | None
    head: str
    is_head: bool
    known: bool
    pre_alembic: bool = False

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``rag db current --json`` (without the URL)."""
        return {
            "revision": self.revision,
            "head": self.head,
            "is_head": self.is_head,
            "known": self.known,
            "pre_alembic": self.pre_alembic,
        }


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade_database` did.

    Attributes:
        from_revision: The revision before (None: empty or pre-Alembic database).
        to_revision: The revision after (always the head).
        adopted: The database was made before the migrations and was adopted.
    """

    from_revision: str | None
    to_revision: str
    adopted: bool = False

    @property
    def changed(self) -> bool:
        """Whether any revision ran."""
        return self.from_revision != self.to_revision


def display_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and ``--json`` output."""
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the packaged migrations (no ``alembic.ini``).

    A developer writes a new revision with it, against a database at head::

        config = alembic_config()
        config.set_main_option("sqlalchemy.url", "sqlite:///data/rag.db")
        alembic.command.revision(config, "what changed", autogenerate=True, rev_id="0004_...")

    Args:
        connection: The connection ``env.py`` runs the revisions on.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script_directory() -> ScriptDirectory:
    """The packaged revisions, read once per process (they do not change while it runs)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision of the packaged migrations."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001_initial
        raise ConfigError(f"no migrations found in {MIGRATIONS_DIR}; reinstall rag-kb")
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    """Read the database's revision and compare it with this code's head (changes nothing)."""
    with engine.connect() as conn:
        return _status(conn)


def require_current_schema(engine: Engine) -> None:
    """Check that the database is at head, for when automatic upgrades are off.

    Raises:
        ConfigError: The database is behind (run ``rag db upgrade``) or newer than
            this code (upgrade the software).
    """
    status = schema_status(engine)
    if status.is_head:
        return
    url = display_url(engine.url)
    if not status.known:
        raise _newer_than_code(url, status)
    raise ConfigError(
        f"the database {url} is at schema revision {status.revision or '(none)'} but this "
        f"version of rag-kb needs {status.head}, and automatic upgrades are off: run "
        "`rag db upgrade`, or turn RAG_DATABASE_AUTO_UPGRADE back on"
    )


def upgrade_database(engine: Engine) -> UpgradeResult:
    """Upgrade the database to head; safe to call from several processes at once.

    Returns:
        The revisions before and after.

    Raises:
        ConfigError: The database is at a revision this code does not know.
    """
    url = display_url(engine.url)
    # Checked first without the lock: on SQLite the lock is the database's write
    # lock, which every open of an up-to-date database would otherwise wait for.
    status = schema_status(engine)
    if not status.known:
        raise _newer_than_code(url, status)
    if status.is_head:
        return UpgradeResult(status.revision, status.head)
    with _locked_transaction(engine) as conn:
        # Again under the lock: another process may have upgraded it meanwhile.
        status = _status(conn)
        if not status.known:
            raise _newer_than_code(url, status)
        if status.is_head:
            return UpgradeResult(status.revision, status.head)
        if status.pre_alembic:
            log.warning("adopting a database made before migrations url=%s", url)
        config = alembic_config(conn)
        config.attributes["adopt_existing"] = status.pre_alembic
        command.upgrade(config, "head")
        after = _current_revision(conn)
    # A new database is routine; changing an existing one is worth a line in the log.
    log.log(
        logging.INFO if status.revision is None and not status.pre_alembic else logging.WARNING,
        "database upgraded url=%s from=%s to=%s",
        url,
        status.revision,
        after,
    )
    if after is None:  # pragma: no cover - Alembic records the head it reached
        raise ConfigError(f"the upgrade of {url} recorded no revision; run `rag db upgrade`")
    return UpgradeResult(status.revision, after, adopted=status.pre_alembic)


def _status(conn: Connection) -> SchemaStatus:
    head = head_revision()
    revision = _current_revision(conn)
    if revision is None:
        tables = set(inspect(conn).get_table_names())
        return SchemaStatus(
            None, head, is_head=False, known=True, pre_alembic=bool(tables & _PRE_ALEMBIC_TABLES)
        )
    try:
        _script_directory().get_revision(revision)
    except CommandError:
        return SchemaStatus(revision, head, is_head=False, known=False)
    return SchemaStatus(revision, head, is_head=revision == head, known=True)


def _current_revision(conn: Connection) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise ConfigError(
            f"the database records several schema revisions {sorted(heads)}; it was changed "
            "by hand or by a branch of the software: restore it from a backup"
        )
    return heads[0] if heads else None


def _newer_than_code(url: str, status: SchemaStatus) -> ConfigError:
    return ConfigError(
        f"the database {url} is at schema revision {status.revision}, which this version of "
        f"rag-kb does not know (its newest is {status.head}): the database was made by a newer "
        "version; upgrade rag-kb, or point RAG_DATABASE_URL at another database"
    )


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; commits at the end."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        with engine.connect() as conn, conn.begin():
            # Released by the commit or rollback that ends the transaction.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
            yield conn
        return
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        lock_engine = _sqlite_migration_engine(engine)
        try:
            with lock_engine.connect() as conn, conn.begin():
                yield conn
        finally:
            lock_engine.dispose()
        return
    # An in-memory SQLite database belongs to one process: nothing to serialise.
    with engine.connect() as conn, conn.begin():
        yield conn


def _sqlite_migration_engine(engine: Engine) -> Engine:
    """A one-connection engine whose transactions begin with ``BEGIN IMMEDIATE``.

    pysqlite's own transaction handling neither puts DDL in a transaction nor
    takes the write lock at ``BEGIN``, so it is switched off and the engine
    emits the ``BEGIN IMMEDIATE`` itself: the migration holds the database's
    write lock from before it reads the revision until its commit, and a second
    process waits (busy timeout) at that ``BEGIN``. Foreign keys are off on
    this connection because a batch migration drops and recreates a table,
    which with them on would cascade-delete the rows referring to it.
    """
    lock_engine = create_engine(
        engine.url,
        poolclass=pool.NullPool,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(lock_engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    @event.listens_for(lock_engine, "begin")
    def _begin_immediate(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return lock_engine
