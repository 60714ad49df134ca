"""Copy a knowledge base into another database without re-embedding (``rag migrate``).

Every row the application owns is copied with its id: collections,
documents, chunks (with their text and float32 vector bytes), finished
ingest jobs, chat sessions and messages. The index journal is not: the
target's search store is built from the chunk rows through its own
:class:`~rag.protocols.SearchStore` (``stage_add`` per batch), so the same
code fills pgvector and BM25 tables on PostgreSQL or FAISS and BM25 files on
SQLite. Document originals go from the source's blob store to the target's
(the ``blobs`` table on PostgreSQL, which every replica reads).

Rows are streamed in batches (``batch_rows``), and the whole copy is one
transaction on the target: a failure or a kill leaves it empty, and the
copy can simply be run again. That is cheap enough: 100k chunks (384-d) went
from SQLite into PostgreSQL in 106-110 s on a busy 2-core host, most of it
the BM25 postings, with this process under 500 MB (the rows wait in
PostgreSQL; only a file store's after-commit steps keep their batches until
the commit). Building the HNSW graph afterwards took another 292 s.
Originals are written before that transaction, by idempotent ``put`` calls,
so a re-run after a failure overwrites them.

After the commit the store's due work is done at once: the file store saves
its index files, the Postgres store builds the HNSW graphs of collections
past its threshold (``checkpoint``: once per collection, over all its rows,
outside the copy's transaction), so the target answers at full speed when
the command returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import URL, Connection, Table, func, insert, make_url, select, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session

from rag.blobs import BlobNotFound, BlobStore, PrefixedBlobStore, SqlBlobStore, blobs_table
from rag.db.migrate import display_url
from rag.db.models import (
    Base,
    ChatMessage,
    ChatSession,
    ChunkRow,
    Collection,
    Document,
    DocumentStatus,
    IndexJournal,
    IngestJob,
    JobStatus,
)
from rag.errors import ConfigError, Conflict, InvalidInput, RagError
from rag.faults import kill_point
from rag.knowledge_base import KnowledgeBase
from rag.protocols import AfterCommit
from rag.records import CollectionCheck
from rag.settings import Settings

log = logging.getLogger(__name__)

# In foreign-key order: a row's parents are copied before it.
COPIED_TABLES: tuple[Table, ...] = (
    Collection.__table__,  # type: ignore[assignment]
    Document.__table__,  # type: ignore[assignment]
    ChunkRow.__table__,  # type: ignore[assignment]
    IngestJob.__table__,  # type: ignore[assignment]
    ChatSession.__table__,  # type: ignore[assignment]
    ChatMessage.__table__,  # type: ignore[assignment]
)
# Not copied: the journal of the source's file store (the target's store is built
# from the chunk rows instead).
SKIPPED_TABLES: frozenset[str] = frozenset({IndexJournal.__tablename__})
# Tables with integer ids drawn from a sequence, continued after the copied ids.
_SEQUENCED = ("collections", "chunks", "chat_messages")
_FINISHED_JOBS = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value)
_UNFINISHED_DOCUMENTS = (DocumentStatus.PENDING.value, DocumentStatus.PROCESSING.value)
_DEFAULT_BATCH_ROWS = 2000


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_knowledge_base` copied.

    Attributes:
        collections, documents, chunks, ingest_jobs, chat_sessions, chat_messages:
            Rows copied per table (ingest jobs: finished ones only).
        indexed_chunks: Chunks staged into the target's search store (those of
            ready documents).
        originals: Document originals copied (to each of the given blob stores).
        missing_originals: Documents whose original the source does not hold.
        indexes_built: Indexes the target's store built after the commit (its
            ``checkpoint``: HNSW graphs on PostgreSQL).
        index_seconds: Time of that step (and of saving a file store's indexes).
        seconds: Wall time of the whole copy, that step included.
    """

    collections: int
    documents: int
    chunks: int
    ingest_jobs: int
    chat_sessions: int
    chat_messages: int
    indexed_chunks: int
    originals: int
    missing_originals: tuple[str, ...] = ()
    indexes_built: int = 0
    index_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (missing originals truncated to 20)."""
        data = asdict(self)
        data["missing_originals"] = list(self.missing_originals)[:20]
        return data


@dataclass(frozen=True)
class CopyCheck:
    """Both knowledge bases' consistency checks after a copy, and how they compare.

    Attributes:
        source, target: :meth:`KnowledgeBase.check` of each.
        differences: Per collection, what the target holds differently from the
            source (missing collection, other document or chunk counts).
    """

    source: tuple[CollectionCheck, ...]
    target: tuple[CollectionCheck, ...]
    differences: tuple[str, ...] = field(default=())

    @property
    def consistent(self) -> bool:
        """Both are consistent and the target holds what the source does."""
        return (
            all(c.consistent for c in self.source)
            and all(c.consistent for c in self.target)
            and not self.differences
        )


def open_knowledge_base(settings: Settings, role: str) -> KnowledgeBase:
    """Open (and recover) the knowledge base of ``settings`` for a copy.

    Args:
        settings: Its settings (database URL, data folder, index settings).
        role: "source" or "target", for the error message.

    Raises:
        ConfigError: The database cannot be reached (wrong URL, server down,
            no such database, refused login).
    """
    url = display_url(settings.resolved_database_url)
    try:
        kb = KnowledgeBase(settings)
    except DBAPIError as exc:
        raise ConfigError(
            f"cannot reach the {role} database {url}: {_first_line(exc.orig)}; check the URL, "
            "that the server is running and that the database exists (CREATE DATABASE ...)"
        ) from exc
    try:
        kb.recover()
    except BaseException:
        kb.close()
        raise
    return kb


def check_distinct_databases(source_url: str | URL, target_url: str | URL) -> None:
    """Refuse a target that is the source's database (before opening it).

    Raises:
        InvalidInput: Both URLs name one database (SQLite files by resolved path).
    """
    if _same_database(source_url, target_url):
        raise InvalidInput(
            f"the target database is the source database ({display_url(target_url)}); "
            "give --to an empty database of its own"
        )


def check_copy_allowed(source: KnowledgeBase, target: KnowledgeBase) -> None:
    """Refuse a copy that would mix data or copy a moving source.

    Raises:
        InvalidInput: The target is the source's database, or the target keeps
            its index files in the source's index folder.
        Conflict: The target already holds rows, or the source has ingestion
            in progress.
    """
    check_distinct_databases(source.engine.url, target.engine.url)
    if target.store.name == "files" and _same_path(source.index_dir, target.index_dir):
        raise InvalidInput(
            f"the target's index files would go to the source's folder {source.index_dir}; "
            "give the target its own data folder (--to-data-dir)"
        )
    held = _row_counts(target)
    if any(held.values()):
        what = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in held.items() if n)
        raise Conflict(
            f"target database {display_url(target.engine.url)} already holds {what}; use an "
            "empty database (drop and recreate it, then run again)",
            details={"target_rows": held},
        )
    with source.sessions() as session:
        live_jobs = int(
            session.scalar(
                select(func.count())
                .select_from(IngestJob)
                .where(IngestJob.status.not_in(_FINISHED_JOBS))
            )
            or 0
        )
        unfinished = int(
            session.scalar(
                select(func.count())
                .select_from(Document)
                .where(Document.status.in_(_UNFINISHED_DOCUMENTS))
            )
            or 0
        )
    if live_jobs or unfinished:
        raise Conflict(
            f"the source has {live_jobs} ingest jobs queued or running and {unfinished} documents "
            "being ingested; let them finish (or stop the server and run `rag doctor --repair`), "
            "then run the copy again",
            details={"live_jobs": live_jobs, "unfinished_documents": unfinished},
        )


def copy_knowledge_base(
    source: KnowledgeBase,
    target: KnowledgeBase,
    *,
    originals: Sequence[BlobStore] | None = None,
    batch_rows: int = _DEFAULT_BATCH_ROWS,
) -> CopyReport:
    """Copy every row of ``source`` into the empty ``target`` and build its search indexes.

    Vectors are copied as stored (no re-embedding) and ids are kept; the
    target's id sequences continue after the source's. Call
    :func:`check_copy_allowed` first. An embedded source's writer lock is
    held for the whole copy, so no document is added or removed meanwhile (a
    server's commits wait); a PostgreSQL source is read in one snapshot
    (``REPEATABLE READ``), so replicas keep writing and the copy holds the
    rows as they were when it began. After the commit the target's store
    saves and builds what is due (``flush``, then ``checkpoint``).

    Args:
        source: The knowledge base to read (opened and recovered).
        target: The empty knowledge base to fill (opened and recovered).
        originals: Where to put document originals (by document id); default
            the target's own store (``target.originals``: the ``blobs`` table on
            PostgreSQL, ``data_dir/files`` otherwise); empty: leave them.
        batch_rows: Rows read, inserted and staged at a time (memory bound).

    Returns:
        What was copied and how long it took.

    Raises:
        InvalidInput: ``batch_rows`` is below 1.
        RagError: The copy failed; the target holds nothing of it (one transaction).
    """
    if batch_rows < 1:
        raise InvalidInput(f"batch_rows must be >= 1, got {batch_rows}")
    started = time.perf_counter()
    if originals is None:
        originals = [target.originals]
    with source.writer_lock.hold(), _reading_snapshot(source) as reading:
        copied, missing = _copy_originals(source, reading, originals)
        counts, indexed = _copy_rows(target, reading, batch_rows)
    copied_at = time.perf_counter()
    target.flush()
    kill_point("migrate.flushed")
    built = target.checkpoint()
    report = CopyReport(
        collections=counts["collections"],
        documents=counts["documents"],
        chunks=counts["chunks"],
        ingest_jobs=counts["ingest_jobs"],
        chat_sessions=counts["chat_sessions"],
        chat_messages=counts["chat_messages"],
        indexed_chunks=indexed,
        originals=copied,
        missing_originals=tuple(missing),
        indexes_built=built,
        index_seconds=round(time.perf_counter() - copied_at, 3),
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info(
        "knowledge base copied target=%s collections=%d documents=%d chunks=%d seconds=%.1f",
        display_url(target.engine.url),
        report.collections,
        report.documents,
        report.chunks,
        report.seconds,
    )
    return report


def check_copy(source: KnowledgeBase, target: KnowledgeBase) -> CopyCheck:
    """Run both consistency checks and compare the collections' sizes."""
    by_name = {info.name: info for info in target.list_collections()}
    differences = []
    for info in source.list_collections():
        other = by_name.pop(info.name, None)
        if other is None:
            differences.append(f"collection {info.name!r} is missing from the target")
        elif (other.documents, other.chunks) != (info.documents, info.chunks):
            differences.append(
                f"collection {info.name!r}: source {info.documents} documents / {info.chunks} "
                f"chunks, target {other.documents} / {other.chunks}"
            )
    differences += [f"collection {name!r} is only in the target" for name in sorted(by_name)]
    return CopyCheck(tuple(source.check()), tuple(target.check()), tuple(differences))


