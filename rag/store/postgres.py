"""The PostgreSQL search store: vectors in pgvector, BM25 postings in SQL tables.

Every change is written in the caller's transaction, so a commit is the
whole change (the after-commit steps do nothing) and any number of processes
share one database: nothing lives in memory, nothing needs replaying.

Dense search orders by pgvector's negative inner product ``<#>`` over the
collection's rows; once a collection is big enough (``vector_kind`` and
``hnsw_threshold``, as FAISS switches) a partial HNSW index answers it.
That index is built by :meth:`PostgresSearchStore.checkpoint` (the idle
worker) with ``CREATE INDEX CONCURRENTLY``, never inside a write: a graph of
52k vectors took two minutes, and in a write's transaction it would hold
the upload and every other collection's writes that long. The index covers
the chunks up to the id it was built at; later chunks are searched exactly
and the two top-k lists merged, because inserting into a graph costs
milliseconds a vector (a 2,000-chunk add into an indexed 52k collection
took 48 s). The next checkpoint after that tail passes 10% rebuilds it.

Keyword search is the Lucene BM25 of :class:`rag.index.bm25.BM25Index`,
scored in one SQL statement from the postings, lengths and per-collection
statistics; the tokeniser is the same function with the same stemming, so
both backends give the same ids and scores (a test checks them to 1e-6).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from rag.db.models import DocumentStatus
from rag.errors import ConfigError, EmbeddingMismatch, InvalidInput
from rag.index.bm25 import lucene_idf
from rag.index.numpy_index import check_k
from rag.protocols import AfterCommit
from rag.settings import IndexSettings
from rag.store import pg_bm25, pg_schema
from rag.text.terms import tokenize
from rag.types import ScoredId

log = logging.getLogger(__name__)

# pg_advisory_lock(key1, key2): key1 marks "a collection's writer" ("RAG" + 1), key2 is
# the collection id, so the lock never collides with other users of advisory locks.
_WRITER_LOCK_CLASS = 0x52414701
# The same for "building a collection's HNSW index" ("RAG" + 2): one builder at a time.
_INDEX_BUILD_LOCK_CLASS = 0x52414702
# Most maintenance_work_mem a build asks for (2 GiB, in kB).
_BUILD_MEMORY_CAP_KB = 2 * 1024 * 1024
# A collection's HNSW index is rebuilt once the chunks added after it (searched exactly,
# not inserted into the graph) exceed this share of the collection, and this many:
# at 10% of 100k chunks the exact tail costs a few ms a query, the rebuild minutes.
_TAIL_SHARE = 0.10
_TAIL_MIN = 5000
# pgvector accepts hnsw.ef_search between 1 and 1000.
_EF_SEARCH_MAX = 1000
# Rows per statement when reading chunks by id (keeps parameter arrays modest).
_READ_BATCH = 5000

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_COPY_UNSAFE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

# Ceilings kept per store: (collection, terms, repeats) -> (stats version, ceiling).
_CEILING_CACHE_SIZE = 1024
# Document frequencies kept per collection (for its latest version seen): at most this
# many terms, about 100 bytes each.
_DF_CACHE_TERMS = 100_000
# Where a pooled connection records the hnsw.ef_search it was SET to (the pool clears
# it with the connection). The setting is the session's: only HNSW scans read it.
_EF_SEARCH_INFO_KEY = "rag.postgres.hnsw_ef_search"

# A collection's vector size and its valid HNSW indexes' names, read in the same
# statement as the dense search (``{search}``): the caller checks both against what
# it assumed (the query's size; the cached index bound) and runs again if they differ.
_DENSE_SQL = """
    WITH meta AS MATERIALIZED (
        SELECT (SELECT vector_dims(embedding) FROM chunk_vectors
                WHERE collection_id = :cid LIMIT 1) AS dim,
               (SELECT string_agg(c.relname, ',' ORDER BY c.relname)
                FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE i.indrelid = 'chunk_vectors'::regclass AND i.indisvalid
                  AND c.relname LIKE :prefix) AS indexes
    )
    SELECT meta.dim, meta.indexes, found.chunk_id, found.distance
    FROM meta LEFT JOIN ({search}) AS found ON meta.dim = {dim}
    ORDER BY found.distance, found.chunk_id
