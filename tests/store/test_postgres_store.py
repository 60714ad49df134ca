"""PostgresSearchStore on a real PostgreSQL 18 + pgvector: dense search, writes, repair, locks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy
from sqlalchemy import delete, text
from sqlalchemy.orm import Session, sessionmaker

from rag.db.models import Base, ChunkRow, Collection, Document, DocumentStatus
from rag.errors import ConfigError, EmbeddingMismatch
from rag.index.faiss_index import FaissVectorIndex
from rag.settings import IndexSettings
from rag.store import pg_schema
from rag.store.postgres import PostgresSearchStore, dense_search_sql
from rag.types import ScoredId

pytestmark = pytest.mark.integration


@dataclass
class PgStore:
    """A store on a fresh database; helpers write chunk rows as the knowledge base does."""

    store: PostgresSearchStore
    sessions: sessionmaker[Session]
    engine: sqlalchemy.Engine

    def create_collection(self, name: str) -> int:
        with self.sessions.begin() as session:
            row = Collection(name=name)
            session.add(row)
            session.flush()
            self.store.stage_create(session, row.id)
            return int(row.id)

    def add_document(
        self,
        collection_id: int,
        texts: Sequence[str],
        vectors: np.ndarray,
        before_index: Callable[[], object] | None = None,
    ) -> tuple[str, np.ndarray]:
        """One ready document's chunks, indexed in the same transaction; (doc id, chunk ids).

        ``before_index`` runs once the rows are flushed, before the store stages them.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.sessions.begin() as session:
            doc = Document(
                collection_id=collection_id,
                filename="f.txt",
                sha256=f"{np.random.default_rng().integers(1 << 62):064x}",
                status=DocumentStatus.READY.value,
            )
            session.add(doc)
            session.flush()
            rows = [
                ChunkRow(
                    document_id=doc.id,
                    collection_id=collection_id,
                    ordinal=i,
                    text=t,
                    page_start=1,
                    page_end=1,
                    char_start=0,
                    char_end=len(t),
                    embedding=vectors[i].tobytes(),
                )
                for i, t in enumerate(texts)
            ]
            session.add_all(rows)
            session.flush()
            ids = np.asarray([r.id for r in rows], dtype=np.int64)
            if before_index is not None:
                before_index()
            self.store.stage_add(session, collection_id, ids, vectors, list(texts))
            return doc.id, ids

    def delete_chunks(self, collection_id: int, ids: Sequence[int]) -> None:
        """Unindex, then delete the rows, as the knowledge base's delete path does."""
        with self.sessions.begin() as session:
            self.store.stage_remove(session, collection_id, list(ids))
            session.execute(delete(ChunkRow).where(ChunkRow.id.in_([int(i) for i in ids])))

    def stats(self, collection_id: int) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT n_docs, total_len FROM bm25_stats WHERE collection_id = :c"),
                {"c": collection_id},
            ).one()
        return int(row[0]), int(row[1])

    def true_stats(self, collection_id: int) -> tuple[int, int]:
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*), coalesce(sum(length), 0) FROM bm25_lengths "
                    "WHERE collection_id = :c"
                ),
                {"c": collection_id},
            ).one()
        return int(row[0]), int(row[1])


def make_pg_store(pg_url: str, **index: object) -> PgStore:
    """The core tables, the store's tables, and a store with ``index`` settings."""
    engine = sqlalchemy.create_engine(pg_url, pool_size=8)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        pg_schema.create_schema(connection)
    sessions = sessionmaker(engine, expire_on_commit=False)
    store = PostgresSearchStore(sessions, IndexSettings(**index))  # type: ignore[arg-type]
    store.open([])
    return PgStore(store=store, sessions=sessions, engine=engine)


@pytest.fixture
def pg(pg_url: str) -> Iterator[PgStore]:
    made = make_pg_store(pg_url)
    yield made
    made.engine.dispose()