# ---------------------------------------------------------------------- plumbing
@contextmanager
def _reading_snapshot(source: KnowledgeBase) -> Iterator[Connection]:
    """A connection that reads the source as of one moment.

    PostgreSQL: one ``REPEATABLE READ`` read-only transaction, since other
    replicas write without the local writer lock (under READ COMMITTED each
    statement would see a newer state: chunks of a document not copied, a
    deleted document's rows half gone). SQLite: the writer lock the caller
    holds keeps writers out.
    """
    with source.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        yield connection


def _copy_rows(
    target: KnowledgeBase, reading: Connection, batch_rows: int
) -> tuple[dict[str, int], int]:
    """Every table in one target transaction; the store's after-commit steps after it."""
    counts: dict[str, int] = {}
    try:
        with target.sessions.begin() as session:
            for table in COPIED_TABLES:
                if table.name == ChunkRow.__tablename__:
                    counts[table.name], indexed, after_commit = _copy_chunks(
                        target, reading, session, batch_rows
                    )
                else:
                    counts[table.name] = _copy_table(reading, session, table, batch_rows)
                if table.name == Collection.__tablename__:
                    for (collection_id,) in reading.execute(select(table.c.id)):
                        target.store.stage_create(session, int(collection_id))
            _continue_sequences(reading, session)
    except DBAPIError as exc:
        raise RagError(
            f"copying into {display_url(target.engine.url)} failed: {_first_line(exc.orig)}; "
            "nothing was committed, so run the copy again once the cause is fixed"
        ) from exc
    kill_point("migrate.sql_done")
    for collection_id, step in after_commit:
        with target.store.writing(collection_id):
            step()
    return counts, indexed


