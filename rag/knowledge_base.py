"""The knowledge base: SQL rows and a search store (vectors and BM25 terms) kept in agreement.

There is one write path. A document's chunks, its ``ready`` status and the
search store's staged change (a journal entry for the embedded file store;
the pgvector and BM25 rows themselves for Postgres) are committed in one SQL
transaction; then the store applies what is left (the file store changes its
in-memory indexes and saves them at checkpoints). After a crash at any point
the next start sees either the whole document or none of it.
:meth:`KnowledgeBase.check` verifies the invariant and
:meth:`KnowledgeBase.repair` restores it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from rag.blobs import make_blob_stores
from rag.consistency import ConsistencyChecker
from rag.db.engine import make_engine, make_session_factory
from rag.db.locks import INGEST_LOCK_KEY, AdvisoryLock
from rag.db.models import (
    ChunkRow,
    Collection,
    Document,
    DocumentStatus,
)
from rag.db.queries import ready_chunks
from rag.errors import (
    BlobNotFound,
    CollectionNotFound,
    Conflict,
    DocumentNotFound,
    DuplicateDocument,
    EmbeddingMismatch,
    InvalidInput,
)
from rag.faults import kill_point
from rag.locks import InterProcessLock, ProcessLock
from rag.protocols import AfterCommit, Embedder, SearchStore
from rag.records import ChunkInfo, CollectionCheck, CollectionInfo, DocumentInfo, ReadyDocument
from rag.settings import IndexSettings, Settings
from rag.store.files import FileSearchStore
from rag.store.select import make_search_store
from rag.types import Chunk, ScoredId

log = logging.getLogger(__name__)

_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


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
    """Collections, documents and chunks in SQL plus a search store per backend.

    Args:
        settings: All settings (data_dir, database_url and index settings are used).
        embedding_model: Name recorded on new collections.
        autoflush: (file store) Save index files at checkpoints (every
            ``checkpoint_entries`` writes or ``checkpoint_seconds``). Bulk loads
            turn it off and call :meth:`flush` once. Either way the SQL journal
            covers unsaved changes.
    """

    def __init__(
        self, settings: Settings, embedding_model: str = "", *, autoflush: bool = True
    ) -> None:
        self.settings = settings
        self.index_settings: IndexSettings = settings.index
        self.embedding_model = embedding_model
        self.data_dir = settings.data_dir
        self.index_dir = self.data_dir / "indexes"
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(
            settings.resolved_database_url, auto_upgrade=settings.database_auto_upgrade
        )
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        # Document originals and upload bytes: files here, the blobs table on PostgreSQL.
        self.originals, self.uploads = make_blob_stores(self.engine, self.sessions, self.data_dir)
        self.writer_lock = ProcessLock(self.data_dir / "writer.lock")
        # Held shared by every ingesting process (and server), so recovery elsewhere can tell
        # a live "processing" document from a dead one: a file lock on one host, an advisory
        # lock every replica sees on PostgreSQL.
        self.ingest_lock: InterProcessLock = (
            AdvisoryLock(self.engine, INGEST_LOCK_KEY)
            if self.engine.dialect.name == "postgresql"
            else ProcessLock(self.data_dir / "ingest.lock")
        )
        self.store: SearchStore = make_search_store(
            self.engine, self.sessions, self.index_dir, self.index_settings, self.writer_lock
        )
        self.checker = ConsistencyChecker(
            self.sessions, self.store, self.uploads, self.ingest_lock, self.list_collections
        )
        self.autoflush = autoflush

    @property
    def autoflush(self) -> bool:
        """Whether the file store saves at checkpoints (always True for other stores)."""
        return getattr(self.store, "autoflush", True)

    @autoflush.setter
    def autoflush(self, value: bool) -> None:
        if isinstance(self.store, FileSearchStore):
            self.store.autoflush = value

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Save unsaved index changes and release the database engine."""
        self.store.close()
        self.engine.dispose()

    def recover(self) -> list[str]:
        """Start-up recovery: replay the journal into every collection's indexes.

        Also marks documents left ``processing`` or ``pending`` by a dead process
        as failed (their chunks were never committed). Returns their ids.
        """
        self.store.open([info.id for info in self.list_collections()])
        return self.fail_interrupted_documents()

    def fail_interrupted_documents(self, exclude: Iterable[str] = ()) -> list[str]:
        """Mark documents stuck in processing/pending as failed (see :mod:`rag.consistency`)."""
        return self.checker.fail_interrupted_documents(exclude)

    def check(self) -> list[CollectionCheck]:
        """Compare the chunk ids of SQL and the search store's two indexes per collection."""
        return self.checker.check()

    def repair(self) -> list[CollectionCheck]:
        """Bring the search indexes back to what SQL holds; fail stuck documents."""
        return self.checker.repair()

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
                    self.store.stage_create(session, row.id)
        except IntegrityError as exc:
            # Another thread or process created it between our check and our insert.
            if not exist_ok:
                raise Conflict(f"collection {name!r} already exists") from exc
        return self.get_collection(name)

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
        with self.store.writing(info.id):
            with self.sessions.begin() as session:
                doc_ids = session.scalars(
                    select(Document.id).where(Document.collection_id == info.id)
                ).all()
                after = self.store.stage_drop(session, info.id)
                session.execute(delete(ChunkRow).where(ChunkRow.collection_id == info.id))
                session.execute(delete(Document).where(Document.collection_id == info.id))
                session.execute(delete(Collection).where(Collection.id == info.id))
            kill_point("collection_delete.sql_done")
            after()
        for doc_id in doc_ids:
            self.originals.delete(doc_id)
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
            self.originals.put(result.id, data)
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

    def document_bytes(self, doc_id: str) -> bytes:
        """The original bytes of a document, readable from any replica."""
        self.get_document(doc_id)
        try:
            return self.originals.get(doc_id)
        except BlobNotFound as exc:
            raise DocumentNotFound(
                f"the original file of document {doc_id!r} is not stored"
            ) from exc

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
        """Make one document searchable: :meth:`commit_documents` for a batch of one.

        Raises:
            EmbeddingMismatch: The vectors come from another model or have another size.
        """
        doc = self.get_document(doc_id)
        item = ReadyDocument(doc_id, chunks, vectors, page_count, tuple(replaces), media_type)
        return self.commit_documents(doc.collection, [item], embedding_model=embedding_model)[0]

    def commit_documents(
        self,
        collection: str,
        documents: Sequence[ReadyDocument],
        *,
        embedding_model: str | None = None,
    ) -> list[DocumentInfo]:
        """Make documents of one collection searchable: the one write path for additions.

        Their chunks, status ``ready``, the removal of replaced versions and one
        journal entry are one SQL transaction (a bulk load commits a group of
        small files at once); then the indexes are updated and saved at their
        checkpoint. Each document is wholly searchable or absent whatever
        happens. ``embedding_model`` (default: this knowledge base's) made the
        vectors; the collection's recorded model and vector size must match,
        and a collection without vectors yet records them.

        Raises:
            EmbeddingMismatch: The vectors come from another model or have another size.
            DocumentNotFound: A document was deleted meanwhile (none is committed).
        """
        if not documents:
            return []
        for item in documents:
            if len(item.chunks) != len(item.vectors):
                raise InvalidInput(f"{len(item.chunks)} chunks but {len(item.vectors)} vectors")
            if not item.chunks:
                raise InvalidInput("a document needs at least one chunk to be searchable")
        info = self._collection_ref(collection)
        model = self.embedding_model if embedding_model is None else embedding_model
        with self.store.writing(info.id):
            try:
                added, after = self._commit_rows(info.id, documents, model)
            except (StaleDataError, IntegrityError) as exc:
                # A row went away between our read and the write (a concurrent delete).
                raise DocumentNotFound(
                    "a document was deleted during ingestion; ingest it again"
                ) from exc
            kill_point("commit.sql_done")
            for step in after:
                step()
        for item in documents:
            for old_id in item.replaces:
                self.originals.delete(old_id)
        log.info("documents ready count=%d chunks=%d", len(documents), added)
        return self._documents_by_id([item.doc_id for item in documents])

    def _documents_by_id(self, ids: Sequence[str]) -> list[DocumentInfo]:
        """Documents in the order of ``ids`` (one query)."""
        with self.sessions() as session:
            rows = session.execute(
                select(Document, Collection.name)
                .join(Collection, Document.collection_id == Collection.id)
                .where(Document.id.in_(list(ids)))
            ).all()
        found = {doc.id: _document_info(doc, name) for doc, name in rows}
        missing = [doc_id for doc_id in ids if doc_id not in found]
        if missing:
            raise DocumentNotFound(f"document {missing[0]!r} was deleted during ingestion")
        return [found[doc_id] for doc_id in ids]

    def _commit_rows(
        self, collection_id: int, documents: Sequence[ReadyDocument], embedding_model: str
    ) -> tuple[int, list[AfterCommit]]:
        """The SQL half of :meth:`commit_documents` in one transaction.

        Returns the number of chunks added and the store's after-commit steps.
        """
        vectors = np.concatenate(
            [np.ascontiguousarray(item.vectors, dtype=np.float32) for item in documents], axis=0
        )
        with self.sessions.begin() as session:
            rows = []
            for item in documents:
                row = session.get(Document, item.doc_id)
                if row is None or row.collection_id != collection_id:
                    raise DocumentNotFound(f"document {item.doc_id!r} was deleted during ingestion")
                rows.append(row)
            # Read in the transaction that writes: a re-embedding swaps the model in one too.
            owner = session.get(Collection, collection_id)
            if owner is None:
                raise DocumentNotFound(
                    f"document {documents[0].doc_id!r} was deleted during ingestion"
                )
            self._record_embedding(owner, embedding_model, int(vectors.shape[1]))
            chunk_rows = []
            offset = 0
            for item in documents:
                for i, chunk in enumerate(item.chunks):
                    chunk_rows.append(
                        ChunkRow(
                            document_id=item.doc_id,
                            collection_id=collection_id,
                            ordinal=chunk.ordinal,
                            text=chunk.text,
                            page_start=chunk.page_start,
                            page_end=chunk.page_end,
                            char_start=chunk.char_start,
                            char_end=chunk.char_end,
                            token_count=chunk.token_count,
                            page_breaks=[list(b) for b in chunk.page_breaks],
                            embedding=vectors[offset + i].tobytes(),
                            ocr_confidence=chunk.ocr_confidence,
                        )
                    )
                offset += len(item.chunks)
            session.add_all(chunk_rows)
            session.flush()
            new_ids = np.asarray([r.id for r in chunk_rows], dtype=np.int64)
            replaced = [old_id for item in documents for old_id in item.replaces]
            removed_ids: list[int] = []
            for old_id in replaced:
                removed_ids += list(
                    session.scalars(select(ChunkRow.id).where(ChunkRow.document_id == old_id))
                )
            after = [self.store.stage_remove(session, collection_id, removed_ids)]
            for old_id in replaced:
                session.execute(delete(ChunkRow).where(ChunkRow.document_id == old_id))
                session.execute(delete(Document).where(Document.id == old_id))
            texts = [c.text for item in documents for c in item.chunks]
            after.append(self.store.stage_add(session, collection_id, new_ids, vectors, texts))
            for item, row in zip(documents, rows, strict=True):
                row.status = DocumentStatus.READY.value
                row.error = None
                row.page_count = item.page_count
                if item.media_type:
                    row.media_type = item.media_type
                row.chunk_count = len(item.chunks)
            session.flush()
            return len(new_ids), after

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
        with self.store.writing(collection.id):
            with self.sessions.begin() as session:
                chunk_ids = list(
                    session.scalars(select(ChunkRow.id).where(ChunkRow.document_id == doc_id))
                )
                after = self.store.stage_remove(session, collection.id, chunk_ids)
                session.execute(delete(ChunkRow).where(ChunkRow.document_id == doc_id))
                session.execute(delete(Document).where(Document.id == doc_id))
            kill_point("delete.sql_done")
            after()
        self.originals.delete(doc_id)
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
        model and size, and stages the store's change (file store: a
        ``reembed`` journal entry, then the in-memory index is swapped and
        saved; Postgres: the vector rows). A process killed before that
        transaction leaves the old state wholly; after it, the file store's
        start-up replay rebuilds the vector index from SQL, so the new state is whole.
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
        with self.store.writing(info.id):
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
            after = self._commit_reembed(info.id, embedder.name, dim, ids, matrix)
            kill_point("reembed.sql_done")
            after()
        log.info("collection re-embedded name=%s model=%s chunks=%d", name, embedder.name, len(ids))
        return self.get_collection(name)

    def _ready_chunk_texts(self, collection_id: int) -> list[tuple[int, str]]:
        with self.sessions() as session:
            rows = session.execute(ready_chunks(collection_id, ChunkRow.id, ChunkRow.text)).all()
        return [(int(i), t) for i, t in rows]

    def _commit_reembed(
        self, collection_id: int, model: str, dim: int, ids: np.ndarray, matrix: np.ndarray
    ) -> AfterCommit:
        """One transaction: every vector, the collection's model and size, the store's change."""
        with self.sessions.begin() as session:
            owner = session.get(Collection, collection_id)
            if owner is None:
                raise CollectionNotFound(f"collection id {collection_id} was deleted meanwhile")
            # Staged first: the file store builds its new index here, before this
            # transaction's first write takes SQLite's write lock.
            after = self.store.stage_reembed(session, collection_id, ids, matrix)
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
            return after

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
        """Vector top-k in one collection (the search store's)."""
        return self.store.search_dense(collection_id, query, k, allowed)

    @property
    def searches_off_process(self) -> bool:
        """Whether searches run in a database server (two may run at once from threads)."""
        return bool(self.store.searches_off_process)

    def search_sparse(
        self, collection_id: int, query: str, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """BM25 top-k in one collection (the search store's)."""
        return self.store.search_sparse(collection_id, query, k, allowed)

    def sparse_share(self, collection_id: int, query: str, best_score: float) -> float:
        """``best_score`` as a share of the most the query could score in this collection."""
        ceiling = self.store.sparse_ceiling(collection_id, query)
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
        """Chunks indexed for keywords in the collection."""
        return self.store.size(collection_id)

    def flush(self) -> None:
        """Save every unsaved index change (the file store; others have none)."""
        self.store.flush()

    def checkpoint(self) -> int:
        """Save what is due (idle callers); returns how many collections were saved."""
        return self.store.checkpoint()


def file_sha256(data: bytes) -> str:
    """Hex sha256 of the bytes (deduplication key)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


__all__ = ["KnowledgeBase", "file_sha256", "validate_collection_name"]
