"""BM25Index: hand-computed scores, equality with rank-bm25, updates, filters, persistence."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag.errors import IndexInconsistent, InvalidInput
from rag.index import bm25 as bm25_module
from rag.index.bm25 import BM25Index, lucene_idf
from rag.protocols import SparseIndex
from rag.settings import IndexSettings
from rag.text.terms import tokenize


def ids_of(hits) -> list[int]:  # type: ignore[no-untyped-def]
    return [h.chunk_id for h in hits]


def all_scores(index: BM25Index, tokens: list[str]) -> dict[int, float]:
    return {h.chunk_id: h.score for h in index.search_tokens(tokens, max(len(index), 1))}


def assert_equals_rank_bm25(
    index: BM25Index, ids: list[int], token_lists: list[list[str]], queries: list[list[str]]
) -> None:
    """Our scores equal BM25Okapi's (positive ones; ours drops the rest) to 1e-6."""
    reference = BM25Okapi(token_lists, k1=index.k1, b=index.b, epsilon=0.25)
    for query in queries:
        want = reference.get_scores(query)
        got = all_scores(index, query)
        expected = {i: s for i, s in zip(ids, want.tolist(), strict=True) if s > 0}
        assert got.keys() == expected.keys()
        for chunk_id, score in expected.items():
            assert got[chunk_id] == pytest.approx(score, abs=1e-6)


# ---------------------------------------------------------------- hand-computed example

TOY = [["apple", "banana"], ["apple", "cherry", "cherry"], ["date"]]


@pytest.mark.unit
def test_lucene_score_matches_hand_computation() -> None:
    index = BM25Index(k1=1.2, b=0.75, idf="lucene")
    index.add_tokens([10, 20, 30], TOY)
    # N = 3, df(cherry) = 1, avgdl = 6 / 3 = 2; chunk 20: tf = 2, length 3
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    tf_part = 2 * (1.2 + 1) / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / 2))
    [hit] = index.search_tokens(["cherry"], 5)
    assert hit.chunk_id == 20
    assert hit.score == pytest.approx(idf * tf_part, rel=1e-12)
    # a term repeated in the query counts twice, as in rank-bm25's loop
    assert index.search_tokens(["cherry", "cherry"], 5)[0].score == pytest.approx(2 * hit.score)


@pytest.mark.unit
def test_okapi_floors_negative_idf_with_epsilon_times_average() -> None:
    index = BM25Index(k1=1.5, b=0.75, idf="okapi")
    index.add_tokens([1, 2, 3], TOY)
    # apple is in 2 of 3 chunks: raw idf log(1.5 / 2.5) < 0, replaced by 0.25 x mean idf
    raw = {
        "apple": math.log(3 - 2 + 0.5) - math.log(2 + 0.5),
        "banana": math.log(3 - 1 + 0.5) - math.log(1 + 0.5),
    }
    mean = (raw["apple"] + 3 * raw["banana"]) / 4  # banana, cherry, date share one idf
    tf_part = 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 2 / 2))
    got = all_scores(index, ["apple"])
    assert got[1] == pytest.approx(0.25 * mean * tf_part, rel=1e-12)
    assert_equals_rank_bm25(index, [1, 2, 3], TOY, [["apple"], ["apple", "date"], ["fig"]])


@pytest.mark.unit
def test_lucene_idf_is_never_negative() -> None:
    assert (lucene_idf(10, np.arange(0, 11, dtype=np.float64)) > 0).all()


# ---------------------------------------------------------------- protocol, validation


@pytest.mark.unit
def test_satisfies_protocol_and_settings() -> None:
    index = BM25Index.from_settings(IndexSettings(bm25_k1=0.9, bm25_b=0.4, bm25_idf="okapi"))
    assert isinstance(index, SparseIndex)
    assert (index.k1, index.b, index.idf, index.stem) == (0.9, 0.4, "okapi", True)


