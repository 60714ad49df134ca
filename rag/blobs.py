"""Byte stores for uploads and document originals that every replica can read.

A single-host knowledge base keeps bytes as files under its data folder
(:class:`LocalBlobStore`); replicas over one PostgreSQL database keep them in a
``blobs`` table (:class:`SqlBlobStore`), so an upload received by one replica
can be ingested by another and a document's original served by any.

Keys are ``/``-separated names; for the local store a key is a path below its
folder. Uploads are keyed by job id and originals by document id, each kind in
its own folder (``data_dir/uploads``, ``data_dir/files``: today's layout) or
under its own prefix of the one table (:class:`PrefixedBlobStore`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from rag.db.models import utcnow
from rag.errors import BlobNotFound, InvalidInput
from rag.index.atomic import atomic_write_bytes

# One name segment: what ids and file names of ours look like; no "..", no leading dot.
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_MAX_KEY = 255

BLOB_METADATA = MetaData()

blobs_table = Table(
    "blobs",
    BLOB_METADATA,
    Column("key", String(_MAX_KEY), primary_key=True),
    Column("data", LargeBinary, nullable=False),  # bytea on PostgreSQL, BLOB on SQLite
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
)


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid blob key.

    Raises:
        InvalidInput: Not 1-255 characters of ``/``-separated segments of
            letters, digits, ``_``, ``.`` and ``-`` (no empty, dot-led or ``..`` segment).
    """
    if len(key) > _MAX_KEY or not _KEY.fullmatch(key):
        raise InvalidInput(
            f"blob keys are 1-{_MAX_KEY} characters of '/'-separated names of letters, "
            f"digits, '_', '.' and '-' not starting with '.', got {key!r}"
        )
    return key


@runtime_checkable
class BlobStore(Protocol):
    """Named byte strings, safe for concurrent use by threads and processes.

    Contract: ``put`` replaces the value atomically (a reader sees the old or
    the new bytes, never a part); ``get`` of a missing key raises
    :class:`BlobNotFound`; ``delete`` of a missing key does nothing;
    ``keys(prefix)`` lists stored keys starting with ``prefix``, sorted;
    ``locate`` only describes a key (it need not exist).
    Invalid keys raise :class:`rag.errors.InvalidInput`.
    """

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key`` (BlobNotFound if none)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    def exists(self, key: str) -> bool:
        """True when bytes are stored under ``key``."""
        ...

    def keys(self, prefix: str = "") -> list[str]:
        """Stored keys starting with ``prefix``, sorted."""
        ...

    def locate(self, key: str) -> str:
        """Where ``key``'s bytes live, for people and job rows (a file path or a table row)."""
        ...