def _copy_chunks(
    target: KnowledgeBase, reading: Connection, session: Session, batch_rows: int
) -> tuple[int, int, list[tuple[int, AfterCommit]]]:
    """Each collection's chunks, each batch staged in the target's store.

    Returns the chunks copied, those staged (of ready documents: what the
    consistency check expects indexed) and the store's after-commit steps.
    """
    chunks: Table = ChunkRow.__table__  # type: ignore[assignment]
    documents: Table = Document.__table__  # type: ignore[assignment]
    collections: Table = Collection.__table__  # type: ignore[assignment]
    searchable = set(
        reading.scalars(
            select(documents.c.id).where(documents.c.status == DocumentStatus.READY.value)
        )
    )
    copied = indexed = 0
    steps: list[tuple[int, AfterCommit]] = []
    for collection_id in reading.scalars(select(collections.c.id).order_by(collections.c.id)).all():
        query = select(chunks).where(chunks.c.collection_id == collection_id).order_by(chunks.c.id)
        # Staged with the collection's writer lock held; its after-commit step
        # takes the lock again (the target is new: nobody else writes it).
        with target.store.writing(collection_id):
            for rows in _batches(reading, query, batch_rows):
                session.execute(insert(chunks), rows)
                copied += len(rows)
                ready = [r for r in rows if r["document_id"] in searchable]
                if ready:
                    ids = np.fromiter((r["id"] for r in ready), dtype=np.int64, count=len(ready))
                    step = target.store.stage_add(
                        session,
                        collection_id,
                        ids,
                        _vector_matrix(collection_id, ready),
                        [r["text"] for r in ready],
                    )
                    steps.append((collection_id, step))
                    indexed += len(ready)
                kill_point("migrate.batch")
        log.info("chunks copied collection_id=%d total=%d", collection_id, copied)
    return copied, indexed, steps