@pytest.mark.unit
def test_constructor_validates_with_the_value_in_the_message() -> None:
    with pytest.raises(InvalidInput, match="k1 must be between 0 and 100, got -1"):
        BM25Index(k1=-1)
    with pytest.raises(InvalidInput, match=r"b must be between 0 and 1, got 1.5"):
        BM25Index(b=1.5)
    with pytest.raises(InvalidInput, match="idf must be 'lucene' or 'okapi', got 'tfidf'"):
        BM25Index(idf="tfidf")  # type: ignore[arg-type]


@pytest.mark.unit
def test_add_and_search_arguments_are_checked() -> None:
    index = BM25Index()
    index.add([1, 2], ["the cat sat", "a dog ran"])
    with pytest.raises(InvalidInput, match="already in the BM25 index"):
        index.add([2], ["again"])
    with pytest.raises(InvalidInput, match="repeat within one add"):
        index.add([5, 5], ["x", "y"])
    with pytest.raises(InvalidInput, match="one id per text"):
        index.add([7], ["x", "y"])
    with pytest.raises(InvalidInput, match="k must be at least 1, got 0"):
        index.search("cat", 0)
    assert len(index) == 2


@pytest.mark.unit
def test_empty_index_and_unknown_terms_return_nothing() -> None:
    index = BM25Index()
    assert index.search("anything", 5) == []
    assert len(index) == 0 and index.ids().dtype == np.int64
    index.add([1], ["a text about enzymes"])
    assert index.search("zebra", 5) == []
    assert index.search("", 5) == []


@pytest.mark.unit
def test_text_path_tokenises_and_stems_like_queries() -> None:
    index = BM25Index()
    index.add([1, 2, 3], ["Treatments of diabetes", "A study of birds", "Treatment plans"])
    assert set(ids_of(index.search("treatment", 5))) == {1, 3}
    assert index.tokenize_query("Treatments!") == tokenize("Treatments!", stem=True)
    unstemmed = BM25Index(stem=False)
    unstemmed.add([1, 2], ["Treatments of diabetes", "Treatment plans"])
    assert ids_of(unstemmed.search("treatment", 5)) == [2]


@pytest.mark.unit
def test_top_k_is_sorted_and_only_positive() -> None:
    index = BM25Index()
    texts = [f"protein {'kinase ' * (i % 4)} sample {i}" for i in range(50)]
    index.add(list(range(50)), texts)
    hits = index.search("kinase protein", 7)
    assert len(hits) == 7
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0
    assert all(h.score > 0 for h in index.search("kinase", 100))
    assert len(index.search("kinase", 100)) == sum(1 for i in range(50) if i % 4)


# ---------------------------------------------------------------- Chinese


@pytest.mark.unit
def test_chinese_text_is_searchable() -> None:
    index = BM25Index()
    index.add(
        [1, 2, 3],
        [
            "机器学习是人工智能的一个分支",
            "深度学习使用多层神经网络进行表示学习",
            "今天北京的天气很好",
        ],
    )
    assert ids_of(index.search("神经网络", 3))[0] == 2
    assert ids_of(index.search("人工智能", 3)) == [1]
    assert ids_of(index.search("北京天气怎么样", 3)) == [3]


@pytest.mark.unit
def test_mixed_chinese_and_english() -> None:
    index = BM25Index()
    index.add(
        [1, 2, 3],
        [
            "BM25 是搜索引擎常用的排序函数 used for ranking documents",
            "FAISS 用于向量检索 vector search",
            "Cooking recipes 菜谱 with rice 米饭",
        ],
    )
    assert ids_of(index.search("排序 ranking", 3))[0] == 1
    assert ids_of(index.search("向量 search", 3))[0] == 2
    assert ids_of(index.search("米饭 recipe", 3)) == [3]


# ---------------------------------------------------------------- updates