"""


def _vector_literal(vector: np.ndarray) -> str:
    """The text form pgvector reads for a float32 vector (shortest exact repr of each value)."""
    return "[" + ",".join(map(repr, vector.astype(np.float32).astype(np.float64).tolist())) + "]"


def _vectors_copy_payload(collection_id: int, ids: np.ndarray, vectors: np.ndarray) -> bytes:
    """``COPY chunk_vectors (chunk_id, collection_id, embedding) FROM STDIN (FORMAT BINARY)``.

    Built as one numpy record array: about 20x faster than formatting the
    vectors as text, and exact (the float32 bits go over as they are).
    """
    n, dim = vectors.shape
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i4"),
            ("cid_len", ">i4"),
            ("cid", ">i4"),
            ("vec_len", ">i4"),
            ("dim", ">u2"),
            ("unused", ">u2"),
            ("values", ">f4", (dim,)),
        ]
    )
    rows = np.empty(n, dtype=row)
    rows["fields"] = 3
    rows["id_len"] = 4
    rows["id"] = ids
    rows["cid_len"] = 4
    rows["cid"] = collection_id
    rows["vec_len"] = 4 + 4 * dim  # pgvector's binary form: int16 dim, int16 unused, floats
    rows["dim"] = dim
    rows["unused"] = 0
    rows["values"] = vectors
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def dense_search_sql(collection_id: int, dim: int, upto: int | None) -> str:
    """The unfiltered top-k query (bind ``:q``, ``:k``), written so the HNSW index can answer it.

    ``upto``: the last chunk id the collection's HNSW index holds. The chunks
    up to it are searched through the index, later ones exactly, and the two
    top-k lists merged; None: one exact scan. Collection id, size and ``upto``
    are literals: the query must repeat the partial index's predicate and
    expression word for word for the planner to use it.
    """
    distance = f"embedding::vector({int(dim)}) <#> CAST(:q AS vector)"
    select = f"SELECT chunk_id, {distance} AS distance FROM chunk_vectors WHERE"
    order = f"ORDER BY {distance} LIMIT :k"
    if upto is None:
        return f"{select} {pg_schema.hnsw_predicate_sql(collection_id, dim)} {order}"
    tail = (
        f"collection_id = {int(collection_id)} AND vector_dims(embedding) = {int(dim)} "
        f"AND chunk_id > {int(upto)}"
    )
    return (
        f"SELECT chunk_id, distance FROM ("
        f"({select} {pg_schema.hnsw_predicate_sql(collection_id, dim, upto)} {order}) "
        f"UNION ALL ({select} {tail} {order})"
        f") AS found ORDER BY distance LIMIT :k"
    )


def _bound_of(indexes: str | None, dim: int) -> int | None:
    """The last chunk id the newest of the valid ``indexes`` (comma-joined) for ``dim`` holds."""
    uptos = [
        upto
        for name in (indexes or "").split(",")
        if name
        for size, upto in [pg_schema.parse_hnsw_index_name(name)]
        if size == dim
    ]
    return max(uptos, default=None)


def _copy_text(
    cid: str, ids: Sequence[int], counters: Sequence[Counter[str]], *, escape: bool
) -> tuple[str, str]:
    """COPY text of new chunks' postings and lengths rows.

    Postings (term, tf, collection, chunk, length) are sorted by term: in that
    order the primary key (collection_id, term, chunk_id) takes them leaf page
    after leaf page, 2.5x faster than in chunk order (0.4 s against 1.0 s for
    95k postings, measured), where each row lands on a random page. Lengths
    rows carry the chunk's distinct terms as a quoted array literal (a bare
    ``null`` element would be NULL).
    """
    postings: list[str] = []
    lengths: list[str] = []
    for chunk_id, counts in zip(ids, counters, strict=True):
        n = counts.total()
        tail = f"\t{cid}\t{chunk_id}\t{n}\n"
        terms = list(counts)
        if escape:
            postings.extend(f"{t.translate(_COPY_UNSAFE)}\t{tf}{tail}" for t, tf in counts.items())
            quoted = (t.replace("\\", "\\\\").replace('"', '\\"') for t in terms)
            array = "{" + ",".join(f'"{q}"' for q in quoted) + "}"
            array = array.translate(_COPY_UNSAFE)
        else:
            postings.extend(f"{t}\t{tf}{tail}" for t, tf in counts.items())
            array = '{"' + '","'.join(terms) + '"}' if terms else "{}"
        lengths.append(f"{chunk_id}\t{cid}\t{n}\t{array}\n")
    postings.sort()  # "\t" sorts before any term character: by term, then the rest
    return "".join(postings), "".join(lengths)


def _needs_escaping(counters: Sequence[Counter[str]]) -> bool:
    """Whether a term holds a character COPY text or an array literal would misread."""
    vocabulary = "".join(set().union(*counters))
    return any(c in vocabulary for c in '\\\t\n\r"')


def _raw_connection(session: Session) -> Any:
    """The psycopg connection under ``session``'s transaction (for COPY)."""
    return session.connection().connection.driver_connection


def _nothing() -> None:
    """The after-commit step: the commit already made the whole change."""


