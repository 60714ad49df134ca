"""The knowledge base: SQL rows, FAISS vectors and BM25 terms kept in agreement.

There is one write path. A document's chunks, its ``ready`` status and a
journal entry are committed in one SQL transaction; only then are the
in-memory indexes changed and written to disk (atomically, each file named
by the last journal sequence number it holds). On open, journal entries newer
than an index file are replayed, so after a crash at any point the next start
sees either the whole document or none of it. :meth:`KnowledgeBase.check`
verifies the invariant and :meth:`KnowledgeBase.repair` restores it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from rag.db.engine import make_engine, make_session_factory
from rag.db.models import (
    ChunkRow,
    Collection,
    Document,
    DocumentStatus,
    IndexJournal,
    IngestJob,
    JobStatus,
)
from rag.errors import (
    CollectionNotFound,
    Conflict,
    DocumentNotFound,
    DuplicateDocument,
    EmbeddingMismatch,
    InvalidInput,
)
from rag.faults import kill_point
from rag.index.atomic import atomic_write_bytes
from rag.index.bm25 import BM25Index
from rag.index.faiss_index import FaissVectorIndex
from rag.locks import ProcessLock, ReadWriteLock
from rag.protocols import Embedder
from rag.records import ChunkInfo, CollectionCheck, CollectionInfo, DocumentInfo
from rag.settings import IndexSettings, Settings
from rag.types import Chunk, ScoredId

log = logging.getLogger(__name__)

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_INDEX_FILE = re.compile(r"^(vectors|bm25)\.(\d+)\.(faiss|npz)$")


_LIVE_JOB = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_UNFINISHED = (DocumentStatus.PROCESSING.value, DocumentStatus.PENDING.value)


def job_resume_blocker(session: Session, job: IngestJob) -> str | None:
    """Why an unfinished ingest job cannot be resumed by the server (None when it can).

    The one rule shared by the server's start-up recovery and every check that
    decides a document is stuck, so they never disagree: a job resumes when its
    uploaded bytes are still on disk, its document exists, and it needs no
    password (passwords are never stored).
    """
    if not job.upload_path or not Path(job.upload_path).is_file():
        return "ingestion was interrupted and the uploaded bytes are gone; upload it again"
    if job.document_id is None or session.get(Document, job.document_id) is None:
        return "ingestion was interrupted and its document was deleted; upload the file again"
    if (job.options or {}).get("has_password"):
        return (
            "ingestion was interrupted; passwords are not kept across restarts, so upload "
            "the file again with its password"
        )
    return None


def _resumable_documents(session: Session) -> set[str]:
    """Ids of unfinished documents whose ingest job the server will resume."""
    jobs = session.scalars(
        select(IngestJob).where(IngestJob.status.in_(_LIVE_JOB), IngestJob.document_id.is_not(None))
    ).all()
    return {
        job.document_id
        for job in jobs
        if job.document_id is not None and job_resume_blocker(session, job) is None
    }


def validate_collection_name(name: str) -> str:
    """Collection names are used in URLs and model names: letters, digits, _ . -."""
    if not _COLLECTION_NAME.fullmatch(name or ""):
        raise InvalidInput(
            f"collection name must be 1-128 letters, digits, '_', '.' or '-' and start with a "
            f"letter or digit, got {name!r}"
        )
    return name


def check_embedding_model(collection: str, recorded: str, model: str) -> None:
    """Refuse vectors of ``model`` for a collection whose vectors are ``recorded``'s.

    An empty ``recorded`` (no vectors yet, or a database from before models
    were recorded) or an empty ``model`` (a caller that does not say) accepts.

    Raises:
        EmbeddingMismatch: The two models differ.
    """
    if recorded and model and recorded != model:
        raise EmbeddingMismatch(
            f"collection {collection!r} holds vectors of embedding model {recorded!r}, but this "
            f"process embeds with {model!r}: set RAG_EMBEDDING__MODEL={recorded} to add to it, or "
            f"run `rag collections reembed {collection} --model {model}` first",
            details={"collection": collection, "collection_model": recorded, "model": model},
        )


ReembedProgress = Callable[[int, int], None]
"""Called with (chunks embedded, chunks in all) while a collection is re-embedded."""


@dataclass
class CollectionIndexes:
    """The in-memory indexes of one collection and the locks that guard them."""

    collection_id: int
    directory: Path
    vectors: FaissVectorIndex | None
    sparse: BM25Index
    vectors_seq: int = 0
    sparse_seq: int = 0
    pending_seq: int = 0  # newest journal entry applied in memory but not yet saved
    unsaved_writes: int = 0
    unsaved_since: float = 0.0  # monotonic time of the oldest unsaved write
    rw: ReadWriteLock = field(default_factory=ReadWriteLock)
    writer: threading.Lock = field(default_factory=threading.Lock)


def _document_info(doc: Document, collection_name: str) -> DocumentInfo:
    return DocumentInfo(
        id=doc.id,
        collection=collection_name,
        filename=doc.filename,
        media_type=doc.media_type,
        size_bytes=doc.size_bytes,
        sha256=doc.sha256,
        pages=doc.page_count,
        chunks=doc.chunk_count,
        status=doc.status,
        error=doc.error,
        version=doc.version,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )


def _chunk_info(row: ChunkRow) -> ChunkInfo:
    return ChunkInfo(
        id=row.id,
        document_id=row.document_id,
        collection_id=row.collection_id,
        ordinal=row.ordinal,
        text=row.text,
        page_start=row.page_start,
        page_end=row.page_end,
        char_start=row.char_start,
        char_end=row.char_end,
        token_count=row.token_count,
        page_breaks=tuple(tuple(b) for b in (row.page_breaks or ())),  # type: ignore[misc]
        ocr_confidence=row.ocr_confidence,
    )


class KnowledgeBase:
    """Collections, documents and chunks in SQL plus per-collection FAISS and BM25.

    Args:
        settings: All settings (data_dir, database_url and index settings are used).
        embedding_model: Name recorded on new collections.
        autoflush: Save index files at checkpoints (every ``checkpoint_entries``
            writes or ``checkpoint_seconds``). Bulk loads turn it off and call
            :meth:`flush` once. Either way the SQL journal covers unsaved changes.
    """

    def __init__(
        self, settings: Settings, embedding_model: str = "", *, autoflush: bool = True
    ) -> None:
        self.settings = settings
        self.autoflush = autoflush
        self.index_settings: IndexSettings = settings.index
        self.embedding_model = embedding_model
        self.data_dir = settings.data_dir
        self.files_dir = self.data_dir / "files"
        self.index_dir = self.data_dir / "indexes"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.resolved_database_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self._indexes: dict[int, CollectionIndexes] = {}
        self._indexes_lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self.writer_lock = ProcessLock(self.data_dir / "writer.lock")
        self.ingest_lock = ProcessLock(self.data_dir / "ingest.lock")

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Save unsaved index changes and release the database engine."""
        self.flush()
        self.engine.dispose()

    def recover(self) -> list[str]:
        """Start-up recovery: replay the journal into every collection's indexes.

        Also marks documents left ``processing`` or ``pending`` by a dead process
        as failed (their chunks were never committed). Returns their ids.
        """
        for info in self.list_collections():
            self._collection_indexes(info.id)
        return self.fail_interrupted_documents()

    def fail_interrupted_documents(self, exclude: Iterable[str] = ()) -> list[str]:
        """Mark documents stuck in processing/pending as failed; returns their ids.

        A document whose ingest job the server will resume (see
        :func:`job_resume_blocker`) is not stuck and stays as it is, so a
        ``rag doctor`` or ``rag ingest`` between a crash and the server's
        restart never fails what the restart would finish. Does nothing while
        another process is ingesting (it holds ``ingest.lock``).
        """
        if not self.ingest_lock.try_exclusive():
            log.info("another process is ingesting; not failing processing documents")
            return []
        try:
            return self._fail_stuck(set(exclude))
        finally:
            self.ingest_lock.release()

    def _fail_stuck(self, skip: set[str]) -> list[str]:
        with self.sessions.begin() as session:
            rows = session.scalars(select(Document).where(Document.status.in_(_UNFINISHED))).all()
            skip = skip | _resumable_documents(session) if rows else skip
            stuck = [row for row in rows if row.id not in skip]
            for row in stuck:
                row.status = DocumentStatus.FAILED.value
                row.error = "ingestion was interrupted (process stopped); upload the file again"
            return [row.id for row in stuck]

    # ---------------------------------------------------------------- collections
    def create_collection(self, name: str, *, exist_ok: bool = False) -> CollectionInfo:
        """Create a collection (Conflict if it exists, unless ``exist_ok``).

        It records this knowledge base's embedding model; the vector size is
        recorded with its first document.
        """
        validate_collection_name(name)
        try:
            with self.sessions.begin() as session:
                existing = session.scalar(select(Collection).where(Collection.name == name))
                if existing is not None:
                    if not exist_ok:
                        raise Conflict(f"collection {name!r} already exists")
                else:
                    row = Collection(name=name, embedding_model=self.embedding_model)
                    session.add(row)
                    session.flush()
                    self._discard_stale_index_files(row.id)
        except IntegrityError as exc:
            # Another thread or process created it between our check and our insert.
            if not exist_ok:
                raise Conflict(f"collection {name!r} already exists") from exc
        return self.get_collection(name)

    def _discard_stale_index_files(self, collection_id: int) -> None:
        """Remove index files a new collection's id may inherit.

        SQLite reuses the id of a deleted collection; a process killed after
        deleting its rows but before its files leaves those files behind.
        """
        with self._indexes_lock:
            self._indexes.pop(collection_id, None)
        directory = self.index_dir / f"c{collection_id}"
        if directory.exists():
            log.warning("removing stale index files collection_id=%d", collection_id)
            for path in directory.glob("*"):
                path.unlink(missing_ok=True)

    def get_collection(self, name: str) -> CollectionInfo:
        """One collection by name, with its sizes (CollectionNotFound if absent)."""
        ref = self._collection_ref(name)
        with self.sessions() as session:
            documents = session.scalar(
                select(func.count()).select_from(Document).where(Document.collection_id == ref.id)
            )
            chunks = session.scalar(
                select(func.count()).select_from(ChunkRow).where(ChunkRow.collection_id == ref.id)
            )
        return CollectionInfo(
            ref.id,
            ref.name,
            int(documents or 0),
            int(chunks or 0),
            ref.created_at,
            ref.embedding_model,
            ref.embedding_dim,
        )

    def _collection_ref(self, name: str) -> CollectionInfo:
        """Id, name and model of a collection without counting anything (the hot-path lookup)."""
        with self.sessions() as session:
            row = session.execute(
                select(
                    Collection.id,
                    Collection.name,
                    Collection.created_at,
                    Collection.embedding_model,
                    Collection.embedding_dim,
                ).where(Collection.name == name)
            ).first()
        if row is None:
            raise CollectionNotFound(
                f"no collection named {name!r}; list them with `rag collections list`"
            )
        return CollectionInfo(
            row.id, row.name, 0, 0, row.created_at, row.embedding_model, row.embedding_dim
        )

    def list_collections(self) -> list[CollectionInfo]:
        """All collections with document and chunk counts."""
        with self.sessions() as session:
            docs = dict(
                session.execute(
                    select(Document.collection_id, func.count()).group_by(Document.collection_id)
                ).all()
            )
            chunks = dict(
                session.execute(
                    select(ChunkRow.collection_id, func.count()).group_by(ChunkRow.collection_id)
                ).all()
            )
            rows = session.scalars(select(Collection).order_by(Collection.name)).all()
            return [
                CollectionInfo(
                    id=row.id,
                    name=row.name,
                    documents=int(docs.get(row.id, 0)),
                    chunks=int(chunks.get(row.id, 0)),
                    created_at=row.created_at,
                    embedding_model=row.embedding_model,
                    embedding_dim=row.embedding_dim,
                )
                for row in rows
            ]

    def delete_collection(self, name: str) -> int:
        """Delete a collection, its documents, chunks, files and index files.

        Returns the number of documents removed.
        """
        info = self.get_collection(name)
        indexes = self._collection_indexes(info.id)
        with indexes.writer, self.writer_lock.hold():
            with self.sessions.begin() as session:
                doc_ids = session.scalars(
                    select(Document.id).where(Document.collection_id == info.id)
                ).all()
                session.execute(delete(ChunkRow).where(ChunkRow.collection_id == info.id))
                session.execute(delete(Document).where(Document.collection_id == info.id))
                session.execute(delete(IndexJournal).where(IndexJournal.collection_id == info.id))
                session.execute(delete(Collection).where(Collection.id == info.id))
            kill_point("collection_delete.sql_done")
            with indexes.rw.write():
                with self._indexes_lock:
                    self._indexes.pop(info.id, None)
                for path in indexes.directory.glob("*"):
                    path.unlink(missing_ok=True)
                if indexes.directory.exists():
                    indexes.directory.rmdir()
        for doc_id in doc_ids:
            (self.files_dir / doc_id).unlink(missing_ok=True)
        log.info("collection deleted name=%s documents=%d", name, len(doc_ids))
        return len(doc_ids)

    # ------------------------------------------------------------------ documents
    def find_ready_by_sha(self, collection: str, sha256: str) -> DocumentInfo | None:
        """The ready document with these bytes in the collection, if any."""
        found = self.find_live_by_sha(collection, sha256)
        return found if found is not None and found.status == DocumentStatus.READY.value else None

    def find_live_by_sha(self, collection: str, sha256: str) -> DocumentInfo | None:
        """The document with these bytes that is ready or being ingested, if any."""
        info = self._collection_ref(collection)
        with self.sessions() as session:
            doc = session.scalar(
                select(Document).where(
                    Document.collection_id == info.id,
                    Document.sha256 == sha256,
                    Document.status != DocumentStatus.FAILED.value,
                )
            )
            return _document_info(doc, info.name) if doc else None

    def ready_versions(self, collection: str, filename: str) -> list[DocumentInfo]:
        """Ready documents of that file name in the collection, newest first."""
        info = self._collection_ref(collection)
        with self.sessions() as session:
            docs = session.scalars(
                select(Document)
                .where(
                    Document.collection_id == info.id,
                    Document.filename == filename,
                    Document.status == DocumentStatus.READY.value,
                )
                .order_by(Document.version.desc())
            ).all()
            return [_document_info(doc, info.name) for doc in docs]

    def begin_document(
        self,
        collection: str,
        filename: str,
        *,
        media_type: str,
        size_bytes: int,
        sha256: str,
        data: bytes | None = None,
        status: str = DocumentStatus.PROCESSING.value,
        extra_rows: Callable[[str], Iterable[object]] | None = None,
    ) -> DocumentInfo:
        """Create the document row (not searchable yet) and keep the original bytes.

        The row claims its bytes: a unique index allows one document per
        collection and sha256 that is not ``failed``, so of two concurrent
        uploads of the same bytes exactly one is created. ``extra_rows``, given
        the new document's id, returns rows inserted in the same transaction
        (the API's ingest job, so the claim and the job that finishes it
        appear together).

        Raises:
            DuplicateDocument: A live document already holds these bytes
                (``exc.existing`` is it).
        """
        info = self._collection_ref(collection)
        live = status != DocumentStatus.FAILED.value
        if live:
            # Before anything is parsed or embedded: the commit would refuse it anyway.
            check_embedding_model(info.name, info.embedding_model, self.embedding_model)
        existing = self.find_live_by_sha(collection, sha256) if live else None
        if existing is None:
            try:
                result = self._insert_document(
                    info, filename, media_type, size_bytes, sha256, status, extra_rows
                )
            except IntegrityError:
                # Another upload of the same bytes won the race between our check and insert.
                existing = self.find_live_by_sha(collection, sha256)
                if existing is None:
                    raise
        if existing is not None:
            raise DuplicateDocument(
                f"these bytes are already in collection {collection!r} as document "
                f"{existing.id} ({existing.status})",
                existing,
                details={"document_id": existing.id, "status": existing.status},
            )
        if data is not None:
            atomic_write_bytes(self.files_dir / result.id, data)
        kill_point("document.begun")
        return result

    def _insert_document(
        self,
        info: CollectionInfo,
        filename: str,
        media_type: str,
        size_bytes: int,
        sha256: str,
        status: str,
        extra_rows: Callable[[str], Iterable[object]] | None,
    ) -> DocumentInfo:
        with self.sessions.begin() as session:
            latest = session.scalar(
                select(func.max(Document.version)).where(
                    Document.collection_id == info.id, Document.filename == filename
                )
            )
            doc = Document(
                collection_id=info.id,
                filename=filename,
                media_type=media_type,
                size_bytes=size_bytes,
                sha256=sha256,
                status=status,
                version=(latest or 0) + 1,
            )
            session.add(doc)
            session.flush()
            if extra_rows is not None:
                session.add_all(list(extra_rows(doc.id)))
                session.flush()
            return _document_info(doc, info.name)

    def update_document(self, doc_id: str, **fields: object) -> None:
        """Set metadata fields of a document row (status, page_count, media_type...)."""
        try:
            with self.sessions.begin() as session:
                doc = session.get(Document, doc_id)
                if doc is None:
                    raise DocumentNotFound(f"no document with id {doc_id!r}")
                for key, value in fields.items():
                    setattr(doc, key, value)
        except StaleDataError as exc:  # deleted by another thread between read and write
            raise DocumentNotFound(f"document {doc_id!r} was deleted") from exc

    def fail_document(self, doc_id: str, error: str) -> None:
        """Mark a document failed with the reason; it holds no chunks."""
        self.update_document(doc_id, status=DocumentStatus.FAILED.value, error=error)

    def get_document(self, doc_id: str) -> DocumentInfo:
        """One document (DocumentNotFound if absent)."""
        with self.sessions() as session:
            # One query with the collection's name: a lazy load after the
            # collection was deleted by another thread would find nothing.
            row = session.execute(
                select(Document, Collection.name)
                .join(Collection, Document.collection_id == Collection.id)
                .where(Document.id == doc_id)
            ).first()
            if row is None:
                raise DocumentNotFound(
                    f"no document with id {doc_id!r}; list them with `rag docs list`"
                )
            return _document_info(row[0], row[1])

    def list_documents(
        self,
        collection: str | None = None,
        status: str | None = None,
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[list[DocumentInfo], int]:
        """Documents (newest first) and the total matching count."""
        with self.sessions() as session:
            query = select(Document, Collection.name).join(Collection)
            count = select(func.count()).select_from(Document).join(Collection)
            if collection is not None:
                self._collection_ref(collection)
                query = query.where(Collection.name == collection)
                count = count.where(Collection.name == collection)
            if status is not None:
                if status not in {s.value for s in DocumentStatus}:
                    raise InvalidInput(
                        f"status must be one of pending, processing, ready, failed, got {status!r}"
                    )
                query = query.where(Document.status == status)
                count = count.where(Document.status == status)
            query = query.order_by(Document.created_at.desc(), Document.id).offset(offset)
            if limit is not None:
                query = query.limit(limit)
            rows = session.execute(query).all()
            total = int(session.scalar(count) or 0)
            return [_document_info(doc, name) for doc, name in rows], total

    def document_file(self, doc_id: str) -> Path:
        """Path of the original bytes of a document."""
        self.get_document(doc_id)
        path = self.files_dir / doc_id
        if not path.exists():
            raise DocumentNotFound(f"the original file of document {doc_id!r} is not stored")
        return path

    def document_chunks(
        self, doc_id: str, *, offset: int = 0, limit: int | None = None
    ) -> list[ChunkInfo]:
        """A document's chunks in order."""
        self.get_document(doc_id)
        with self.sessions() as session:
            query = (
                select(ChunkRow)
                .where(ChunkRow.document_id == doc_id)
                .order_by(ChunkRow.ordinal)
                .offset(offset)
            )
            if limit is not None:
                query = query.limit(limit)
            return [_chunk_info(row) for row in session.scalars(query).all()]

    def commit_document(
        self,
        doc_id: str,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        *,
        page_count: int,
        replaces: Sequence[str] = (),
        media_type: str | None = None,
        embedding_model: str | None = None,
    ) -> DocumentInfo:
        """Make a document searchable: the one write path for additions.

        Chunks, status ``ready``, the removal of replaced versions and a journal
        entry are one SQL transaction; then the indexes are updated and saved.
        ``embedding_model`` (default: this knowledge base's) made ``vectors``;
        the collection's recorded model and vector size must match, and a
        collection without vectors yet records them.

        Raises:
            EmbeddingMismatch: The vectors come from another model or have another size.
        """
        if len(chunks) != len(vectors):
            raise InvalidInput(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            raise InvalidInput("a document needs at least one chunk to be searchable")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        doc = self.get_document(doc_id)
        collection = self._collection_ref(doc.collection)
        indexes = self._collection_indexes(collection.id)
        with indexes.writer, self.writer_lock.hold():
            try:
                seq, new_ids, removed_ids = self._commit_rows(
                    doc_id,
                    collection.id,
                    chunks,
                    vectors,
                    page_count,
                    replaces,
                    media_type,
                    self.embedding_model if embedding_model is None else embedding_model,
                )
            except (StaleDataError, IntegrityError) as exc:
                # The row went away between our read and the write (a concurrent delete).
                raise DocumentNotFound(f"document {doc_id!r} was deleted during ingestion") from exc
            kill_point("commit.sql_done")
            ids = np.asarray(new_ids, dtype=np.int64)
            with indexes.rw.write():
                if removed_ids:
                    self._remove_from_indexes(indexes, removed_ids)
                self._add_to_indexes(indexes, ids, vectors, [c.text for c in chunks])
            kill_point("commit.indexed")
            self._after_write(indexes, seq)
        for old_id in replaces:
            (self.files_dir / old_id).unlink(missing_ok=True)
        log.info("document ready doc_id=%s chunks=%d seq=%d", doc_id, len(chunks), seq)
        return self.get_document(doc_id)

    def _commit_rows(
        self,
        doc_id: str,
        collection_id: int,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        page_count: int,
        replaces: Sequence[str],
        media_type: str | None,
        embedding_model: str,
    ) -> tuple[int, list[int], list[int]]:
        """The SQL half of :meth:`commit_document` in one transaction: (seq, added, removed)."""
        with self.sessions.begin() as session:
            row = session.get(Document, doc_id)
            if row is None:
                raise DocumentNotFound(f"document {doc_id!r} was deleted during ingestion")
            # Read in the transaction that writes: a re-embedding swaps the model in one too.
            owner = session.get(Collection, collection_id)
            if owner is None:
                raise DocumentNotFound(f"document {doc_id!r} was deleted during ingestion")
            self._record_embedding(owner, embedding_model, int(vectors.shape[1]))
            chunk_rows = [
                ChunkRow(
                    document_id=doc_id,
                    collection_id=collection_id,
                    ordinal=chunk.ordinal,
                    text=chunk.text,
                    page_start=chunk.page_start,
                    page_end=chunk.page_end,
                    char_start=chunk.char_start,
                    char_end=chunk.char_end,
                    token_count=chunk.token_count,
                    page_breaks=[list(b) for b in chunk.page_breaks],
                    embedding=vectors[i].tobytes(),
                    ocr_confidence=chunk.ocr_confidence,
                )
                for i, chunk in enumerate(chunks)
            ]
            session.add_all(chunk_rows)
            session.flush()
            new_ids = [r.id for r in chunk_rows]
            removed_ids: list[int] = []
            for old_id in replaces:
                removed_ids += list(
                    session.scalars(select(ChunkRow.id).where(ChunkRow.document_id == old_id))
                )
                session.execute(delete(ChunkRow).where(ChunkRow.document_id == old_id))
                session.execute(delete(Document).where(Document.id == old_id))
            if removed_ids:
                session.add(
                    IndexJournal(collection_id=collection_id, op="remove", chunk_ids=removed_ids)
                )
            entry = IndexJournal(collection_id=collection_id, op="add", chunk_ids=new_ids)
            session.add(entry)
            row.status = DocumentStatus.READY.value
            row.error = None
            row.page_count = page_count
            if media_type:
                row.media_type = media_type
            row.chunk_count = len(chunks)
            session.flush()
            return entry.seq, new_ids, removed_ids

    @staticmethod
    def _record_embedding(owner: Collection, model: str, dim: int) -> None:
        """Check vectors of ``model`` and size ``dim`` against the collection; record if unset."""
        check_embedding_model(owner.name, owner.embedding_model, model)
        if owner.embedding_dim and owner.embedding_dim != dim:
            raise EmbeddingMismatch(
                f"collection {owner.name!r} holds {owner.embedding_dim}-dimensional vectors, "
                f"got {dim}-dimensional ones; re-embed it with "
                f"`rag collections reembed {owner.name} --model MODEL`",
                details={"collection": owner.name, "collection_dim": owner.embedding_dim},
            )
        if model and not owner.embedding_model:
            owner.embedding_model = model
        if not owner.embedding_dim:
            owner.embedding_dim = dim

    def delete_document(self, doc_id: str) -> DocumentInfo:
        """Delete a document from SQL, FAISS and BM25 (the one write path for removals)."""
        doc = self.get_document(doc_id)
        collection = self._collection_ref(doc.collection)
        indexes = self._collection_indexes(collection.id)
        with indexes.writer, self.writer_lock.hold():
            with self.sessions.begin() as session:
                chunk_ids = list(
                    session.scalars(select(ChunkRow.id).where(ChunkRow.document_id == doc_id))
                )
                session.execute(delete(ChunkRow).where(ChunkRow.document_id == doc_id))
                session.execute(delete(Document).where(Document.id == doc_id))
                seq = None
                if chunk_ids:
                    entry = IndexJournal(
                        collection_id=collection.id, op="remove", chunk_ids=chunk_ids
                    )
                    session.add(entry)
                    session.flush()
                    seq = entry.seq
            kill_point("delete.sql_done")
            if seq is not None:
                with indexes.rw.write():
                    self._remove_from_indexes(indexes, chunk_ids)
                self._after_write(indexes, seq)
        (self.files_dir / doc_id).unlink(missing_ok=True)
        log.info("document deleted doc_id=%s chunks=%d", doc_id, len(chunk_ids))
        return doc

    # -------------------------------------------------------------- re-embedding
    def reembed_collection(
        self,
        name: str,
        embedder: Embedder,
        *,
        batch_chunks: int = 64,
        progress: ReembedProgress | None = None,
    ) -> CollectionInfo:
        """Replace every vector of a collection with ``embedder``'s, atomically.

        The new vectors are computed aside from the stored chunk texts while
        the old index keeps answering (and documents may still be added or
        deleted). Then, holding the collection's writer lock, chunks committed
        meanwhile are embedded too, the new vector index is built in memory,
        and one SQL transaction replaces every stored vector, records the new
        model and size, and writes a ``reembed`` journal entry; the in-memory
        index is swapped and both files saved. A process killed before that
        transaction leaves the old state wholly; after it, start-up replay of
        the entry rebuilds the vector index from SQL, so the new state is whole.
        Chunk boundaries, ids and the BM25 index do not change.

        Args:
            name: The collection.
            embedder: The new model's embedder.
            batch_chunks: Chunks per embedding call (progress and kill-point granularity).
            progress: Called with (done, total) after each batch.

        Returns:
            The collection with its new model.
        """
        if batch_chunks < 1:
            raise InvalidInput(f"batch_chunks must be >= 1, got {batch_chunks}")
        info = self._collection_ref(name)
        indexes = self._collection_indexes(info.id)
        snapshot = self._ready_chunk_texts(info.id)
        total = len(snapshot)
        vectors: dict[int, np.ndarray] = {}
        for start in range(0, total, batch_chunks):
            part = snapshot[start : start + batch_chunks]
            for (chunk_id, _), vector in zip(
                part, embedder.embed_documents([t for _, t in part]), strict=True
            ):
                vectors[chunk_id] = vector
            if progress is not None:
                progress(len(vectors), total)
            kill_point("reembed.batch")
        with indexes.writer, self.writer_lock.hold():
            current = self._ready_chunk_texts(info.id)
            late = [(i, t) for i, t in current if i not in vectors]
            if late:  # committed while the rest was embedded
                for (chunk_id, _), vector in zip(
                    late, embedder.embed_documents([t for _, t in late]), strict=True
                ):
                    vectors[chunk_id] = vector
            ids = np.asarray([i for i, _ in current], dtype=np.int64)
            dim = int(embedder.dimension)
            matrix = (
                np.stack([vectors[int(i)] for i in ids]).astype(np.float32)
                if len(ids)
                else np.zeros((0, dim), dtype=np.float32)
            )
            if matrix.shape[1] != dim:
                raise EmbeddingMismatch(
                    f"embedder {embedder.name!r} says {dim} dimensions but gave "
                    f"{matrix.shape[1]}; check the model folder"
                )
            fresh = self._build_vectors(ids, matrix, dim)
            kill_point("reembed.built")
            seq = self._commit_reembed(info.id, embedder.name, dim, ids, matrix)
            kill_point("reembed.sql_done")
            with indexes.rw.write():
                indexes.vectors = fresh
            self._persist(indexes, seq)
        log.info("collection re-embedded name=%s model=%s chunks=%d", name, embedder.name, len(ids))
        return self.get_collection(name)

    def _ready_chunk_texts(self, collection_id: int) -> list[tuple[int, str]]:
        with self.sessions() as session:
            rows = session.execute(
                select(ChunkRow.id, ChunkRow.text)
                .join(Document)
                .where(
                    ChunkRow.collection_id == collection_id,
                    Document.status == DocumentStatus.READY.value,
                )
                .order_by(ChunkRow.id)
            ).all()
        return [(int(i), t) for i, t in rows]

    def _build_vectors(self, ids: np.ndarray, matrix: np.ndarray, dim: int) -> FaissVectorIndex:
        """A new vector index holding ``matrix`` under ``ids`` (HNSW when big, as on add)."""
        fresh = self._new_vectors(dim, len(ids))
        fresh.search_threads = self.index_settings.search_threads
        if len(ids):
            fresh.add(ids, matrix)
        return fresh

    def _commit_reembed(
        self, collection_id: int, model: str, dim: int, ids: np.ndarray, matrix: np.ndarray
    ) -> int:
        """One transaction: every vector, the collection's model and size, a journal entry."""
        with self.sessions.begin() as session:
            owner = session.get(Collection, collection_id)
            if owner is None:
                raise CollectionNotFound(f"collection id {collection_id} was deleted meanwhile")
            for start in range(0, len(ids), 1000):
                session.execute(
                    update(ChunkRow),
                    [
                        {"id": int(i), "embedding": matrix[start + n].tobytes()}
                        for n, i in enumerate(ids[start : start + 1000])
                    ],
                )
            owner.embedding_model = model
            owner.embedding_dim = dim
            entry = IndexJournal(collection_id=collection_id, op="reembed", chunk_ids=[])
            session.add(entry)
            session.flush()
            return int(entry.seq)

    def _vectors_from_sql(self, collection_id: int) -> FaissVectorIndex | None:
        """The vector index rebuilt from every ready chunk's stored vector (None: no chunks)."""
        with self.sessions() as session:
            rows = session.execute(
                select(ChunkRow.id, ChunkRow.embedding)
                .join(Document)
                .where(
                    ChunkRow.collection_id == collection_id,
                    Document.status == DocumentStatus.READY.value,
                )
                .order_by(ChunkRow.id)
            ).all()
        if not rows:
            return None
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        return self._build_vectors(ids, matrix, int(matrix.shape[1]))

    # --------------------------------------------------------------------- reads
    def collection_ids(self, names: Sequence[str] | None) -> list[int]:
        """Ids of the named collections (all when None)."""
        # Names and ids only: this runs on every query, and counting chunks would
        # scan the whole chunks table (12 ms at 100k chunks).
        with self.sessions() as session:
            by_name = dict(session.execute(select(Collection.name, Collection.id)).all())
        if not names:
            return sorted(by_name.values())
        missing = [n for n in names if n not in by_name]
        if missing:
            raise CollectionNotFound(f"no collection named {missing[0]!r}")
        return [by_name[n] for n in names]

    def collection_models(self, collection_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
        """The (embedding model, vector size) each collection records ("" and 0: none yet)."""
        if not collection_ids:
            return {}
        with self.sessions() as session:
            rows = session.execute(
                select(Collection.id, Collection.embedding_model, Collection.embedding_dim).where(
                    Collection.id.in_(list(collection_ids))
                )
            ).all()
        return {row.id: (row.embedding_model, row.embedding_dim) for row in rows}

    def allowed_chunk_ids(
        self,
        collection_id: int,
        document_ids: Sequence[str] | None = None,
        pages: tuple[int, int] | None = None,
    ) -> np.ndarray | None:
        """Chunk ids passing a document/page filter, via the SQL indexes (None = no filter)."""
        if not document_ids and pages is None:
            return None
        with self.sessions() as session:
            query = select(ChunkRow.id).where(ChunkRow.collection_id == collection_id)
            if document_ids:
                query = query.where(ChunkRow.document_id.in_(list(document_ids)))
            if pages is not None:
                first, last = pages
                query = query.where(ChunkRow.page_end >= first, ChunkRow.page_start <= last)
            return np.asarray(session.scalars(query).all(), dtype=np.int64)

    def search_dense(
        self, collection_id: int, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """FAISS top-k in one collection (under the read lock)."""
        indexes = self._collection_indexes(collection_id)
        with indexes.rw.read():
            if indexes.vectors is None or not len(indexes.vectors):
                return []
            if allowed is not None and not len(allowed):
                return []
            if indexes.vectors.dim != query.shape[-1]:
                raise EmbeddingMismatch(
                    f"collection id {collection_id} holds {indexes.vectors.dim}-dimensional "
                    f"vectors but the query vector has {query.shape[-1]}; query it with the "
                    "model it records (`rag collections list`)"
                )
            return indexes.vectors.search(query, k, allowed_ids=allowed)

    def search_sparse(
        self, collection_id: int, query: str, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """BM25 top-k in one collection (under the read lock)."""
        indexes = self._collection_indexes(collection_id)
        with indexes.rw.read():
            if not len(indexes.sparse):
                return []
            if allowed is not None and not len(allowed):
                return []
            return indexes.sparse.search(query, k, allowed_ids=allowed)

    def sparse_share(self, collection_id: int, query: str, best_score: float) -> float:
        """``best_score`` as a share of the most the query could score in this collection."""
        indexes = self._collection_indexes(collection_id)
        with indexes.rw.read():
            ceiling = indexes.sparse.score_ceiling(indexes.sparse.tokenize_query(query))
        return best_score / ceiling if ceiling > 0 else 0.0

    def chunks_by_ids(self, ids: Iterable[int]) -> dict[int, tuple[ChunkInfo, str, str]]:
        """Chunks with (filename, collection name), keyed by id; unknown ids are absent.

        Only chunks of ``ready`` documents are returned, so a reader never sees a
        document that is half added or being deleted.
        """
        wanted = list({int(i) for i in ids})
        if not wanted:
            return {}
        with self.sessions() as session:
            rows = session.execute(
                select(ChunkRow, Document.filename, Collection.name)
                .join(Document, ChunkRow.document_id == Document.id)
                .join(Collection, Document.collection_id == Collection.id)
                .where(ChunkRow.id.in_(wanted), Document.status == DocumentStatus.READY.value)
            ).all()
            return {row.id: (_chunk_info(row), filename, name) for row, filename, name in rows}

    def neighbour_chunks(self, document_id: str, ordinals: Iterable[int]) -> list[ChunkInfo]:
        """Chunks of a document at the given ordinals (for neighbour expansion)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(ChunkRow).where(
                    ChunkRow.document_id == document_id, ChunkRow.ordinal.in_(list(ordinals))
                )
            ).all()
            return [_chunk_info(r) for r in rows]

    def collection_size(self, collection_id: int) -> int:
        """Chunks in the collection's BM25 index."""
        return len(self._collection_indexes(collection_id).sparse)

    # -------------------------------------------------------------- consistency
    def check(self) -> list[CollectionCheck]:
        """Compare the chunk ids of SQL, FAISS and BM25 for every collection."""
        return [self._check_one(info) for info in self.list_collections()]

    def repair(self) -> list[CollectionCheck]:
        """Bring FAISS and BM25 back to what SQL holds; fail stuck documents.

        Missing chunks are re-added from their stored text and vectors (no
        re-embedding); extra ids are removed; indexes are saved. Returns the
        checks after repair.
        """
        self.fail_interrupted_documents()
        for info in self.list_collections():
            indexes = self._collection_indexes(info.id)
            with indexes.writer, self.writer_lock.hold():
                report = self._check_one(info)
                if report.consistent:
                    continue
                missing = sorted(set(report.missing_in_faiss) | set(report.missing_in_bm25))
                extra = sorted(set(report.extra_in_faiss) | set(report.extra_in_bm25))
                with indexes.rw.write():
                    self._remove_from_indexes(indexes, extra)
                    self._apply_adds(indexes, missing)
                seq = max(indexes.vectors_seq, indexes.sparse_seq, self._max_seq())
                self._persist(indexes, seq)
                log.warning(
                    "repaired collection=%s added=%d removed=%d",
                    info.name,
                    len(missing),
                    len(extra),
                )
        return self.check()

    def _check_one(self, info: CollectionInfo) -> CollectionCheck:
        indexes = self._collection_indexes(info.id)
        with self.sessions() as session:
            sql_ids = set(
                session.scalars(
                    select(ChunkRow.id)
                    .join(Document)
                    .where(
                        ChunkRow.collection_id == info.id,
                        Document.status == DocumentStatus.READY.value,
                    )
                ).all()
            )
            unfinished = session.scalars(
                select(Document.id).where(
                    Document.collection_id == info.id, Document.status.in_(_UNFINISHED)
                )
            ).all()
            resumable = _resumable_documents(session) if unfinished else set()
            stuck = tuple(d for d in unfinished if d not in resumable)
            waiting = tuple(d for d in unfinished if d in resumable)
        with indexes.rw.read():
            faiss_ids = set(indexes.vectors.ids().tolist()) if indexes.vectors else set()
            bm25_ids = set(indexes.sparse.ids().tolist())
        return CollectionCheck(
            collection=info.name,
            sql_chunks=len(sql_ids),
            faiss_chunks=len(faiss_ids),
            bm25_chunks=len(bm25_ids),
            missing_in_faiss=tuple(sorted(sql_ids - faiss_ids)),
            extra_in_faiss=tuple(sorted(faiss_ids - sql_ids)),
            missing_in_bm25=tuple(sorted(sql_ids - bm25_ids)),
            extra_in_bm25=tuple(sorted(bm25_ids - sql_ids)),
            stuck_documents=stuck,
            resumable_documents=waiting,
        )

    # ------------------------------------------------------------ index plumbing
    def _new_sparse(self) -> BM25Index:
        return BM25Index.from_settings(self.index_settings)

    def _new_vectors(self, dim: int, n_expected: int) -> FaissVectorIndex:
        return FaissVectorIndex.from_settings(dim, self.index_settings, expected_size=n_expected)

    def _collection_indexes(self, collection_id: int) -> CollectionIndexes:
        """The loaded indexes of a collection (loaded once; loading holds no global lock)."""
        with self._indexes_lock:
            existing = self._indexes.get(collection_id)
            if existing is not None:
                return existing
            loading = self._loading.setdefault(collection_id, threading.Lock())
        with loading:
            with self._indexes_lock:
                existing = self._indexes.get(collection_id)
                if existing is not None:
                    return existing
            indexes = self._load_indexes(collection_id)
            with self._indexes_lock:
                self._indexes[collection_id] = indexes
            return indexes

    def _load_indexes(self, collection_id: int) -> CollectionIndexes:
        """Load the newest index files and replay newer journal entries."""
        directory = self.index_dir / f"c{collection_id}"
        directory.mkdir(parents=True, exist_ok=True)
        newest: dict[str, tuple[int, Path]] = {}
        for path in directory.iterdir():
            match = _INDEX_FILE.match(path.name)
            if match:
                kind, seq = match.group(1), int(match.group(2))
                if kind not in newest or seq > newest[kind][0]:
                    newest[kind] = (seq, path)
            elif path.name.startswith(".") or path.suffix == ".tmp":
                path.unlink(missing_ok=True)  # a temp file left by a crash mid-write
        vectors, vectors_seq = None, 0
        if "vectors" in newest:
            vectors_seq, path = newest["vectors"]
            vectors = FaissVectorIndex.load(path)
            vectors.search_threads = self.index_settings.search_threads
        sparse, sparse_seq = self._new_sparse(), 0
        if "bm25" in newest:
            sparse_seq, path = newest["bm25"]
            sparse = BM25Index.load(path)
        indexes = CollectionIndexes(
            collection_id=collection_id,
            directory=directory,
            vectors=vectors,
            sparse=sparse,
            vectors_seq=vectors_seq,
            sparse_seq=sparse_seq,
        )
        self._replay_journal(indexes)
        return indexes

    def _replay_journal(self, indexes: CollectionIndexes) -> None:
        start = min(indexes.vectors_seq, indexes.sparse_seq)
        with self.sessions() as session:
            rows = session.scalars(
                select(IndexJournal)
                .where(
                    IndexJournal.collection_id == indexes.collection_id,
                    IndexJournal.seq > start,
                )
                .order_by(IndexJournal.seq)
            ).all()
            entries = [(e.seq, e.op, list(e.chunk_ids)) for e in rows]
        if not entries:
            return
        rebuilt_at = max(
            (seq for seq, op, _ in entries if op == "reembed" and seq > indexes.vectors_seq),
            default=0,
        )
        if rebuilt_at:
            # Every vector was replaced after the vector file was written: the stored
            # vectors are the new ones, so the index is rebuilt from SQL, and the
            # entries before it hold nothing the rebuilt index lacks.
            indexes.vectors = self._vectors_from_sql(indexes.collection_id)
            indexes.vectors_seq = rebuilt_at
        for seq, op, chunk_ids in entries:
            if op == "reembed":
                pass
            elif op == "remove":
                if seq > indexes.vectors_seq and indexes.vectors is not None:
                    indexes.vectors.remove(chunk_ids)
                if seq > indexes.sparse_seq:
                    indexes.sparse.remove(chunk_ids)
            else:
                self._apply_adds(
                    indexes,
                    chunk_ids,
                    vectors=seq > indexes.vectors_seq,
                    sparse=seq > indexes.sparse_seq,
                )
            kill_point("replay.entry")
        log.info(
            "journal replayed collection_id=%d entries=%d", indexes.collection_id, len(entries)
        )
        with self.writer_lock.hold():
            self._persist(indexes, entries[-1][0])

    def _apply_adds(
        self,
        indexes: CollectionIndexes,
        chunk_ids: Sequence[int],
        *,
        vectors: bool = True,
        sparse: bool = True,
    ) -> None:
        """Add chunks (from their stored text and vector) that an index lacks."""
        if not chunk_ids:
            return
        rows: list[tuple[int, str, bytes]] = []
        with self.sessions() as session:
            for start in range(0, len(chunk_ids), 5000):
                part = list(chunk_ids[start : start + 5000])
                rows += session.execute(
                    select(ChunkRow.id, ChunkRow.text, ChunkRow.embedding)
                    .join(Document)
                    .where(ChunkRow.id.in_(part), Document.status == DocumentStatus.READY.value)
                ).all()
        if not rows:
            return
        rows.sort()
        if vectors:
            have = set(indexes.vectors.ids().tolist()) if indexes.vectors is not None else set()
            todo = [r for r in rows if r[0] not in have]
            if todo:
                mat = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in todo])
                ids = np.asarray([r[0] for r in todo], dtype=np.int64)
                if indexes.vectors is None:
                    indexes.vectors = self._new_vectors(mat.shape[1], len(ids))
                indexes.vectors.add(ids, mat)
        if sparse:
            have = set(indexes.sparse.ids().tolist())
            todo = [r for r in rows if r[0] not in have]
            if todo:
                indexes.sparse.add([r[0] for r in todo], [r[1] for r in todo])

    def _add_to_indexes(
        self, indexes: CollectionIndexes, ids: np.ndarray, vectors: np.ndarray, texts: list[str]
    ) -> None:
        if indexes.vectors is None:
            indexes.vectors = self._new_vectors(vectors.shape[1], len(ids))
        indexes.vectors.add(ids, vectors)
        indexes.sparse.add(ids.tolist(), texts)
        s = self.index_settings
        if (
            s.vector_kind == "auto"
            and indexes.vectors.kind == "flat"
            and len(indexes.vectors) > s.hnsw_threshold
        ):
            log.info(
                "switching to HNSW collection_id=%d size=%d",
                indexes.collection_id,
                len(indexes.vectors),
            )
            indexes.vectors = indexes.vectors.rebuild("hnsw")

    @staticmethod
    def _remove_from_indexes(indexes: CollectionIndexes, ids: Sequence[int]) -> None:
        if not ids:
            return
        if indexes.vectors is not None:
            indexes.vectors.remove(ids)
        indexes.sparse.remove(ids)

    def _after_write(self, indexes: CollectionIndexes, seq: int) -> None:
        """Remember that ``seq`` needs saving; save if a checkpoint is due.

        Saving rewrites a whole index file (150 MB of vectors at 100k chunks),
        so it happens at checkpoints, not per document: the journal entry
        committed with the write already makes it durable.
        """
        if not indexes.unsaved_writes:
            indexes.unsaved_since = time.monotonic()
        indexes.pending_seq = max(indexes.pending_seq, seq)
        indexes.unsaved_writes += 1
        if self.autoflush and self._checkpoint_due(indexes):
            self._persist(indexes, indexes.pending_seq)

    def _checkpoint_due(self, indexes: CollectionIndexes) -> bool:
        s = self.index_settings
        return indexes.unsaved_writes >= s.checkpoint_entries or (
            time.monotonic() - indexes.unsaved_since >= s.checkpoint_seconds
        )

    def checkpoint(self) -> int:
        """Save the collections whose checkpoint is due (idle callers); returns how many."""
        if not self.autoflush:
            return 0
        return self._save_pending(due_only=True)

    def flush(self) -> None:
        """Save every collection's indexes that have unsaved changes."""
        self._save_pending(due_only=False)

    def _save_pending(self, *, due_only: bool) -> int:
        with self._indexes_lock:
            loaded = list(self._indexes.values())
        saved = 0
        for indexes in loaded:
            if not indexes.pending_seq or (due_only and not self._checkpoint_due(indexes)):
                continue
            with indexes.writer, self.writer_lock.hold():
                if indexes.pending_seq:
                    self._persist(indexes, indexes.pending_seq)
                    saved += 1
        return saved

    def _max_seq(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.max(IndexJournal.seq))) or 0)

    def _persist(self, indexes: CollectionIndexes, seq: int) -> None:
        """Write both indexes under a name carrying ``seq``, then drop older files.

        Each file is written atomically; a crash between the two writes leaves
        one index at an older sequence number, and the journal replays the rest.
        """
        with indexes.rw.read():
            if indexes.vectors is not None:
                indexes.vectors.save(indexes.directory / f"vectors.{seq}.faiss")
                indexes.vectors_seq = seq
            kill_point("persist.between_files")
            indexes.sparse.save(indexes.directory / f"bm25.{seq}.npz")
            indexes.sparse_seq = seq
            if indexes.pending_seq <= seq:
                indexes.pending_seq = indexes.unsaved_writes = 0
        kill_point("persist.before_prune")
        for path in indexes.directory.iterdir():
            match = _INDEX_FILE.match(path.name)
            if match and int(match.group(2)) < seq:
                path.unlink(missing_ok=True)
        self._prune_journal(indexes.collection_id, seq)

    def _prune_journal(self, collection_id: int, upto: int) -> None:
        with self.sessions.begin() as session:
            session.execute(
                delete(IndexJournal).where(
                    IndexJournal.collection_id == collection_id, IndexJournal.seq <= upto
                )
            )


def file_sha256(data: bytes) -> str:
    """Hex sha256 of the bytes (deduplication key)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


__all__ = ["KnowledgeBase", "file_sha256", "validate_collection_name"]