def _copy_table(reading: Connection, session: Session, table: Table, batch_rows: int) -> int:
    """Insert ``table``'s source rows (finished ingest jobs only) into the target session."""
    query = select(table).order_by(*table.primary_key.columns)
    if table.name == IngestJob.__tablename__:
        query = query.where(table.c.status.in_(_FINISHED_JOBS))
    copied = 0
    for rows in _batches(reading, query, batch_rows):
        session.execute(insert(table), rows)
        copied += len(rows)
    return copied


def _batches(reading: Connection, query: Any, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    """The query's rows as dicts, ``batch_rows`` at a time (server-side cursor where possible)."""
    result = reading.execution_options(yield_per=batch_rows).execute(query)
    for partition in result.mappings().partitions(batch_rows):
        yield [_portable(row) for row in partition]


def _portable(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row that any database reads the same: naive datetimes (SQLite's) marked UTC.

    Every timestamp is written as UTC (``rag.db.models.utcnow``); SQLite
    hands it back without its zone, which PostgreSQL would read as the
    server's local time.
    """
    return {
        str(key): value.replace(tzinfo=UTC)
        if isinstance(value, datetime) and value.tzinfo is None
        else value
        for key, value in row.items()
    }


def _vector_matrix(collection_id: int, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The rows' float32 vectors as one matrix.

    Raises:
        RagError: The collection's chunks hold vectors of different sizes.
    """
    sizes = {len(r["embedding"]) for r in rows}
    if len(sizes) != 1:
        raise RagError(
            f"collection id {collection_id} holds vectors of several sizes "
            f"({sorted(s // 4 for s in sizes)}); run `rag collections reembed` on the source first"
        )
    buffer = b"".join(bytes(r["embedding"]) for r in rows)
    return np.frombuffer(buffer, dtype=np.float32).reshape(len(rows), -1)


def _continue_sequences(reading: Connection, session: Session) -> None:
    """Make the target's next ids follow the source's highest ever given.

    PostgreSQL's sequences are set with ``setval`` (inserting explicit ids
    does not advance them). SQLite's ``AUTOINCREMENT`` counter advances by
    itself but is raised to the source's, so ids of deleted chunks stay unused.
    """
    dialect = session.get_bind().dialect.name
    for name in _SEQUENCED:
        high = _high_water(reading, name)
        if dialect == "postgresql":
            if high:
                session.execute(
                    text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, true)"),
                    {"t": name, "v": high},
                )
            else:
                session.execute(
                    text("SELECT setval(pg_get_serial_sequence(:t, 'id'), 1, false)"), {"t": name}
                )
        elif dialect == "sqlite" and high and _sqlite_autoincrement(session, name):
            # No counter row yet when the source's table is empty (all its rows deleted).
            if _sqlite_counts(session, name):
                session.execute(
                    text("UPDATE sqlite_sequence SET seq = max(seq, :v) WHERE name = :t"),
                    {"t": name, "v": high},
                )
            else:
                session.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"),
                    {"t": name, "v": high},
                )


def _high_water(reading: Connection, table: str) -> int:
    """The highest id the source ever gave in ``table``.

    Not only the highest held: ids of deleted rows (the last document's
    chunks) count too, from SQLite's AUTOINCREMENT counter or PostgreSQL's
    sequence, so the target never gives them to new rows.
    """
    highest = int(reading.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one())
    if reading.dialect.name == "postgresql":
        # NULL until the sequence gives its first value.
        last = reading.execute(
            text("SELECT pg_sequence_last_value(pg_get_serial_sequence(:t, 'id')::regclass)"),
            {"t": table},
        ).scalar()
        highest = max(highest, int(last or 0))
    elif reading.dialect.name == "sqlite" and _sqlite_counts(reading, table):
        counter = reading.execute(
            text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
        ).scalar()
        highest = max(highest, int(counter or 0))
    return highest


def _sqlite_autoincrement(session: Session, table: str) -> bool:
    """Whether ``table`` is declared AUTOINCREMENT (SQLite then never reuses its ids)."""
    sql = session.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table}
    ).scalar()
    return "AUTOINCREMENT" in str(sql or "").upper()


