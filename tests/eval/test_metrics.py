"""Metrics: hand-computed examples and agreement with pytrec_eval (trec_eval) to 4 decimals."""

from __future__ import annotations

import math
import random
import re

import pytest

from eval.beir import load_beir, slice_beir
from eval.metrics import (
    average_precision_at_k,
    dcg_at_k,
    evaluate_ranking,
    evaluate_run,
    hit_at_k,
    mean_metrics,
    ndcg_at_k,
    rank_documents,
    recall_at_k,
    reciprocal_rank_at_k,
)
from rag.errors import InvalidInput

pytrec_eval = pytest.importorskip("pytrec_eval")

# --- hand-computed examples -------------------------------------------------

# Two relevant documents (d1, d3), one judged non-relevant (d9).
QREL = {"d1": 1, "d3": 1, "d9": 0}
RANKING = ["d2", "d1", "d9", "d3", "d4"]  # relevant at ranks 2 and 4


@pytest.mark.unit
def test_recall_hand_computed() -> None:
    assert recall_at_k(RANKING, QREL, 1) == 0.0  # nothing relevant at rank 1
    assert recall_at_k(RANKING, QREL, 2) == 0.5  # d1 found: 1 / 2 relevant
    assert recall_at_k(RANKING, QREL, 5) == 1.0  # d1 and d3: 2 / 2


@pytest.mark.unit
def test_hit_and_reciprocal_rank_hand_computed() -> None:
    assert hit_at_k(RANKING, QREL, 1) == 0.0
    assert hit_at_k(RANKING, QREL, 2) == 1.0
    assert reciprocal_rank_at_k(RANKING, QREL, 10) == 0.5  # first relevant at rank 2
    assert reciprocal_rank_at_k(RANKING, QREL, 1) == 0.0  # rank 2 is outside the top 1


@pytest.mark.unit
def test_average_precision_hand_computed() -> None:
    # P@2 = 1/2 and P@4 = 2/4 at the relevant ranks; divided by 2 relevant -> 0.5.
    assert average_precision_at_k(RANKING, QREL, 100) == pytest.approx(0.5)
    # Cut at 3 only rank 2 counts: (1/2) / 2 relevant (not / 1 retrieved) = 0.25.
    assert average_precision_at_k(RANKING, QREL, 3) == pytest.approx(0.25)


@pytest.mark.unit
def test_ndcg_binary_hand_computed() -> None:
    # DCG  = 1/log2(2+1) + 1/log2(4+1) = 0.630930 + 0.430677 = 1.061606
    # IDCG = 1/log2(1+1) + 1/log2(2+1) = 1 + 0.630930 = 1.630930
    # nDCG = 1.061606 / 1.630930 = 0.650921
    assert ndcg_at_k(RANKING, QREL, 10) == pytest.approx(0.650921, abs=1e-6)
    # Cut at 3: DCG = 0.630930, IDCG unchanged -> 0.386852
    assert ndcg_at_k(RANKING, QREL, 3) == pytest.approx(0.630930 / 1.630930, abs=1e-6)


@pytest.mark.unit
def test_ndcg_graded_hand_computed() -> None:
    qrel = {"a": 3, "b": 2, "c": 1}
    # DCG  = 1/log2(2) + 2/log2(3) + 3/log2(4) = 1 + 1.261860 + 1.5 = 3.761860
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.261860 + 0.5 = 4.761860
    assert ndcg_at_k(["c", "b", "a"], qrel, 10) == pytest.approx(3.761860 / 4.761860, abs=1e-6)
    assert ndcg_at_k(["a", "b", "c"], qrel, 10) == pytest.approx(1.0)


@pytest.mark.unit
def test_negative_grades_add_no_gain_and_are_not_relevant() -> None:
    qrel = {"c": 2, "d": 1, "e": -1}
    # e at rank 1 adds nothing: DCG = 1/log2(3) + 2/log2(4) = 1.630930;
    # IDCG = 2 + 1/log2(3) = 2.630930 -> 0.619906 (pytrec_eval gives the same).
    assert ndcg_at_k(["e", "d", "c"], qrel, 10) == pytest.approx(0.619906, abs=1e-6)
    assert recall_at_k(["e"], qrel, 1) == 0.0
    assert dcg_at_k([-1, 0, 1], 3) == pytest.approx(1 / math.log2(4))


@pytest.mark.unit
def test_query_without_relevant_documents_scores_zero() -> None:
    scores = evaluate_ranking(["x", "y"], {"x": 0})
    assert set(scores.values()) == {0.0}


@pytest.mark.unit
def test_ties_broken_by_document_id_descending() -> None:
    assert rank_documents({"a": 1.0, "b": 1.0, "c": 2.0}) == ["c", "b", "a"]
    # String order, not numeric: "9" > "10" as strcmp sees it.
    assert rank_documents({"10": 0.5, "9": 0.5}) == ["9", "10"]


@pytest.mark.unit
def test_nan_score_rejected() -> None:
    with pytest.raises(InvalidInput, match="NaN"):
        rank_documents({"a": math.nan})


@pytest.mark.unit
def test_bad_cutoff_rejected() -> None:
    with pytest.raises(InvalidInput, match="got 0"):
        recall_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(InvalidInput):
        evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1}}, ks=(1, -5))