class LocalBlobStore:
    """Blobs as files below ``directory`` (one host), written atomically.

    Args:
        directory: The root folder (created when missing); key ``a/b`` is ``directory/a/b``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist)."""
        return self.directory / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` (temp file, fsync, rename)."""
        atomic_write_bytes(self.path(key), data)

    def get(self, key: str) -> bytes:
        """The bytes under ``key``."""
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no bytes are stored under {key!r}") from exc

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        try:
            self.path(key).unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            pass

    def exists(self, key: str) -> bool:
        """True when ``key``'s file exists."""
        return self.path(key).is_file()

    def keys(self, prefix: str = "") -> list[str]:
        """Stored keys starting with ``prefix`` (temp files of unfinished writes excluded)."""
        found = []
        for path in self.directory.rglob("*"):
            if not path.is_file():
                continue
            key = path.relative_to(self.directory).as_posix()
            if key.startswith(prefix) and _KEY.fullmatch(key):
                found.append(key)
        return sorted(found)

    def locate(self, key: str) -> str:
        """The absolute path of ``key``'s file."""
        return str(self.path(key))


class SqlBlobStore:
    """Blobs as rows of the ``blobs`` table, readable by every replica of the database.

    Args:
        sessions: Session factory of the database (SQLite or PostgreSQL).
        create_table: Create ``blobs`` when missing (the ``0003_job_leases``
            migration creates it too).
    """

    def __init__(self, sessions: sessionmaker[Session], *, create_table: bool = True) -> None:
        self.sessions = sessions
        if create_table:
            with sessions() as session:
                BLOB_METADATA.create_all(session.get_bind(), checkfirst=True)

    def put(self, key: str, data: bytes) -> None:
        """Insert or replace ``key`` in one statement (no window without a value)."""
        check_key(key)
        with self.sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            elif dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
            else:  # pragma: no cover - the project supports these two
                raise InvalidInput(f"blobs in SQL need SQLite or PostgreSQL, got {dialect}")
            values = {"key": key, "data": bytes(data), "created_at": utcnow()}
            statement = insert(blobs_table).values(**values)
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=[blobs_table.c.key],
                    set_={
                        "data": statement.excluded.data,
                        "created_at": statement.excluded.created_at,
                    },
                )
            )

    def get(self, key: str) -> bytes:
        """The bytes under ``key``."""
        check_key(key)
        with self.sessions() as session:
            data = session.scalar(select(blobs_table.c.data).where(blobs_table.c.key == key))
        if data is None:
            raise BlobNotFound(f"no bytes are stored under {key!r}")
        return bytes(data)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        check_key(key)
        with self.sessions.begin() as session:
            session.execute(delete(blobs_table).where(blobs_table.c.key == key))

    def exists(self, key: str) -> bool:
        """True when a row holds ``key``."""
        check_key(key)
        with self.sessions() as session:
            found = session.scalar(select(blobs_table.c.key).where(blobs_table.c.key == key))
        return found is not None

    def keys(self, prefix: str = "") -> list[str]:
        """Stored keys starting with ``prefix``, sorted."""
        query = select(blobs_table.c.key)
        if prefix:
            # autoescape: '_' (in our ids) is a LIKE wildcard otherwise.
            query = query.where(blobs_table.c.key.startswith(prefix, autoescape=True))
        with self.sessions() as session:
            # Sorted here: PostgreSQL's collation may order '/' and '_' differently.
            return sorted(session.scalars(query))

    def locate(self, key: str) -> str:
        """``sql:blobs/<key>``: the row of the ``blobs`` table."""
        return f"sql:blobs/{check_key(key)}"


class PrefixedBlobStore:
    """The keys of ``inner`` that start with ``prefix``, seen without it.

    Lets one store hold several kinds of bytes (``uploads/``, ``files/``)
    while each user names its keys plainly (a job id, a document id).

    Args:
        inner: The store holding the bytes.
        prefix: Prepended to every key, e.g. ``"uploads/"`` (must end with ``/``).
    """

    def __init__(self, inner: BlobStore, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise InvalidInput(f"a blob key prefix ends with '/', got {prefix!r}")
        check_key(prefix.removesuffix("/"))
        self.inner = inner
        self.prefix = prefix

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``prefix + key``."""
        self.inner.put(self.prefix + key, data)

    def get(self, key: str) -> bytes:
        """The bytes under ``prefix + key``."""
        return self.inner.get(self.prefix + key)

    def delete(self, key: str) -> None:
        """Remove ``prefix + key`` if present."""
        self.inner.delete(self.prefix + key)

    def exists(self, key: str) -> bool:
        """True when ``prefix + key`` is stored."""
        return self.inner.exists(self.prefix + key)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys below ``self.prefix`` starting with ``prefix``, without ``self.prefix``."""
        return [k.removeprefix(self.prefix) for k in self.inner.keys(self.prefix + prefix)]

    def locate(self, key: str) -> str:
        """Where ``prefix + key`` lives in ``inner``."""
        return self.inner.locate(self.prefix + key)


def make_blob_stores(
    engine: Engine, sessions: sessionmaker[Session], data_dir: Path
) -> tuple[BlobStore, BlobStore]:
    """The stores of a knowledge base: (document originals, upload bytes).

    On PostgreSQL replicas may run on several hosts, so both live in the
    ``blobs`` table (prefixes ``files/`` and ``uploads/``); otherwise they are
    the files ``data_dir/files/<doc_id>`` and ``data_dir/uploads/<job_id>``.
    """
    if engine.dialect.name == "postgresql":
        table = SqlBlobStore(sessions)
        return PrefixedBlobStore(table, "files/"), PrefixedBlobStore(table, "uploads/")
    return LocalBlobStore(data_dir / "files"), LocalBlobStore(data_dir / "uploads")


__all__ = [
    "BLOB_METADATA",
    "BlobNotFound",
    "BlobStore",
    "LocalBlobStore",
    "PrefixedBlobStore",
    "SqlBlobStore",
    "blobs_table",
    "check_key",
    "make_blob_stores",
]
