"""BM25 scored in SQL by PostgresSearchStore equals the embedded BM25Index, to 1e-6.

On real text: SciFact abstracts (English, stemmed), CMRC 2018 passages and the
project's Chinese set (jieba), and mixed-script chunks; after removals and
with an ``allowed`` filter; and the score ceilings the 'not found' gate uses.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from functools import cache
from itertools import islice

import numpy as np
import pytest

from rag.index.bm25 import BM25Index
from rag.settings import IndexSettings
from rag.types import ScoredId
from tests.conftest import shared_path
from tests.eval import zh_corpus
from tests.store.test_postgres_store import PgStore, make_pg_store, unit_vectors

pytestmark = pytest.mark.integration

MIXED = [
    "BCPL由谁提出？Martin Richards在1967年设计了BCPL语言。",
    "IL-6 与 TNF-α 在炎症反应中升高，IL6 levels rise in sepsis.",
    "Treatments treated treating: 治疗 treatment 2013年 the the the.",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ 全角字符 full width abc 123",
]
EXTRA_QUERIES = [
    "cell cell cell death",  # a repeated query term counts each time
    "treatment treatments treating",
    "BCPL是谁提出的",
    "IL-6 inflammation 炎症",
    "zzyzx qwertyuiop",  # no term in the corpus
    "the of and",  # stop words only: no terms at all
    "",
]


def _jsonl(path, limit: int) -> list[dict]:  # noqa: ANN001
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in islice(handle, limit)]


@cache
def corpus_and_queries() -> tuple[tuple[str, ...], tuple[str, ...]]:
    scifact = _jsonl(shared_path("scifact", "corpus.jsonl.gz"), 300)
    cmrc = _jsonl(shared_path("cmrc2018-trial", "corpus.jsonl.gz"), 80)
    texts = [f"{d.get('title', '')} {d['text']}" for d in scifact + cmrc]
    texts += [f"{title} {body}" for title, body in zh_corpus.DOCS.values()]
    texts += MIXED
    queries = [q["text"] for q in _jsonl(shared_path("scifact", "queries.jsonl"), 60)]
    queries += [q["text"] for q in _jsonl(shared_path("cmrc2018-trial", "queries.jsonl"), 30)]
    queries += [text for text, _ in zh_corpus.QUERIES.values()]
    queries += EXTRA_QUERIES
    return tuple(texts), tuple(queries)


SETTINGS = {
    "default": {},
    "k1 0.9 b 0.4 unstemmed": {"bm25_k1": 0.9, "bm25_b": 0.4, "bm25_stem": False},
}


@pytest.fixture(params=list(SETTINGS), ids=list(SETTINGS))
def both(request: pytest.FixtureRequest, pg_url: str) -> Iterator[tuple[PgStore, int, BM25Index]]:
    """The same chunks in a PostgreSQL store and in a BM25Index (same ids)."""
    overrides = SETTINGS[request.param]
    made = make_pg_store(pg_url, **overrides)
    cid = made.create_collection("parity")
    texts, _ = corpus_and_queries()
    _, ids = made.add_document(cid, list(texts), unit_vectors(len(texts), 4, seed=0))
    embedded = BM25Index.from_settings(IndexSettings(**overrides))  # type: ignore[arg-type]
    embedded.add(ids.tolist(), list(texts))
    yield made, cid, embedded
    made.engine.dispose()


def assert_same(got: list[ScoredId], expected: list[ScoredId]) -> None:
    assert [h.chunk_id for h in got] == [h.chunk_id for h in expected]
    assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-6)


def assert_all_queries_agree(
    made: PgStore, cid: int, embedded: BM25Index, allowed: np.ndarray | None = None
) -> int:
    """Compare every query's top 10 and ceiling; returns how many queries had hits."""
    _, queries = corpus_and_queries()
    with_hits = 0
    for query in queries:
        expected = embedded.search(query, 10, allowed_ids=allowed)
        assert_same(made.store.search_sparse(cid, query, 10, allowed), expected)
        with_hits += bool(expected)
        ceiling = embedded.score_ceiling(embedded.tokenize_query(query))
        assert made.store.sparse_ceiling(cid, query) == pytest.approx(ceiling, abs=1e-6)
    return with_hits


def test_top_10_and_ceilings_equal_the_embedded_index(
    both: tuple[PgStore, int, BM25Index],
) -> None:
    made, cid, embedded = both
    assert made.store.size(cid) == len(embedded)
    assert assert_all_queries_agree(made, cid, embedded) > 100


def test_equal_after_removing_chunks(both: tuple[PgStore, int, BM25Index]) -> None:
    made, cid, embedded = both
    gone = embedded.ids()[::7].tolist()
    made.delete_chunks(cid, gone)
    embedded.remove(gone)
    assert made.store.size(cid) == len(embedded)
    assert made.stats(cid) == made.true_stats(cid)
    assert_all_queries_agree(made, cid, embedded)