def hnsw_indexes(conn: sqlalchemy.Connection, collection_id: int) -> list[tuple[str, str]]:
    prefix = pg_schema.hnsw_index_prefix(collection_id)
    rows = conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunk_vectors'")
    ).all()
    return [(r[0], r[1]) for r in rows if r[0].startswith(prefix)]


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def words(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200)]
    return [" ".join(rng.choice(vocab, size=int(rng.integers(3, 30)))) for _ in range(n)]


def brute_force(ids: np.ndarray, vectors: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    scores = vectors @ q
    order = np.lexsort((ids, -scores))[:k]
    return ids[order].tolist()


def test_dense_top_k_equals_numpy_and_faiss_flat(pg: PgStore) -> None:
    cid = pg.create_collection("c")
    vectors = unit_vectors(500, 32, seed=1)
    _, ids = pg.add_document(cid, words(500, 1), vectors)
    faiss = FaissVectorIndex(32)
    faiss.add(ids, vectors)
    for seed in range(5):
        q = unit_vectors(1, 32, seed=100 + seed)[0]
        got = pg.store.search_dense(cid, q, 10, None)
        assert [h.chunk_id for h in got] == brute_force(ids, vectors, q, 10)
        assert [h.chunk_id for h in got] == [h.chunk_id for h in faiss.search(q, 10)]
        expected = {int(i): float(s) for i, s in zip(ids, vectors @ q, strict=True)}
        for hit in got:
            assert hit.score == pytest.approx(expected[hit.chunk_id], abs=1e-5)
        allowed = ids[seed::7]
        got_allowed = pg.store.search_dense(cid, q, 10, allowed)
        mask = np.isin(ids, allowed)
        assert [h.chunk_id for h in got_allowed] == brute_force(ids[mask], vectors[mask], q, 10)
    assert pg.store.search_dense(cid, q, 10, np.zeros(0, dtype=np.int64)) == []


def test_dense_with_hnsw_index_finds_the_exact_neighbours(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.store.postgres as postgres_module

    made = make_pg_store(pg_url, vector_kind="hnsw", hnsw_ef_search=200)
    try:
        cid = made.create_collection("c")
        vectors = unit_vectors(400, 16, seed=2)
        _, ids = made.add_document(cid, words(400, 2), vectors)
        with made.engine.connect() as conn:
            assert hnsw_indexes(conn, cid) == []  # writes never build one
        assert made.store.checkpoint() == 1
        assert made.store.checkpoint() == 0
        with made.engine.connect() as conn:
            ((name, indexdef),) = hnsw_indexes(conn, cid)
            assert "hnsw" in indexdef and f"collection_id = {cid}" in indexdef
            assert pg_schema.parse_hnsw_index_name(name) == (16, int(ids.max()))

        # chunks added after the build are not graph inserts: they are scanned exactly
        more = unit_vectors(30, 16, seed=4)
        _, more_ids = made.add_document(cid, words(30, 4), more)
        all_ids, all_vectors = np.concatenate([ids, more_ids]), np.concatenate([vectors, more])
        with made.engine.connect() as conn:
            plan = "\n".join(
                conn.execute(
                    text("EXPLAIN " + dense_search_sql(cid, 16, int(ids.max()))),
                    {"q": "[" + ",".join(["0.25"] * 16) + "]", "k": 5},
                ).scalars()
            )
        assert name in plan
        for seed in range(3):
            q = unit_vectors(1, 16, seed=10 + seed)[0]
            got = [h.chunk_id for h in made.store.search_dense(cid, q, 5, None)]
            # 430 points, ef_search 200: the graph search is exact at this size.
            assert got == brute_force(all_ids, all_vectors, q, 5)
        assert made.store.search_dense(cid, more[3], 1, None)[0].chunk_id == int(more_ids[3])
        assert made.store.checkpoint() == 0  # 30 new chunks: below the rebuild threshold
        monkeypatch.setattr(postgres_module, "_TAIL_MIN", 10)
        monkeypatch.setattr(postgres_module, "_TAIL_SHARE", 0.05)
        assert made.store.checkpoint() == 1  # 30 > max(10, 5% of 430): rebuilt over all
        with made.engine.connect() as conn:
            ((rebuilt, _),) = hnsw_indexes(conn, cid)
        assert pg_schema.parse_hnsw_index_name(rebuilt) == (16, int(more_ids.max()))

        # a build another process holds is left to it; an interrupted (INVALID) one is replaced
        with made.engine.connect() as other:
            other.execute(text("SELECT pg_advisory_lock(:a, :b)"), {"a": 0x52414702, "b": cid})
            other.execute(
                text(
                    "UPDATE pg_index SET indisvalid = false WHERE indexrelid = CAST(:n AS regclass)"
                ),
                {"n": rebuilt},
            )
            other.commit()
            assert made.store.checkpoint() == 0
            other.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": 0x52414702, "b": cid})
            other.commit()
        assert made.store.checkpoint() == 1
        with made.engine.connect() as conn:
            ((again, _),) = hnsw_indexes(conn, cid)
        assert again != rebuilt
        q = unit_vectors(1, 16, seed=3)[0]
        got = [h.chunk_id for h in made.store.search_dense(cid, q, 5, None)]
        assert got == brute_force(all_ids, all_vectors, q, 5)
    finally:
        made.engine.dispose()


def test_dimension_mismatch_is_an_embedding_mismatch(pg: PgStore) -> None:
    cid = pg.create_collection("c")
    pg.add_document(cid, ["alpha beta"], unit_vectors(1, 8, seed=1))
    with pytest.raises(EmbeddingMismatch, match="8-dimensional"):
        pg.store.search_dense(cid, unit_vectors(1, 4, seed=1)[0], 3, None)


def test_empty_collection_searches_return_nothing(pg: PgStore) -> None:
    cid = pg.create_collection("c")
    assert pg.store.search_dense(cid, unit_vectors(1, 8, seed=1)[0], 3, None) == []
    assert pg.store.search_sparse(cid, "anything", 3, None) == []
    assert pg.store.size(cid) == 0
    assert pg.store.indexed_ids(cid) == (set(), set())


def test_reembed_to_another_dimension(pg_url: str) -> None:
    made = make_pg_store(pg_url, vector_kind="hnsw")
    try:
        cid = made.create_collection("c")
        _, ids = made.add_document(cid, words(50, 3), unit_vectors(50, 8, seed=3))
        assert made.store.checkpoint() == 1
        fresh = unit_vectors(50, 24, seed=4)
        with made.sessions.begin() as session:
            made.store.stage_reembed(session, cid, ids, fresh)
        q = fresh[7]
        got = made.store.search_dense(cid, q, 3, None)
        assert got[0].chunk_id == int(ids[7])
        assert [h.chunk_id for h in got] == brute_force(ids, fresh, q, 3)
        with pytest.raises(EmbeddingMismatch):
            made.store.search_dense(cid, unit_vectors(1, 8, seed=1)[0], 3, None)
        with made.engine.connect() as conn:
            assert hnsw_indexes(conn, cid) == []  # the 8-dimensional one is gone
        made.store.flush()  # saves nothing, builds nothing
        with made.engine.connect() as conn:
            assert hnsw_indexes(conn, cid) == []
        assert made.store.checkpoint() == 1
        with made.engine.connect() as conn:
            ((_, indexdef),) = hnsw_indexes(conn, cid)
        assert "vector(24)" in indexdef
        with made.sessions.begin() as session:  # the same size again: a new index replaces it
            made.store.stage_reembed(session, cid, ids, fresh[::-1].copy())
        assert made.store.checkpoint() == 1
        with made.engine.connect() as conn:
            ((_, again),) = hnsw_indexes(conn, cid)
        assert "vector(24)" in again
        assert made.store.search_dense(cid, fresh[7], 1, None)[0].chunk_id == int(ids[-8])
        assert made.store.size(cid) == 50  # BM25 untouched
        with made.sessions.begin() as session:
            made.store.stage_drop(session, cid)
        with made.engine.connect() as conn:
            assert hnsw_indexes(conn, cid) == []
    finally:
        made.engine.dispose()


def test_remove_drop_and_create_keep_stats_exact(pg: PgStore) -> None:
    a = pg.create_collection("a")
    b = pg.create_collection("b")
    _, ids_a = pg.add_document(a, words(40, 5), unit_vectors(40, 8, seed=5))
    _, ids_b = pg.add_document(b, words(30, 6), unit_vectors(30, 8, seed=6))
    pg.delete_chunks(a, ids_a[:15].tolist())
    assert pg.stats(a) == pg.true_stats(a)
    assert pg.stats(a)[0] == 25 == pg.store.size(a)
    vec_ids, term_ids = pg.store.indexed_ids(a)
    assert vec_ids == term_ids == set(ids_a[15:].tolist())
    # removing ids already gone, or of another collection, changes nothing
    pg.delete_chunks(a, ids_a[:15].tolist())
    with pg.sessions.begin() as session:
        pg.store.stage_remove(session, a, ids_b[:5].tolist())
    assert pg.stats(a)[0] == 25 and pg.stats(b)[0] == 30

    with pg.sessions.begin() as session:
        pg.store.stage_drop(session, a)
        session.execute(delete(Collection).where(Collection.id == a))
    assert pg.store.size(a) == 0
    assert pg.store.indexed_ids(a) == (set(), set())
    assert pg.store.size(b) == 30
    with pg.sessions.begin() as session:
        pg.store.stage_create(session, b)  # a reused id forgets what was there
    assert pg.store.indexed_ids(b) == (set(), set())
    assert pg.store.search_sparse(b, "worda", 5, None) == []


def test_restore_adds_missing_parts_and_removes_extra(pg: PgStore) -> None:
    cid = pg.create_collection("c")
    texts = words(20, 7)
    vectors = unit_vectors(20, 8, seed=7)
    _, ids_a = pg.add_document(cid, texts[:10], vectors[:10])
    doc_b, ids_b = pg.add_document(cid, texts[10:], vectors[10:])
    every = set(ids_a.tolist()) | set(ids_b.tolist())
    before = pg.store.search_sparse(cid, texts[3], 5, None)
    lost_vectors = [*ids_a[:3].tolist(), int(ids_b[0])]
    lost_terms = ids_a[2:6].tolist()
    with pg.engine.begin() as conn:  # lose some vectors and some terms behind the store's back
        conn.execute(
            text("DELETE FROM chunk_vectors WHERE chunk_id = ANY(:ids)"), {"ids": lost_vectors}
        )
        conn.execute(
            text("DELETE FROM bm25_postings WHERE chunk_id = ANY(:ids)"), {"ids": lost_terms}
        )
        conn.execute(
            text(
                "WITH g AS (DELETE FROM bm25_lengths WHERE chunk_id = ANY(:ids) RETURNING length) "
                "UPDATE bm25_stats SET n_docs = n_docs - (SELECT count(*) FROM g), "
                "total_len = total_len - (SELECT sum(length) FROM g)"
            ),
            {"ids": lost_terms},
        )
        # document b is no longer ready: its chunks are not restored from SQL
        conn.execute(text("UPDATE documents SET status = 'failed' WHERE id = :d"), {"d": doc_b})
    vec_ids, term_ids = pg.store.indexed_ids(cid)
    assert vec_ids == every - set(lost_vectors) and term_ids == every - set(lost_terms)

    pg.store.restore(cid, missing=[*lost_vectors, *lost_terms], extra=[int(ids_b[9])])
    vec_ids, term_ids = pg.store.indexed_ids(cid)
    assert vec_ids == every - {int(ids_b[0]), int(ids_b[9])}
    assert term_ids == every - {int(ids_b[9])}
    assert pg.stats(cid) == pg.true_stats(cid)

    with pg.engine.begin() as conn:
        conn.execute(text("UPDATE documents SET status = 'ready'"))
    pg.store.restore(cid, missing=[int(ids_b[0]), int(ids_b[9])], extra=[])
    vec_ids, term_ids = pg.store.indexed_ids(cid)
    assert vec_ids == term_ids == every
    assert pg.stats(cid) == pg.true_stats(cid)
    after = pg.store.search_sparse(cid, texts[3], 5, None)
    assert [h.chunk_id for h in after] == [h.chunk_id for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-9)
    assert pg.store.search_dense(cid, vectors[1], 1, None)[0].chunk_id == int(ids_a[1])


def test_concurrent_adds_from_two_threads_keep_stats_exact(pg: PgStore) -> None:
    """Two transactions adding to one collection at once (no writing() guard) lose no count."""
    cid = pg.create_collection("c")
    pg.add_document(cid, ["seed text"], unit_vectors(1, 8, seed=0))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def ingest(seed: int) -> None:
        try:
            for round_ in range(5):
                texts = words(20, seed * 100 + round_)
                vectors = unit_vectors(20, 8, seed=seed * 100 + round_)
                # Both transactions are open before either writes stats.
                pg.add_document(cid, texts, vectors, before_index=barrier.wait)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=ingest, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pg.stats(cid) == pg.true_stats(cid)
    assert pg.stats(cid)[0] == 201


def test_writing_is_exclusive_across_connections_and_reentrant(pg: PgStore) -> None:
    cid = pg.create_collection("c")

    def other_process_can_lock() -> bool:
        with pg.engine.connect() as conn:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": 0x52414701, "b": cid}
                ).scalar()
            )
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": 0x52414701, "b": cid})
            return got

    with pg.store.writing(cid):
        assert not other_process_can_lock()
        with pg.store.writing(cid):  # re-entrant in one thread
            assert not other_process_can_lock()
        assert not other_process_can_lock()
    assert other_process_can_lock()