@pytest.mark.unit
def test_evaluate_run_means_missing_and_ignored_queries() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    run = {
        "q1": {"d1": 0.9, "d5": 0.1},  # relevant at rank 1 -> RR 1
        "q2": {"d5": 0.9, "d2": 0.5},  # relevant at rank 2 -> RR 0.5
        "q9": {"d1": 1.0},  # not judged: ignored
    }  # q3 absent: scored 0
    result = evaluate_run(run, qrels)
    assert result.num_queries == 3
    assert result.missing_queries == ("q3",)
    assert result.ignored_queries == ("q9",)
    assert result.per_query["q3"]["ndcg@10"] == 0.0
    assert result.means["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result.means["recall@1"] == pytest.approx(1 / 3)
    assert result.means["hit@5"] == pytest.approx(2 / 3)
    assert set(result.means) == {
        "ndcg@10",
        "mrr@10",
        "map@100",
        "recall@1",
        "recall@5",
        "recall@10",
        "recall@100",
        "hit@1",
        "hit@5",
        "hit@10",
        "hit@100",
    }


@pytest.mark.unit
def test_empty_qrels_rejected_and_empty_mean() -> None:
    with pytest.raises(InvalidInput, match="qrels are empty"):
        evaluate_run({}, {})
    assert mean_metrics({}) == {}


# --- agreement with pytrec_eval ---------------------------------------------

TREC_MEASURES = {
    "ndcg_cut.10",
    "recall.1,5,10,100",
    "recip_rank",
    "map_cut.100",
    "success.1,5,10,100",
}


def pytrec_scores(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> dict[str, dict[str, float]]:
    """pytrec_eval's numbers under our metric names."""
    raw = pytrec_eval.RelevanceEvaluator(qrels, TREC_MEASURES).evaluate(run)
    out = {}
    for qid, m in raw.items():
        rr = m["recip_rank"]
        out[qid] = {
            "ndcg@10": m["ndcg_cut_10"],
            # MRR@10 is recip_rank on the run cut at 10: the first relevant rank
            # is 1 / rr, so keep rr only when that rank is <= 10.
            "mrr@10": rr if rr >= 0.1 - 1e-12 else 0.0,
            "map@100": m["map_cut_100"],
            **{f"recall@{k}": m[f"recall_{k}"] for k in (1, 5, 10, 100)},
            **{f"hit@{k}": m[f"success_{k}"] for k in (1, 5, 10, 100)},
        }
    return out


def assert_matches_pytrec(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> None:
    # pytrec_eval scores the judged queries that the run holds (an empty dict counts).
    full_run = {qid: run.get(qid, {}) for qid in qrels}
    expected = pytrec_scores(full_run, qrels)
    ours = evaluate_run(full_run, qrels).per_query
    assert ours.keys() == expected.keys()
    for qid, metrics in expected.items():
        for name, value in metrics.items():
            assert ours[qid][name] == pytest.approx(value, abs=5e-5), (qid, name)


DOC_IDS = ["1", "2", "9", "10", "11", "100", "a", "B", "b", "é", "d-1", "D_2", "z9", "Z10"]
# Few distinct scores so ties are common.
SCORES = [-1.0, 0.0, 0.25, 0.5, 1.0, 2.0]


def random_case(rng: random.Random) -> tuple[dict, dict]:
    """Small qrels (grades -1..3) and a run over shared ids, with many ties."""
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i in range(rng.randint(1, 4)):
        judged = rng.sample(DOC_IDS, rng.randint(1, 6))
        qrels[f"q{i}"] = {d: rng.randint(-1, 3) for d in judged}
        retrieved = rng.sample(DOC_IDS, rng.randint(0, len(DOC_IDS)))
        run[f"q{i}"] = {d: rng.choice(SCORES) for d in retrieved}
    return run, qrels


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(5))
def test_matches_pytrec_eval_on_small_random_runs(seed: int) -> None:
    # Seeded rather than hypothesis: deterministic, and nothing is written to disk.
    rng = random.Random(seed)
    for _ in range(60):
        run, qrels = random_case(rng)
        assert_matches_pytrec(run, qrels)


@pytest.mark.unit
def test_matches_pytrec_eval_on_long_seeded_runs_with_ties() -> None:
    # Long runs (150 docs) so the cut-offs at 10 and 100 bite; scores rounded to
    # one decimal so ties cross the cut-offs.
    rng = random.Random(1234)
    docs = [str(n) for n in range(300)]
    qrels, run = {}, {}
    for q in range(40):
        qid = str(q)
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        retrieved = rng.sample(docs, 150)
        run[qid] = {d: round(rng.random(), 1) for d in retrieved}
    run["0"] = {}  # an empty result list
    assert_matches_pytrec(run, qrels)


def _terms(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.mark.integration
def test_matches_pytrec_eval_on_scifact_term_overlap_run(scifact_dir) -> None:
    ds = slice_beir(load_beir(scifact_dir), n_queries=40, extra_docs=400, seed=7)
    doc_terms = {d: _terms(doc.full_text) for d, doc in ds.corpus.items()}
    # Score = number of shared terms: a crude scorer with many ties.
    run = {
        qid: {d: float(len(_terms(text) & terms)) for d, terms in doc_terms.items()}
        for qid, text in ds.queries.items()
    }
    tied_top10 = sum(
        1 for scores in run.values() if len({scores[d] for d in rank_documents(scores)[:10]}) < 10
    )
    assert tied_top10 > 0, "the run should exercise tie-breaking"
    assert_matches_pytrec(run, ds.qrels)
    means = evaluate_run(run, ds.qrels).means
    assert 0.05 < means["ndcg@10"] < 1.0
    assert means["recall@100"] >= means["recall@10"] >= means["recall@1"]