def _sqlite_counts(connection: Connection | Session, table: str) -> bool:
    """Whether SQLite keeps an AUTOINCREMENT counter for ``table``."""
    exists = connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'")
    ).scalar()
    if not exists:
        return False
    return (
        connection.execute(
            text("SELECT 1 FROM sqlite_sequence WHERE name = :t"), {"t": table}
        ).scalar()
        is not None
    )


def _copy_originals(
    source: KnowledgeBase, reading: Connection, stores: Sequence[BlobStore]
) -> tuple[int, list[str]]:
    """Put each document's original bytes into every store; returns (copied, missing ids).

    The documents are those of ``reading``'s snapshot, the rows copied next.
    """
    if not stores:
        return 0, []
    documents: Table = Document.__table__  # type: ignore[assignment]
    doc_ids = list(reading.scalars(select(documents.c.id).order_by(documents.c.id)))
    copied, missing = 0, []
    for doc_id in doc_ids:
        try:
            data = _original(source, reading, doc_id)
        except BlobNotFound:
            missing.append(doc_id)
            continue
        for store in stores:
            store.put(doc_id, data)
        copied += 1
        kill_point("migrate.originals")
    if missing:
        log.warning("originals missing in source documents=%d first=%s", len(missing), missing[0])
    return copied, missing


def _original(source: KnowledgeBase, reading: Connection, doc_id: str) -> bytes:
    """A document's original; from the snapshot when the source keeps them in ``blobs``.

    Raises:
        BlobNotFound: The source holds no original for it.
    """
    store = source.originals
    if isinstance(store, PrefixedBlobStore) and isinstance(store.inner, SqlBlobStore):
        data = reading.scalar(
            select(blobs_table.c.data).where(blobs_table.c.key == store.prefix + doc_id)
        )
        if data is None:
            raise BlobNotFound(f"no original for document {doc_id} in the blobs table")
        return bytes(data)
    return store.get(doc_id)


def _row_counts(kb: KnowledgeBase) -> dict[str, int]:
    """Rows the knowledge base holds per copied table."""
    with kb.sessions() as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in COPIED_TABLES
        }


def _same_database(a: str | URL, b: str | URL) -> bool:
    """Whether two URLs name one database (SQLite files compared by resolved path).

    Raises:
        InvalidInput: Either is not a database URL.
    """
    try:
        first, second = make_url(a), make_url(b)
    except ArgumentError as exc:
        raise InvalidInput(
            f"not a database URL: {exc}; give one like postgresql+psycopg://user:password@host/db"
        ) from exc
    if first.get_backend_name() == second.get_backend_name() == "sqlite":
        return _same_path(Path(first.database or ""), Path(second.database or ""))
    return first.set(drivername=first.get_backend_name()).render_as_string(
        hide_password=True
    ) == second.set(drivername=second.get_backend_name()).render_as_string(hide_password=True)


def _same_path(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def application_tables() -> set[str]:
    """Every table of the models: each must be copied or knowingly skipped (a test checks)."""
    return set(Base.metadata.tables)


__all__ = [
    "COPIED_TABLES",
    "SKIPPED_TABLES",
    "CopyCheck",
    "CopyReport",
    "application_tables",
    "check_copy",
    "check_copy_allowed",
    "check_distinct_databases",
    "copy_knowledge_base",
    "open_knowledge_base",
]