class PostgresSearchStore:
    """A ``SearchStore`` in PostgreSQL tables (see :mod:`rag.store.pg_schema`).

    Args:
        sessions: Session factory bound to a PostgreSQL engine (psycopg 3).
        index_settings: BM25 k1, b and stemming; the HNSW parameters and when
            a collection gets an HNSW index (``vector_kind``, ``hnsw_threshold``).

    Raises:
        ConfigError: The engine is not PostgreSQL, or ``bm25_idf`` is "okapi".
    """

    name = "postgres"
    searches_off_process = True

    def __init__(self, sessions: sessionmaker[Session], index_settings: IndexSettings) -> None:
        engine = sessions.kw.get("bind")
        if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
            raise ConfigError(
                "the PostgreSQL search store needs sessions bound to a PostgreSQL engine "
                "(database.url = postgresql+psycopg://...); use the 'files' store with SQLite"
            )
        if index_settings.bm25_idf != "lucene":
            raise ConfigError(
                f"index.bm25_idf={index_settings.bm25_idf!r} is not supported by the PostgreSQL "
                "search store (rank-bm25's okapi floor needs the whole vocabulary's mean idf at "
                "every query); set index.bm25_idf = 'lucene' on PostgreSQL"
            )
        self.sessions = sessions
        self.engine: Engine = engine
        self.settings = index_settings
        self.k1 = float(index_settings.bm25_k1)
        self.b = float(index_settings.bm25_b)
        self.stem = bool(index_settings.bm25_stem)
        self._guard = threading.Lock()
        self._writers: dict[int, threading.RLock] = {}
        self._depth: dict[int, int] = {}
        # (collection, vector size) -> the last chunk id its HNSW index holds (None: no
        # index). Only a guess: every search reads the index names again, and searches
        # again if they give another bound (another replica rebuilt or dropped it).
        self._index_bounds: dict[tuple[int, int], int | None] = {}
        self._ceilings: OrderedDict[tuple[int, tuple[str, ...], tuple[int, ...]], tuple[int, float]]
        self._ceilings = OrderedDict()
        # collection -> (bm25_stats version, term -> df at that version).
        self._dfs: dict[int, tuple[int, dict[str, float]]] = {}

    # ------------------------------------------------------------------ lifecycle
    def open(self, collection_ids: Sequence[int]) -> None:
        """Check that pgvector and the store's tables exist (nothing to replay).

        Raises:
            ConfigError: pgvector is missing or old, or the tables were not created.
        """
        with self.engine.begin() as connection:
            pg_schema.ensure_pgvector(connection)
            missing = pg_schema.missing_tables(connection)
        if missing:
            raise ConfigError(
                f"the PostgreSQL search store's tables {missing} are missing; run the database "
                "migrations (alembic upgrade head, revision 0002_postgres_search)"
            )
        log.info("postgres store opened collections=%d", len(collection_ids))

    @contextmanager
    def writing(self, collection_id: int) -> Iterator[None]:
        """Exclusive write access to one collection, across threads and processes.

        A per-collection re-entrant thread lock, and on the outermost entry a
        session-level ``pg_advisory_lock`` held on a connection of its own, so
        two processes writing one collection take turns. (Counts would stay
        exact without it; it keeps re-embedding from racing an ingest.)
        """
        cid = int(collection_id)
        with self._guard:
            lock = self._writers.setdefault(cid, threading.RLock())
        with lock:
            depth = self._depth.get(cid, 0)
            self._depth[cid] = depth + 1
            try:
                if depth:
                    yield
                    return
                with self._advisory_lock(cid):
                    yield
            finally:
                self._depth[cid] = depth

    @contextmanager
    def _advisory_lock(self, collection_id: int) -> Iterator[None]:
        connection = self.engine.connect()
        try:
            connection.execute(
                text("SELECT pg_advisory_lock(:cls, :cid)"),
                {"cls": _WRITER_LOCK_CLASS, "cid": collection_id},
            )
            connection.commit()  # the lock is the session's: it outlives the transaction
            try:
                yield
            finally:
                try:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:cls, :cid)"),
                        {"cls": _WRITER_LOCK_CLASS, "cid": collection_id},
                    )
                    connection.commit()
                except Exception:
                    # Never hand a connection that may still hold the lock back to the pool.
                    connection.invalidate()
                    raise
        finally:
            connection.close()

    def checkpoint(self) -> int:
        """Build the HNSW indexes that are due (idle callers); returns how many were built.

        A collection is due once it is big enough (``vector_kind``,
        ``hnsw_threshold``) and has no valid index for its vector size, or
        the chunks added since its index was built pass ``_TAIL_SHARE`` of
        it. The build is ``CREATE INDEX CONCURRENTLY`` outside any
        transaction: minutes at 50k+ vectors, during which ingestion and
        search go on (searching the old index and the tail, or exactly).
        Writes never build one, so no upload waits on a graph.
        """
        built = 0
        for collection_id, dim in self._due_indexes():
            built += self._build_hnsw_concurrently(collection_id, dim)
        return built

    def flush(self) -> None:
        """Nothing is ever unsaved. HNSW builds are left to :meth:`checkpoint`.

        Not here: ``close`` flushes, and a shutdown must not wait minutes on a graph.
        """

    def close(self) -> None:
        """Nothing to release (the engine belongs to the caller)."""

    def _due_indexes(self) -> list[tuple[int, int]]:
        """(collection id, vector size) of the collections due an HNSW (re)build."""
        kind = self.settings.vector_kind
        if kind == "flat":
            return []
        floor = 0 if kind == "hnsw" else self.settings.hnsw_threshold
        due = []
        with self.sessions() as session:
            sizes = session.execute(
                text("SELECT collection_id, n_docs FROM bm25_stats WHERE n_docs > :floor"),
                {"floor": floor},
            ).all()
            for collection_id, n_docs in sizes:
                dim = self._dimension(session, int(collection_id))
                if dim is None or dim > pg_schema.HNSW_MAX_DIM:
                    continue
                if self._index_due(session, int(collection_id), dim, int(n_docs)):
                    due.append((int(collection_id), dim))
        return due

    @staticmethod
    def _dimension(connection: Session | Connection, collection_id: int) -> int | None:
        """The size of the collection's vectors (None: it has none)."""
        dim = connection.execute(
            text(
                "SELECT vector_dims(embedding) FROM chunk_vectors "
                "WHERE collection_id = :cid LIMIT 1"
            ),
            {"cid": collection_id},
        ).scalar()
        return None if dim is None else int(dim)

    def _indexed_upto(
        self, connection: Session | Connection, collection_id: int, dim: int
    ) -> int | None:
        """The last chunk id the collection's newest valid index for ``dim`` holds (None: none)."""
        uptos = [
            upto
            for name in self._hnsw_indexes(connection, collection_id, valid_only=True)
            for size, upto in [pg_schema.parse_hnsw_index_name(name)]
            if size == dim
        ]
        return max(uptos, default=None)

    def _index_due(
        self, connection: Session | Connection, collection_id: int, dim: int, n_docs: int
    ) -> bool:
        """No valid index for ``dim``, or too many chunks added since it was built."""
        upto = self._indexed_upto(connection, collection_id, dim)
        if upto is None:
            return True
        tail = connection.execute(
            text(
                "SELECT count(*) FROM chunk_vectors WHERE collection_id = :cid AND chunk_id > :upto"
            ),
            {"cid": collection_id, "upto": upto},
        ).scalar_one()
        return int(tail) > max(_TAIL_MIN, _TAIL_SHARE * n_docs)

    def _build_hnsw_concurrently(self, collection_id: int, dim: int) -> int:
        """Build one collection's index unless another process is at it; returns 1 if built.

        The new index replaces the collection's older ones once it is valid.
        """
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            key = {"cls": _INDEX_BUILD_LOCK_CLASS, "cid": collection_id}
            if not conn.execute(text("SELECT pg_try_advisory_lock(:cls, :cid)"), key).scalar():
                return 0
            try:
                # A build interrupted earlier (killed process) leaves an INVALID index.
                for name in self._hnsw_indexes(conn, collection_id, invalid_only=True):
                    conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                stats = conn.execute(
                    text(
                        "SELECT count(*), max(chunk_id) FROM chunk_vectors "
                        "WHERE collection_id = :cid"
                    ),
                    {"cid": collection_id},
                ).one()
                n_chunks, upto = int(stats[0]), stats[1]
                if upto is None or not self._index_due(conn, collection_id, dim, n_chunks):
                    return 0
                self._create_index_concurrently(conn, collection_id, dim, int(upto), n_chunks)
                return 1
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:cls, :cid)"), key)

    def _create_index_concurrently(
        self, conn: Connection, collection_id: int, dim: int, upto: int, n_chunks: int
    ) -> None:
        name = pg_schema.hnsw_index_name(collection_id, dim, upto)
        log.info(
            "building hnsw index collection_id=%d dim=%d chunks=%d", collection_id, dim, n_chunks
        )
        started = time.monotonic()
        # The graph must fit in maintenance_work_mem or pgvector builds it far more
        # slowly (it warns); raise it for this build only, never lower it.
        need_kb = n_chunks * (4 * dim + 16 * self.settings.hnsw_m + 128) * 2 // 1024
        current_kb = int(
            conn.execute(
                text("SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem'")
            ).scalar_one()
        )
        if need_kb > current_kb:
            conn.execute(
                text(f"SET maintenance_work_mem = '{min(need_kb, _BUILD_MEMORY_CAP_KB)}kB'")
            )
        try:
            conn.execute(
                text(
                    pg_schema.create_hnsw_index_sql(
                        name,
                        collection_id,
                        dim,
                        upto,
                        self.settings.hnsw_m,
                        self.settings.hnsw_ef_construction,
                        concurrently=True,
                    )
                )
            )
        finally:
            conn.execute(text("RESET maintenance_work_mem"))
        for old in self._hnsw_indexes(conn, collection_id):
            if old != name:
                conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {old}"))
        log.info(
            "built hnsw index collection_id=%d name=%s seconds=%.1f",
            collection_id,
            name,
            time.monotonic() - started,
        )

    # --------------------------------------------------------------------- writes
    def stage_add(
        self,
        session: Session,
        collection_id: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        texts: Sequence[str],
    ) -> AfterCommit:
        """Write the chunks' vectors, postings, lengths and the collection's new counts."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids) or len(texts) != len(ids):
            raise InvalidInput(
                f"got {len(ids)} ids, {len(texts)} texts and vectors of shape {vectors.shape}; "
                "pass one vector and one text per id"
            )
        if not len(ids):
            return _nothing
        cid = int(collection_id)
        self._copy_vectors(session, cid, ids, vectors)
        self._index_terms(session, cid, ids.tolist(), list(texts))
        log.debug("postgres staged add collection_id=%d chunks=%d", cid, len(ids))
        return _nothing

    def stage_remove(self, session: Session, collection_id: int, ids: Sequence[int]) -> AfterCommit:
        """Delete the chunks' vectors and postings and take them off the counts.

        Must run before the chunk rows are deleted: the ``ON DELETE CASCADE``
        would remove the rows too, but not take them off ``bm25_stats``.
        """
        id_list = [int(i) for i in ids]
        if id_list:
            self._unindex(session, int(collection_id), id_list)
        return _nothing

    def stage_reembed(
        self, session: Session, collection_id: int, ids: np.ndarray, vectors: np.ndarray
    ) -> AfterCommit:
        """Replace every vector of the collection; its HNSW index is rebuilt for the new size."""
        cid = int(collection_id)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise InvalidInput(
                f"got {len(ids)} ids and vectors of shape {vectors.shape}; pass one per id"
            )
        # The new vectors' index is built by the next checkpoint (concurrently); until
        # then searches scan exactly. The old index is dropped now: it indexes nothing
        # live, and keeping it would make every new row an HNSW insert.
        self._drop_hnsw(session, cid)
        session.execute(text("DELETE FROM chunk_vectors WHERE collection_id = :cid"), {"cid": cid})
        if len(ids):
            self._copy_vectors(session, cid, ids, vectors)
        log.info("postgres staged reembed collection_id=%d chunks=%d", cid, len(ids))
        return _nothing

    def stage_drop(self, session: Session, collection_id: int) -> AfterCommit:
        """Delete everything held for the collection, its HNSW index included."""
        self._forget(session, int(collection_id))
        return _nothing

    def stage_create(self, session: Session, collection_id: int) -> AfterCommit:
        """Discard anything an older collection left under this id."""
        self._forget(session, int(collection_id))
        return _nothing

    def restore(self, collection_id: int, missing: Sequence[int], extra: Sequence[int]) -> None:
        """Index ``missing`` chunks from their rows (ready documents only); unindex ``extra``.

        A chunk may lack only its vector or only its terms: each part is
        written only where it is absent. One transaction.
        """
        cid = int(collection_id)
        with self.sessions.begin() as session:
            if extra:
                self._unindex(session, cid, [int(i) for i in extra])
            wanted = sorted({int(i) for i in missing})
            rows: list[Any] = []
            for start in range(0, len(wanted), _READ_BATCH):
                part = wanted[start : start + _READ_BATCH]
                rows += session.execute(
                    text(
                        "SELECT c.id, c.text, c.embedding FROM chunks c "
                        "JOIN documents d ON d.id = c.document_id "
                        "WHERE c.id = ANY(:ids) AND c.collection_id = :cid AND d.status = :ready"
                    ),
                    {"ids": part, "cid": cid, "ready": DocumentStatus.READY.value},
                ).all()
            if not rows:
                return
            rows.sort(key=lambda r: r[0])
            row_ids = [int(r[0]) for r in rows]
            with_vector = set(
                session.scalars(
                    text("SELECT chunk_id FROM chunk_vectors WHERE chunk_id = ANY(:ids)"),
                    {"ids": row_ids},
                )
            )
            with_terms = set(
                session.scalars(
                    text("SELECT chunk_id FROM bm25_lengths WHERE chunk_id = ANY(:ids)"),
                    {"ids": row_ids},
                )
            )
            need_vector = [r for r in rows if r[0] not in with_vector]
            if need_vector:
                matrix = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in need_vector])
                ids = np.asarray([r[0] for r in need_vector], dtype=np.int64)
                self._copy_vectors(session, cid, ids, matrix)
            need_terms = [r for r in rows if r[0] not in with_terms]
            if need_terms:
                self._index_terms(
                    session, cid, [int(r[0]) for r in need_terms], [r[1] for r in need_terms]
                )
        log.warning(
            "postgres restored collection_id=%d vectors=%d terms=%d removed=%d",
            cid,
            len(need_vector),
            len(need_terms),
            len(extra),
        )

    # ---------------------------------------------------------------------- reads
    def search_dense(
        self, collection_id: int, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """Top ``k`` by inner product (HNSW when the collection has its index).

        With ``allowed`` the scan is exact over those ids (the ordering
        expression then differs from the index's, so the planner cannot pick
        the approximate index, which would drop filtered-out candidates).

        Raises:
            EmbeddingMismatch: ``query`` has another size than the collection's vectors.
        """
        k = check_k(k)
        cid = int(collection_id)
        q = np.asarray(query, dtype=np.float32).ravel()
        if allowed is not None and not len(allowed):
            return []
        qdim = len(q)
        params: dict[str, Any] = {
            "q": _vector_literal(q),
            "k": k,
            "cid": cid,
            "prefix": pg_schema.hnsw_index_prefix(cid).replace("_", "\\_") + "%",
        }
        if allowed is not None:
            params["ids"] = np.asarray(allowed, dtype=np.int64).ravel().tolist()
        with self.sessions() as session:
            if allowed is None and (cid, qdim) not in self._index_bounds:
                self._index_bounds[(cid, qdim)] = self._indexed_upto(session, cid, qdim)
            upto = self._index_bounds.get((cid, qdim))
            pooled = session.connection().connection
            ef = min(_EF_SEARCH_MAX, max(k, self.settings.hnsw_ef_search))
            set_ef = allowed is None and pooled.info.get(_EF_SEARCH_INFO_KEY) != ef
            if set_ef:
                # For the connection's life, not the transaction's (committed below):
                # a SET LOCAL would cost every search a round trip.
                session.execute(text(f"SET hnsw.ef_search = {int(ef)}"))
            while True:
                rows = session.execute(
                    text(self._dense_statement(cid, qdim, upto, allowed is not None)), params
                ).all()
                dim, indexes = rows[0][0], rows[0][1]
                if dim is None:
                    return []
                if int(dim) != qdim:
                    raise EmbeddingMismatch(
                        f"collection id {cid} holds {dim}-dimensional vectors but the query "
                        f"vector has {qdim}; query it with the model it records "
                        "(`rag collections list`)"
                    )
                if allowed is not None:
                    break
                fresh = _bound_of(indexes, qdim)
                if fresh == upto:
                    break
                # The index was rebuilt or dropped since: search again with its bound.
                self._index_bounds[(cid, qdim)] = upto = fresh
            if set_ef:
                session.commit()
                pooled.info[_EF_SEARCH_INFO_KEY] = ef
        return [ScoredId(chunk_id=int(r[2]), score=-float(r[3])) for r in rows if r[2] is not None]

    @staticmethod
    def _dense_statement(cid: int, dim: int, upto: int | None, filtered: bool) -> str:
        """The one dense statement: the search, with the collection's size and index names."""
        if filtered:
            # Rows of another size are skipped, not compared (that would raise).
            search = (
                "SELECT chunk_id, embedding <#> CAST(:q AS vector) AS distance "
                "FROM chunk_vectors WHERE collection_id = :cid AND chunk_id = ANY(:ids) "
                f"AND vector_dims(embedding) = {int(dim)} "
                "ORDER BY distance, chunk_id LIMIT :k"
            )
        else:
            search = dense_search_sql(cid, dim, upto)
        return _DENSE_SQL.format(search=search, dim=int(dim))

    def search_sparse(
        self, collection_id: int, query: str, k: int, allowed: np.ndarray | None
    ) -> list[ScoredId]:
        """Top ``k`` by Lucene BM25 (> 0 only), as ``BM25Index`` ranks them.

        Each query term counts as often as it occurs (weight idf x repeats);
        ties go to the smaller chunk id. A query whose terms hold many
        postings runs the exact MaxScore pair of :mod:`rag.store.pg_bm25`
        (the same ids and scores, without summing chunks that hold only
        common terms); others, filtered searches, and a search that meets a
        write between the pair's statements run the one exhaustive statement.
        """
        k = check_k(k)
        if allowed is not None and not len(allowed):
            return []
        counts = Counter(tokenize(query, stem=self.stem))
        if not counts:
            return []
        cid = int(collection_id)
        known_version, known = self._dfs.get(cid, (-1, {}))
        params: dict[str, Any] = {
            "cid": cid,
            "terms": list(counts),
            "repeats": list(counts.values()),
            "known": [known.get(t, -1.0) for t in counts],
            "version": known_version,
            "k1": self.k1,
            "b": self.b,
            "k": k,
        }
        with self.sessions() as session:
            postings = sum(known.get(t, 0.0) for t in counts)
            if allowed is None and postings >= pg_bm25.PRUNE_MIN_POSTINGS:
                pruned = self._search_pruned(session, counts, known, params)
                if pruned is not None:
                    return pruned
            params["allowed"] = (
                None if allowed is None else np.asarray(allowed, dtype=np.int64).ravel().tolist()
            )
            rows = session.execute(pg_bm25.SCORE_SQL, params).all()
        if not rows:  # no chunks
            return []
        self._learn_dfs(cid, counts, int(rows[0][0]), int(rows[0][1]), rows[0][2])
        return [ScoredId(chunk_id=int(r[3]), score=float(r[4])) for r in rows if r[3] is not None]

    def _search_pruned(
        self,
        session: Session,
        counts: Counter[str],
        known: dict[str, float],
        params: dict[str, Any],
    ) -> list[ScoredId] | None:
        """The MaxScore pair (``pg_bm25``); None where the exhaustive statement must run.

        That is when the seed terms' chunks are fewer than k (no threshold), when
        no term can be left out, or when a write changed the collection between
        the two statements.
        """
        seeds = set(pg_bm25.seed_terms({t: known.get(t) for t in counts}))
        row = session.execute(
            pg_bm25.THRESHOLD_SQL, {**params, "seed": [t in seeds for t in counts]}
        ).one_or_none()
        if row is None:  # no chunks
            return []
        version, n_docs, dfs, theta = int(row[0]), int(row[1]), row[2], row[3]
        self._learn_dfs(params["cid"], counts, version, n_docs, dfs)
        if theta is None:
            return None
        df = np.asarray(dfs, dtype=np.float64)
        repeats = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weight = lucene_idf(n_docs, df) * repeats
        weights = {t: float(w) for t, w, d in zip(counts, weight, df, strict=True) if d > 0}
        essential, rest, bound = pg_bm25.split_by_bound(weights, float(theta), self.k1)
        if not rest:
            return None
        rows = session.execute(
            pg_bm25.PRUNED_SQL,
            {
                "cid": params["cid"],
                "essential": essential,
                "essential_w": [weights[t] for t in essential],
                "rest": rest,
                "rest_w": [weights[t] for t in rest],
                "floor": float(theta),
                "bound": bound,
                "k1": self.k1,
                "b": self.b,
                "k": params["k"],
            },
        ).all()
        if not rows or int(rows[0][0]) != version:
            return None
        log.debug(
            "bm25 pruned cid=%s essential=%d rest=%d theta=%.3f bound=%.3f",
            params["cid"],
            len(essential),
            len(rest),
            theta,
            bound,
        )
        return [ScoredId(chunk_id=int(r[1]), score=float(r[2])) for r in rows if r[1] is not None]

    def _learn_dfs(
        self, cid: int, counts: Counter[str], version: int, n_docs: int, dfs: Sequence[float]
    ) -> None:
        """Remember a statement's dfs, and the query's ceiling, for the collection's version."""
        self._remember_dfs(cid, version, dict(zip(counts, dfs, strict=True)))
        self._remember_ceiling(
            (cid, tuple(counts), tuple(counts.values())),
            version,
            self._ceiling(n_docs, dfs, counts),
        )

    def sparse_ceiling(self, collection_id: int, query: str) -> float:
        """As ``BM25Index.score_ceiling``: sum of idf x repeats x (k1 + 1).

        A term the collection never uses counts at the idf of an unseen term.
        The ceiling a keyword search of the same query worked out is reused
        while the collection's keyword state is unchanged (one look at its
        ``bm25_stats`` version instead of counting every term's postings).
        """
        counts = Counter(tokenize(query, stem=self.stem))
        if not counts:
            return 0.0
        cid = int(collection_id)
        key = (cid, tuple(counts), tuple(counts.values()))
        with self.sessions() as session:
            with self._guard:
                cached = self._ceilings.get(key)
            if cached is not None:
                version = session.execute(pg_bm25.STATS_VERSION_SQL, {"cid": cid}).scalar()
                if version is not None and int(version) == cached[0]:
                    return cached[1]
            rows = session.execute(pg_bm25.DF_SQL, {"cid": cid, "terms": list(counts)}).all()
        df = dict((r[0], float(r[1])) for r in rows)
        n_docs = max(int(rows[0][2]), 1) if rows else 1
        ceiling = self._ceiling(n_docs, [df.get(t, 0.0) for t in counts], counts)
        if rows and rows[0][3] is not None:
            self._remember_ceiling(key, int(rows[0][3]), ceiling)
        return ceiling

    def _ceiling(self, n_docs: int, dfs: Sequence[float], counts: Counter[str]) -> float:
        """Sum of Lucene idf x repeats x (k1 + 1) from each query term's df."""
        df = np.asarray(dfs, dtype=np.float64)
        repeats = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        return float((lucene_idf(max(n_docs, 1), df) * repeats).sum() * (self.k1 + 1.0))

    def _remember_dfs(self, collection_id: int, version: int, dfs: dict[str, float]) -> None:
        with self._guard:
            known_version, known = self._dfs.get(collection_id, (-1, {}))
            if known_version != version or len(known) > _DF_CACHE_TERMS:
                self._dfs[collection_id] = (version, dfs)
            else:
                known.update(dfs)

    def _remember_ceiling(
        self, key: tuple[int, tuple[str, ...], tuple[int, ...]], version: int, ceiling: float
    ) -> None:
        with self._guard:
            self._ceilings[key] = (version, ceiling)
            self._ceilings.move_to_end(key)
            while len(self._ceilings) > _CEILING_CACHE_SIZE:
                self._ceilings.popitem(last=False)

    def size(self, collection_id: int) -> int:
        """Chunks indexed for keywords in the collection (from ``bm25_stats``)."""
        with self.sessions() as session:
            n = session.execute(
                text("SELECT n_docs FROM bm25_stats WHERE collection_id = :cid"),
                {"cid": int(collection_id)},
            ).scalar()
        return int(n or 0)

    def indexed_ids(self, collection_id: int) -> tuple[set[int], set[int]]:
        """(ids with a vector, ids with keyword terms) as the tables hold them."""
        cid = {"cid": int(collection_id)}
        with self.sessions() as session:
            vectors = session.scalars(
                text("SELECT chunk_id FROM chunk_vectors WHERE collection_id = :cid"), cid
            ).all()
            terms = session.scalars(
                text("SELECT chunk_id FROM bm25_lengths WHERE collection_id = :cid"), cid
            ).all()
        return {int(i) for i in vectors}, {int(i) for i in terms}

    # ------------------------------------------------------------------- plumbing
    def _copy_vectors(
        self, session: Session, collection_id: int, ids: np.ndarray, vectors: np.ndarray
    ) -> None:
        payload = _vectors_copy_payload(collection_id, ids, vectors)
        with _raw_connection(session).cursor() as cursor:
            with cursor.copy(
                "COPY chunk_vectors (chunk_id, collection_id, embedding) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(payload)

    def _index_terms(
        self, session: Session, collection_id: int, ids: list[int], texts: list[str]
    ) -> int:
        """Postings and lengths of new chunks, then the counts; returns the new N."""
        cid = str(collection_id)
        counters = [Counter(tokenize(chunk_text, stem=self.stem)) for chunk_text in texts]
        # Tokens are letter, digit or ideograph runs; escape anyway should that change.
        postings, lengths = _copy_text(cid, ids, counters, escape=_needs_escaping(counters))
        total = sum(c.total() for c in counters)
        with _raw_connection(session).cursor() as cursor:
            with cursor.copy(
                "COPY bm25_postings (term, tf, collection_id, chunk_id, length) FROM STDIN"
            ) as copy:
                copy.write(postings)
            with cursor.copy(
                "COPY bm25_lengths (chunk_id, collection_id, length, terms) FROM STDIN"
            ) as copy:
                copy.write(lengths)
        # An upsert of increments: a concurrent transaction waits on the row and adds to
        # the committed value, so no count is lost (no read-modify-write in Python).
        n_docs = session.execute(
            text(
                "INSERT INTO bm25_stats (collection_id, n_docs, total_len) VALUES (:cid, :n, :t) "
                "ON CONFLICT (collection_id) DO UPDATE SET "
                "n_docs = bm25_stats.n_docs + excluded.n_docs, "
                "total_len = bm25_stats.total_len + excluded.total_len "
                "RETURNING n_docs"
            ),
            {"cid": collection_id, "n": len(ids), "t": total},
        ).scalar_one()
        return int(n_docs)

    def _unindex(self, session: Session, collection_id: int, ids: list[int]) -> None:
        """Delete chunks' rows; their postings are found by the terms their lengths row keeps."""
        params = {"cid": collection_id, "ids": ids}
        session.execute(
            text("DELETE FROM chunk_vectors WHERE collection_id = :cid AND chunk_id = ANY(:ids)"),
            params,
        )
        session.execute(
            text(
                "DELETE FROM bm25_postings p USING ("
                "  SELECT l.chunk_id, unnest(l.terms) AS term FROM bm25_lengths l"
                "  WHERE l.collection_id = :cid AND l.chunk_id = ANY(:ids)) gone "
                "WHERE p.collection_id = :cid AND p.term = gone.term "
                "AND p.chunk_id = gone.chunk_id"
            ),
            params,
        )
        session.execute(
            text(
                "WITH gone AS (DELETE FROM bm25_lengths "
                "  WHERE collection_id = :cid AND chunk_id = ANY(:ids) RETURNING length) "
                "UPDATE bm25_stats SET n_docs = n_docs - (SELECT count(*) FROM gone), "
                "total_len = total_len - (SELECT coalesce(sum(length), 0) FROM gone) "
                "WHERE collection_id = :cid AND EXISTS (SELECT 1 FROM gone)"
            ),
            params,
        )

    def _forget(self, session: Session, collection_id: int) -> None:
        self._drop_hnsw(session, collection_id)
        for table in ("chunk_vectors", "bm25_postings", "bm25_lengths", "bm25_stats"):
            session.execute(
                text(f"DELETE FROM {table} WHERE collection_id = :cid"), {"cid": collection_id}
            )

    @staticmethod
    def _hnsw_indexes(
        connection: Session | Connection,
        collection_id: int,
        *,
        valid_only: bool = False,
        invalid_only: bool = False,
    ) -> dict[str, str]:
        """The collection's HNSW indexes: name -> definition (INVALID: a failed build)."""
        prefix = pg_schema.hnsw_index_prefix(collection_id).replace("_", "\\_")
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid "
                "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = 'chunk_vectors'::regclass AND c.relname LIKE :prefix"
            ),
            {"prefix": prefix + "%"},
        ).all()
        return {
            str(r[0]): str(r[1])
            for r in rows
            if not (valid_only and not r[2]) and not (invalid_only and r[2])
        }

    def _drop_hnsw(self, session: Session, collection_id: int) -> None:
        for name in self._hnsw_indexes(session, collection_id):
            session.execute(text(f"DROP INDEX IF EXISTS {name}"))


__all__ = ["PostgresSearchStore", "dense_search_sql"]