def test_okapi_idf_and_sqlite_are_config_errors(pg_url: str, tmp_path) -> None:  # noqa: ANN001
    engine = sqlalchemy.create_engine(pg_url)
    with pytest.raises(ConfigError, match="lucene"):
        PostgresSearchStore(sessionmaker(engine), IndexSettings(bm25_idf="okapi"))
    engine.dispose()
    sqlite = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match="PostgreSQL"):
        PostgresSearchStore(sessionmaker(sqlite), IndexSettings())


def test_open_without_tables_says_to_migrate(pg_url: str) -> None:
    engine = sqlalchemy.create_engine(pg_url)
    store = PostgresSearchStore(sessionmaker(engine), IndexSettings())
    with pytest.raises(ConfigError, match="migrations"):
        store.open([])
    engine.dispose()


def _store_tables_shape(engine: sqlalchemy.Engine) -> dict[str, object]:
    inspector = sqlalchemy.inspect(engine)
    return {
        t.name: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(t.name)],
            inspector.get_pk_constraint(t.name)["constrained_columns"],
            sorted(
                (f["constrained_columns"], f["referred_table"], f["options"].get("ondelete"))
                for f in inspector.get_foreign_keys(t.name)
            ),
            sorted((i["name"], i["column_names"]) for i in inspector.get_indexes(t.name)),
            [
                (i["indexname"], i["indexdef"])
                for i in engine.connect()
                .execute(
                    text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                    {"t": t.name},
                )
                .mappings()
            ],
        )
        for t in pg_schema.TABLES
        if inspector.has_table(t.name)
    }