def random_corpus(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    vocab = [f"t{i}" for i in range(300)]
    weights = 1.0 / np.arange(1, 301)  # Zipf-like: some terms in most chunks
    weights /= weights.sum()
    return [list(rng.choice(vocab, size=rng.integers(0, 40), p=weights)) for _ in range(n)]


@pytest.mark.unit
@pytest.mark.parametrize("idf", ["okapi", "lucene"])
def test_adds_and_deletes_match_a_fresh_build(idf: str) -> None:
    docs = random_corpus(400)
    ids = list(range(100, 500))
    queries = [["t0", "t5"], ["t1", "t1", "t50"], ["t299"], ["t3", "t7", "t11", "t13"]]
    incremental = BM25Index(idf=idf)  # type: ignore[arg-type]
    for start in range(0, 300, 37):  # uploads arrive in small batches
        end = min(start + 37, 300)
        incremental.add_tokens(ids[start:end], docs[start:end])
    incremental.remove(ids[10:40])  # 10%: tombstones, no compaction
    assert 0 < incremental.dead_share < bm25_module.COMPACT_DEAD_SHARE
    incremental.add_tokens(ids[300:], docs[300:])
    incremental.add_tokens([ids[15]], [docs[15]])  # a removed id may come back
    survivors = [i for i in range(400) if not 10 <= i < 40 or i == 15]
    fresh = BM25Index(idf=idf)  # type: ignore[arg-type]
    fresh.add_tokens([ids[i] for i in survivors], [docs[i] for i in survivors])
    for query in queries:
        assert all_scores(incremental, query) == pytest.approx(all_scores(fresh, query), abs=1e-9)
    if idf == "okapi":
        assert_equals_rank_bm25(
            incremental, [ids[i] for i in survivors], [docs[i] for i in survivors], queries
        )
    np.testing.assert_array_equal(incremental.ids(), np.sort([ids[i] for i in survivors]))


@pytest.mark.unit
def test_heavy_deletes_compact_and_keep_scores() -> None:
    docs = random_corpus(200, seed=1)
    index = BM25Index(idf="okapi")
    index.add_tokens(list(range(200)), docs)
    assert index.remove(range(0, 200, 3)) == 67  # > 25% dead: compacted
    assert index.dead_share == 0.0
    assert index.remove([0, 3, 10_000]) == 0
    survivors = [i for i in range(200) if i % 3]
    assert_equals_rank_bm25(
        index, survivors, [docs[i] for i in survivors], [["t0"], ["t2", "t9"], ["t120"]]
    )
    assert index.remove(survivors) == len(survivors)
    assert len(index) == 0 and index.search_tokens(["t0"], 3) == [] and index.vocabulary_size == 0


# ---------------------------------------------------------------- restricted search


@pytest.mark.unit
@pytest.mark.parametrize("size", [1, 5, 60, 250])  # small filters use the forward index
def test_allowed_ids_equal_filtered_full_search(size: int) -> None:
    docs = random_corpus(300, seed=2)
    index = BM25Index()
    index.add_tokens(list(range(300)), docs)
    index.remove([1, 2, 3])
    rng = np.random.default_rng(size)
    allowed = np.append(rng.choice(300, size=size, replace=False), [1, 9999])
    allowed_set = set(allowed.tolist())
    for query in (["t0", "t4"], ["t30"], ["t2", "t2", "t77"]):
        full = index.search_tokens(query, 300)
        want = [h for h in full if h.chunk_id in allowed_set][:8]
        got = index.search_tokens(query, 8, allowed_ids=allowed)
        assert ids_of(got) == ids_of(want)
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-9)
    assert index.search_tokens(["t0"], 5, allowed_ids=np.array([1, 2, 9999])) == []


# ---------------------------------------------------------------- persistence


@pytest.mark.unit
def test_save_load_round_trip_without_removed_data(tmp_path: Path) -> None:
    index = BM25Index(k1=1.1, b=0.6, idf="okapi")
    index.add([1, 2, 3, 4], ["alpha beta", "beta gamma zyxwvutsecret", "gamma delta", "中文 检索"])
    index.remove([2])
    assert index.dead_share == 0.25  # a tombstone, not compacted
    path = tmp_path / "deep" / "bm25.npz"
    index.save(path)
    assert index.dead_share == 0.25  # saving leaves the live index as it was
    assert [p.name for p in path.parent.iterdir()] == ["bm25.npz"]
    assert b"zyxwvutsecret" not in path.read_bytes()  # removed text leaves no trace
    loaded = BM25Index.load(path)
    assert (loaded.k1, loaded.b, loaded.idf) == (1.1, 0.6, "okapi")
    np.testing.assert_array_equal(loaded.ids(), [1, 3, 4])
    for query in ("beta gamma", "delta", "检索"):
        assert loaded.search(query, 5) == index.search(query, 5)
    loaded.add([5], ["beta epsilon"])
    assert ids_of(loaded.search("epsilon", 5)) == [5]
    with np.load(path, allow_pickle=False) as data:  # plain arrays only, no pickle
        assert "post_pairs" in data.files


