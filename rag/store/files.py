"""The embedded search store: per-collection FAISS and BM25 in memory, saved as files.

A change is staged as an ``index_journal`` row in the SQL transaction that
changes the chunks; after the commit the in-memory indexes change, and they
are written to disk at checkpoints (atomically, each file named by the last
journal sequence number it holds). On open, journal entries newer than an
index file are replayed, so after a crash at any point the next start sees
either the whole change or none of it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from rag.db.models import ChunkRow, Document, DocumentStatus, IndexJournal
from rag.db.queries import ready_chunks
from rag.errors import EmbeddingMismatch
from rag.faults import kill_point
from rag.index.bm25 import BM25Index
from rag.index.faiss_index import FaissVectorIndex
from rag.locks import ProcessLock, ReadWriteLock
from rag.protocols import AfterCommit
from rag.settings import IndexSettings
from rag.types import ScoredId

log = logging.getLogger(__name__)

_INDEX_FILE = re.compile(r"^(vectors|bm25)\.(\d+)\.(faiss|npz)$")


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


def _journal(session: Session, collection_id: int, op: str, chunk_ids: list[int]) -> int:
    entry = IndexJournal(collection_id=collection_id, op=op, chunk_ids=chunk_ids)
    session.add(entry)
    session.flush()
    return int(entry.seq)


class FileSearchStore:
    """FAISS + BM25 per collection under ``index_dir/c<id>/``, journaled in SQL.

    Args:
        sessions: The knowledge base's SQL sessions (chunks and the journal).
        index_dir: Folder of the index files.
        settings: Index settings (vector kind, HNSW, BM25 parameters, checkpoints).
        writer_lock: The cross-process lock every writer of this data folder holds.
        autoflush: Save index files at checkpoints (every ``checkpoint_entries``
            writes or ``checkpoint_seconds``). Bulk loads turn it off and call
            :meth:`flush` once. Either way the SQL journal covers unsaved changes.
    """

    name = "files"
    searches_off_process = False

    def __init__(
        self,
        sessions: sessionmaker[Session],
        index_dir: Path,
        settings: IndexSettings,
        writer_lock: ProcessLock,
        *,
        autoflush: bool = True,
    ) -> None:
        self.sessions = sessions
        self.index_dir = index_dir
        self.settings = settings
        self.writer_lock = writer_lock
        self.autoflush = autoflush
        index_dir.mkdir(parents=True, exist_ok=True)
        self._indexes: dict[int, CollectionIndexes] = {}
        self._indexes_lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    # ------------------------------------------------------------------ lifecycle
    def open(self, collection_ids: Sequence[int]) -> None:
        """Load every collection's index files and replay newer journal entries."""
        for collection_id in collection_ids:
            self.loaded(collection_id)

    @contextmanager
    def writing(self, collection_id: int) -> Iterator[None]:
        """The collection's writer lock, then this data folder's process lock."""
        indexes = self.loaded(collection_id)
        with indexes.writer, self.writer_lock.hold():
            yield

    def checkpoint(self) -> int:
        """Save the collections whose checkpoint is due (idle callers); returns how many."""
        if not self.autoflush:
            return 0
        return self._save_pending(due_only=True)

    def flush(self) -> None:
        """Save every collection's indexes that have unsaved changes."""
        self._save_pending(due_only=False)

    def close(self) -> None:
        """Save unsaved changes."""
        self.flush()

    # --------------------------------------------------------------------- writes
    def stage_add(
        self,
        session: Session,
        collection_id: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        texts: Sequence[str],
    ) -> AfterCommit:
        """A journal entry now; the indexes change after the commit."""
        indexes = self.loaded(collection_id)
        seq = _journal(session, collection_id, "add", [int(i) for i in ids])

        def apply() -> None:
            with indexes.rw.write():
                self._add_to_indexes(indexes, ids, vectors, list(texts))
            kill_point("commit.indexed")
            self._after_write(indexes, seq)

        return apply

    def stage_remove(self, session: Session, collection_id: int, ids: Sequence[int]) -> AfterCommit:
        """A journal entry now; the ids leave the indexes after the commit."""
        if not ids:
            return _nothing
        indexes = self.loaded(collection_id)
        removed = [int(i) for i in ids]
        seq = _journal(session, collection_id, "remove", removed)

        def apply() -> None:
            with indexes.rw.write():
                self._remove_from_indexes(indexes, removed)
            self._after_write(indexes, seq)

        return apply

    def stage_reembed(
        self, session: Session, collection_id: int, ids: np.ndarray, vectors: np.ndarray
    ) -> AfterCommit:
        """Build the new vector index aside, journal it; swap it in and save after commit.

        A process killed after the commit rebuilds the vector index from the
        stored vectors on the next start (the ``reembed`` entry says so).
        """
        indexes = self.loaded(collection_id)
        fresh = self._build_vectors(ids, vectors, int(vectors.shape[1]))
        kill_point("reembed.built")
        seq = _journal(session, collection_id, "reembed", [])

        def apply() -> None:
            with indexes.rw.write():
                indexes.vectors = fresh
            self._persist(indexes, seq)

        return apply

    def stage_drop(self, session: Session, collection_id: int) -> AfterCommit:
        """Delete the collection's journal; its files go after the commit."""
        session.execute(delete(IndexJournal).where(IndexJournal.collection_id == collection_id))
        indexes = self.loaded(collection_id)

        def apply() -> None:
            with indexes.rw.write():
                with self._indexes_lock:
                    self._indexes.pop(collection_id, None)
                for path in indexes.directory.glob("*"):
                    path.unlink(missing_ok=True)
                if indexes.directory.exists():
                    indexes.directory.rmdir()

        return apply

    def stage_create(self, session: Session, collection_id: int) -> AfterCommit:
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
        return _nothing

    def restore(self, collection_id: int, missing: Sequence[int], extra: Sequence[int]) -> None:
        """Re-add ``missing`` from their stored text and vector, drop ``extra``, save."""
        indexes = self.loaded(collection_id)
        with indexes.rw.write():
            self._remove_from_indexes(indexes, extra)
            self._apply_adds(indexes, missing)
        seq = max(indexes.vectors_seq, indexes.sparse_seq, self._max_seq())
        self._persist(indexes, seq)

    # ---------------------------------------------------------------------- reads
    def search_dense(
        self, collection_id: int, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """FAISS top-k in one collection (under the read lock)."""
        indexes = self.loaded(collection_id)
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
        indexes = self.loaded(collection_id)
        with indexes.rw.read():
            if not len(indexes.sparse):
                return []
            if allowed is not None and not len(allowed):
                return []
            return indexes.sparse.search(query, k, allowed_ids=allowed)

    def sparse_ceiling(self, collection_id: int, query: str) -> float:
        """The most a chunk could score for ``query`` in this collection."""
        indexes = self.loaded(collection_id)
        with indexes.rw.read():
            return indexes.sparse.score_ceiling(indexes.sparse.tokenize_query(query))

    def size(self, collection_id: int) -> int:
        """Chunks in the collection's BM25 index."""
        return len(self.loaded(collection_id).sparse)

    def indexed_ids(self, collection_id: int) -> tuple[set[int], set[int]]:
        """(FAISS ids, BM25 ids)."""
        indexes = self.loaded(collection_id)
        with indexes.rw.read():
            faiss_ids = set(indexes.vectors.ids().tolist()) if indexes.vectors else set()
            return faiss_ids, set(indexes.sparse.ids().tolist())

    def loaded(self, collection_id: int) -> CollectionIndexes:
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

    # ------------------------------------------------------------------- plumbing
    def _new_sparse(self) -> BM25Index:
        return BM25Index.from_settings(self.settings)

    def _new_vectors(self, dim: int, n_expected: int) -> FaissVectorIndex:
        return FaissVectorIndex.from_settings(dim, self.settings, expected_size=n_expected)

    def _build_vectors(self, ids: np.ndarray, matrix: np.ndarray, dim: int) -> FaissVectorIndex:
        """A new vector index holding ``matrix`` under ``ids`` (HNSW when big, as on add)."""
        fresh = self._new_vectors(dim, len(ids))
        fresh.search_threads = self.settings.search_threads
        if len(ids):
            fresh.add(ids, matrix)
        return fresh

    def _vectors_from_sql(self, collection_id: int) -> FaissVectorIndex | None:
        """The vector index rebuilt from every ready chunk's stored vector (None: no chunks)."""
        with self.sessions() as session:
            rows = session.execute(
                ready_chunks(collection_id, ChunkRow.id, ChunkRow.embedding)
            ).all()
        if not rows:
            return None
        matrix = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        return self._build_vectors(ids, matrix, int(matrix.shape[1]))

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
            vectors.search_threads = self.settings.search_threads
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
        s = self.settings
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
        s = self.settings
        return indexes.unsaved_writes >= s.checkpoint_entries or (
            time.monotonic() - indexes.unsaved_since >= s.checkpoint_seconds
        )

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


def _nothing() -> None:
    """The after-commit step of a change with nothing left to do."""