def test_equal_with_an_allowed_filter(both: tuple[PgStore, int, BM25Index]) -> None:
    made, cid, embedded = both
    ids = embedded.ids()
    allowed = np.random.default_rng(3).choice(ids, size=len(ids) // 3, replace=False)
    # unknown ids in the filter are ignored by both
    allowed = np.concatenate([allowed, [10**9]])
    assert assert_all_queries_agree(made, cid, embedded, allowed) > 50
    one = ids[5:6]
    assert_all_queries_agree(made, cid, embedded, one)
    assert made.store.search_sparse(cid, "cell", 10, np.zeros(0, dtype=np.int64)) == []


def test_k_limits_and_rejects_below_one(both: tuple[PgStore, int, BM25Index]) -> None:
    made, cid, embedded = both
    for k in (1, 3, 50):
        assert_same(
            made.store.search_sparse(cid, "cell death", k, None), embedded.search("cell death", k)
        )
    from rag.errors import InvalidInput

    with pytest.raises(InvalidInput):
        made.store.search_sparse(cid, "cell", 0, None)


@pytest.fixture
def always_pruned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every search of known terms tries the MaxScore pair; counts the searches it answered."""
    from rag.store import pg_bm25
    from rag.store.postgres import PostgresSearchStore

    monkeypatch.setattr(pg_bm25, "PRUNE_MIN_POSTINGS", 0)
    # a few hundred chunks: wider seeds, so most queries find k chunks for a threshold
    monkeypatch.setattr(pg_bm25, "SEED_POSTINGS_SHARE", 0.5)
    answered: list[int] = []
    original = PostgresSearchStore._search_pruned

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        hits = original(self, *args, **kwargs)
        if hits is not None:
            answered.append(len(hits))
        return hits

    monkeypatch.setattr(PostgresSearchStore, "_search_pruned", counted)
    return answered


def test_the_pruned_pair_equals_the_embedded_index(
    both: tuple[PgStore, int, BM25Index], always_pruned: list[int]
) -> None:
    made, cid, embedded = both
    assert_all_queries_agree(made, cid, embedded)  # the first pass learns every term's df
    answered = len(always_pruned)
    assert assert_all_queries_agree(made, cid, embedded) > 100
    # the pair answered a good share (the others: too few chunks of the seed terms for a
    # threshold, or no term whose bound is small enough to leave out, in 420 chunks)
    assert len(always_pruned) - answered > 20
    for k in (1, 3, 50):
        for query in corpus_and_queries()[1][:20]:
            assert_same(made.store.search_sparse(cid, query, k, None), embedded.search(query, k))


def test_the_pruned_pair_keeps_ties_at_the_kth_score(pg_url: str, always_pruned: list[int]) -> None:
    """Four copies of each chunk tie; a k that cuts through a tie still gets k tied chunks.

    Copies' float sums can differ in the last bit on either backend (summation
    order), so which of equal chunks comes first is not compared: the scores
    are, and each id's score is its true one.
    """
    made = make_pg_store(pg_url)
    cid = made.create_collection("ties")
    texts = list(corpus_and_queries()[0][:60]) * 4
    _, ids = made.add_document(cid, texts, unit_vectors(len(texts), 4, seed=1))
    embedded = BM25Index.from_settings(IndexSettings())
    embedded.add(ids.tolist(), texts)
    queries = corpus_and_queries()[1][:40]
    for k in (2, 3, 5, 10):  # k not a multiple of 4 cuts through a tie
        for query in queries:
            made.store.search_sparse(cid, query, k, None)  # learn the dfs
            got = made.store.search_sparse(cid, query, k, None)
            expected = embedded.search(query, k)
            assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-6)
            true = {h.chunk_id: h.score for h in embedded.search(query, len(texts))}
            for hit in got:
                assert hit.score == pytest.approx(true[hit.chunk_id], abs=1e-6)
    assert always_pruned
    made.engine.dispose()


def test_a_write_between_the_pruned_statements_falls_back_to_the_exhaustive_one(
    both: tuple[PgStore, int, BM25Index],
    always_pruned: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rag.store import pg_bm25

    made, cid, embedded = both
    query = corpus_and_queries()[1][0]
    made.store.search_sparse(cid, query, 10, None)
    added = [f"{query} {query}"]  # scores high for the query: it must show up
    split = pg_bm25.split_by_bound

    def split_then_write(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if added:
            _, ids = made.add_document(cid, added, unit_vectors(1, 4, seed=9))
            embedded.add(ids.tolist(), added)
            added.clear()
        return split(*args, **kwargs)

    monkeypatch.setattr(pg_bm25, "split_by_bound", split_then_write)
    before = len(always_pruned)
    got = made.store.search_sparse(cid, query, 10, None)
    assert not added, "the write did not run between the statements"
    assert len(always_pruned) == before  # the pair gave up
    assert_same(got, embedded.search(query, 10))
    assert got[0].chunk_id == max(embedded.ids())