@pytest.mark.unit
def test_load_rejects_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, meta=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(IndexInconsistent, match="rag doctor"):
        BM25Index.load(path)
    with pytest.raises(IndexInconsistent):
        BM25Index.load(tmp_path / "missing.npz")


@pytest.mark.unit
def test_concurrent_adds_and_searches() -> None:
    index = BM25Index()
    docs = random_corpus(400, seed=3)
    index.add_tokens(list(range(100)), docs[:100])
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(100, 400, 10):
                index.add_tokens(list(range(i, i + 10)), docs[i : i + 10])
                index.remove([i - 50])
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(200):
                index.search_tokens(["t0", "t3"], 5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (writer, reader, reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index) == 400 - 30


# ---------------------------------------------------------------- real corpus


@pytest.fixture(scope="module")
def scifact_tokens() -> tuple[list[list[str]], list[list[str]]]:
    from tests.conftest import shared_path

    docs: list[list[str]] = []
    with gzip.open(shared_path("scifact", "corpus.jsonl.gz"), "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            docs.append(tokenize(f"{record['title']} {record['text']}"))
            if len(docs) == 2000:
                break
    with open(shared_path("scifact", "queries.jsonl"), encoding="utf-8") as handle:
        queries = [tokenize(json.loads(line)["text"]) for line in itertools.islice(handle, 40)]
    return docs, queries


@pytest.mark.integration
def test_scifact_scores_equal_rank_bm25(scifact_tokens) -> None:  # type: ignore[no-untyped-def]
    docs, queries = scifact_tokens
    ids = list(range(7, 7 + len(docs)))
    index = BM25Index(k1=1.5, b=0.75, idf="okapi")  # rank-bm25's defaults
    index.add_tokens(ids, docs)
    assert_equals_rank_bm25(index, ids, docs, queries)

    index.remove(ids[100:300])  # tombstones (10%)
    index.add_tokens([10_000, 10_001], [docs[5], docs[6] + docs[7]])
    index.remove(ids[:1])
    kept = list(range(1, 100)) + list(range(300, len(docs)))
    surviving_ids = [ids[i] for i in kept] + [10_000, 10_001]
    surviving_docs = [docs[i] for i in kept] + [docs[5], docs[6] + docs[7]]
    assert_equals_rank_bm25(index, surviving_ids, surviving_docs, queries)

    index.remove(ids[1000:1500])  # > 25% dead: compaction
    assert index.dead_share == 0.0
    kept_after = [i for i in kept if not 1000 <= i < 1500]
    assert_equals_rank_bm25(
        index,
        [ids[i] for i in kept_after] + [10_000, 10_001],
        [docs[i] for i in kept_after] + [docs[5], docs[6] + docs[7]],
        queries[:10],
    )


@pytest.mark.integration
def test_scifact_lucene_ranking_is_close_to_rank_bm25(scifact_tokens) -> None:  # type: ignore[no-untyped-def]
    docs, queries = scifact_tokens
    index = BM25Index()  # lucene idf: only the idf of very common terms differs
    index.add_tokens(list(range(len(docs))), docs)
    reference = BM25Okapi(docs, k1=1.2, b=0.75)
    overlaps = []
    for query in queries:
        want = set(np.argsort(-reference.get_scores(query))[:10].tolist())
        overlaps.append(len(want & set(ids_of(index.search_tokens(query, 10)))) / 10)
    assert np.mean(overlaps) >= 0.9