def test_migration_0002_creates_the_tables_the_store_uses(pg_url: str) -> None:
    """The Alembic revision spells out the same tables as pg_schema; its downgrade drops them."""
    from alembic import command

    from rag.db.migrate import alembic_config, upgrade_database

    engine = sqlalchemy.create_engine(pg_url)
    try:
        upgrade_database(engine)
        PostgresSearchStore(sessionmaker(engine), IndexSettings()).open([])  # no ConfigError
        migrated = _store_tables_shape(engine)
        assert set(migrated) == {t.name for t in pg_schema.TABLES}
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001_initial")
        assert _store_tables_shape(engine) == {}
        with engine.begin() as conn:
            pg_schema.create_schema(conn)
        assert _store_tables_shape(engine) == migrated
    finally:
        engine.dispose()


def test_terms_with_copy_special_characters_round_trip(
    pg: PgStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the tokeniser ever emit them, backslashes, tabs, quotes and 'null' are escaped."""
    import rag.store.postgres as postgres_module

    monkeypatch.setattr(postgres_module, "tokenize", lambda text, stem=True: text.split("|"))
    cid = pg.create_collection("c")
    odd = ["back\\slash", "tab\tterm", 'quo"te', "null", "NULL", "new\nline", "a,b", "{x}"]
    _, ids = pg.add_document(cid, ["|".join(odd), "plain|null"], unit_vectors(2, 4, seed=1))
    for term in odd:
        hits = pg.store.search_sparse(cid, term, 5, None)
        assert int(ids[0]) in [h.chunk_id for h in hits], term
    pg.delete_chunks(cid, [int(ids[0])])
    with pg.engine.connect() as conn:
        left = conn.execute(text("SELECT term FROM bm25_postings ORDER BY term")).scalars().all()
    assert left == ["null", "plain"]
    assert pg.stats(cid) == pg.true_stats(cid) == (1, 2)


@contextmanager
def statements(engine: sqlalchemy.Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends while the block runs."""
    sent: list[str] = []

    def capture(conn: object, cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    sqlalchemy.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield sent
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", capture)


def test_dense_search_is_one_statement_that_follows_another_replicas_index_changes(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.store.postgres as postgres_module

    reader = make_pg_store(pg_url, vector_kind="hnsw", hnsw_ef_search=200)
    writer = make_pg_store(pg_url, vector_kind="hnsw", hnsw_ef_search=200)  # another replica
    try:
        cid = writer.create_collection("c")
        vectors = unit_vectors(300, 16, seed=21)
        _, ids = writer.add_document(cid, words(300, 21), vectors)
        q = unit_vectors(1, 16, seed=22)[0]
        assert [h.chunk_id for h in reader.store.search_dense(cid, q, 5, None)] == brute_force(
            ids, vectors, q, 5
        )
        assert writer.store.checkpoint() == 1
        ((first, _),) = hnsw_indexes(writer.engine.connect(), cid)
        with statements(reader.engine) as sent:
            got = [h.chunk_id for h in reader.store.search_dense(cid, q, 5, None)]
        assert got == brute_force(ids, vectors, q, 5)
        assert f"chunk_id <= {int(ids.max())}" in sent[-1]  # found the new index, searched again
        with statements(reader.engine) as sent:
            for _ in range(3):
                reader.store.search_dense(cid, q, 5, None)
        assert len(sent) == 3  # no look-ups, no SET: one statement a search
        with reader.engine.connect() as conn:
            plan = "\n".join(
                conn.execute(
                    text(
                        "EXPLAIN " + reader.store._dense_statement(cid, 16, int(ids.max()), False)
                    ),
                    {
                        "q": postgres_module._vector_literal(q),
                        "k": 5,
                        "cid": cid,
                        "prefix": pg_schema.hnsw_index_prefix(cid).replace("_", "\\_") + "%",
                    },
                ).scalars()
            )
        assert first in plan  # the folded-in look-ups leave the index usable

        # the other replica adds chunks and rebuilds the index over them
        more = unit_vectors(40, 16, seed=23)
        _, more_ids = writer.add_document(cid, words(40, 23), more)
        monkeypatch.setattr(postgres_module, "_TAIL_MIN", 10)
        monkeypatch.setattr(postgres_module, "_TAIL_SHARE", 0.05)
        assert writer.store.checkpoint() == 1
        all_ids, all_vectors = np.concatenate([ids, more_ids]), np.concatenate([vectors, more])
        with statements(reader.engine) as sent:
            got = [h.chunk_id for h in reader.store.search_dense(cid, q, 5, None)]
        assert got == brute_force(all_ids, all_vectors, q, 5)
        assert f"chunk_id <= {int(more_ids.max())}" in sent[-1]

        # ... and re-embeds the collection to another size
        fresh = unit_vectors(340, 24, seed=24)
        with writer.sessions.begin() as session:
            writer.store.stage_reembed(session, cid, all_ids, fresh)
        with pytest.raises(EmbeddingMismatch, match="24-dimensional"):
            reader.store.search_dense(cid, q, 5, None)
        q24 = fresh[9]
        got = [h.chunk_id for h in reader.store.search_dense(cid, q24, 5, None)]
        assert got == brute_force(all_ids, fresh, q24, 5)
        allowed = all_ids[::3]
        got = [h.chunk_id for h in reader.store.search_dense(cid, q24, 5, allowed)]
        assert got == brute_force(allowed, fresh[::3], q24, 5)
        with pytest.raises(EmbeddingMismatch):
            reader.store.search_dense(cid, q, 5, allowed)
    finally:
        reader.store.close()
        writer.store.close()
        reader.engine.dispose()
        writer.engine.dispose()


def test_sparse_ceiling_reuses_the_search_until_another_replica_changes_the_terms(
    pg_url: str,
) -> None:
    reader = make_pg_store(pg_url)
    writer = make_pg_store(pg_url)  # another replica
    try:
        cid = writer.create_collection("c")
        _, ids = writer.add_document(
            cid, ["alpha beta gamma", "beta delta", "gamma gamma"], unit_vectors(3, 8, seed=31)
        )
        query = "alpha gamma gamma omega"

        def fresh_ceiling() -> float:
            return PostgresSearchStore(writer.sessions, IndexSettings()).sparse_ceiling(cid, query)

        def fresh_search() -> list[ScoredId]:
            other = PostgresSearchStore(writer.sessions, IndexSettings())
            return other.search_sparse(cid, query, 5, None)

        assert reader.store.search_sparse(cid, query, 5, None)
        with statements(reader.engine) as sent:
            ceiling = reader.store.sparse_ceiling(cid, query)
        assert len(sent) == 1 and "xmin" in sent[0] and "bm25_postings" not in sent[0]
        assert ceiling == fresh_ceiling()

        # same N and total length, other terms: only the version tells them apart
        writer.delete_chunks(cid, [int(ids[0])])
        writer.add_document(cid, ["delta delta delta"], unit_vectors(1, 8, seed=32))
        assert ceiling != fresh_ceiling()
        assert reader.store.sparse_ceiling(cid, query) == fresh_ceiling()
        # the dfs the reader remembers are of the old version: not used for the new one
        before = reader.store._dfs[cid]
        assert reader.store.search_sparse(cid, query, 5, None) == fresh_search()
        assert reader.store._dfs[cid][0] != before[0]
        assert reader.store.search_sparse(cid, query, 5, None) == fresh_search()  # from memory
        assert reader.store.sparse_ceiling(cid, query) == fresh_ceiling()  # cached again
        with writer.sessions.begin() as session:
            writer.store.stage_drop(session, cid)
        assert reader.store.sparse_ceiling(cid, query) == fresh_ceiling()
        assert reader.store.search_sparse(cid, query, 5, None) == []
    finally:
        reader.store.close()
        writer.store.close()
        reader.engine.dispose()
        writer.engine.dispose()
