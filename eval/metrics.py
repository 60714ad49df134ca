"""Retrieval metrics as pure functions, defined exactly as trec_eval defines them.

Published BEIR and Anserini numbers come from trec_eval (through pytrec_eval), so
every definition below follows trec_eval 9.x, and ``tests/eval/test_metrics.py``
checks the results against pytrec_eval to four decimals:

* Ranking: documents are sorted by score descending, and equal scores by document
  id descending (trec_eval's ``comp_sim_docno`` uses ``strcmp(docno2, docno1)``).
  Python's ``str`` order is code-point order, which equals the byte order of
  UTF-8 that ``strcmp`` sees, so the two agree for every id.
* Relevance: a judgment with grade >= ``RELEVANCE_LEVEL`` is relevant; grade 0
  and negative grades are judged non-relevant.
* nDCG@k (``ndcg_cut.k``): gain = the relevance grade (only positive grades
  count), discount = log2(rank + 1) with 1-based ranks, ideal DCG from the
  grades in the qrels sorted descending and cut at k.
* Recall@k (``recall.k``): relevant documents in the top k / all relevant.
* MRR@k: trec_eval's ``recip_rank`` on the ranking cut at k, i.e. 1 / rank of the
  first relevant document if it lies in the top k, else 0.
* MAP@k (``map_cut.k``): sum of precision@rank at each relevant rank <= k,
  divided by the number of relevant documents (not by those retrieved).
* Hit@k (``success.k``): 1 if any relevant document is in the top k, else 0.

A query with no relevant document scores 0 on every measure, as in trec_eval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rag.errors import InvalidInput

# trec_eval's default ``-l 1``: grades >= 1 are relevant. BEIR qrels use 0 for
# "judged, not relevant", so this keeps them out of Recall/MRR/MAP.
RELEVANCE_LEVEL = 1

# The cut-offs BEIR reports: Recall at 1/5/10 shows the head of the list a
# generator reads, Recall@100 what a re-ranker could still recover.
RECALL_CUTOFFS: tuple[int, ...] = (1, 5, 10, 100)
# nDCG@10 is BEIR's headline measure; MRR@10 is the MS MARCO convention.
NDCG_CUTOFF = 10
MRR_CUTOFF = 10
# MAP@100 as in Anserini's BEIR regressions (``map_cut.100``).
MAP_CUTOFF = 100

Qrel = Mapping[str, int]
"""Judgments of one query: document id -> relevance grade."""


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Document ids in trec_eval order: score descending, ties by id descending.

    Args:
        scores: Document id -> retrieval score of one query.

    Returns:
        The ids, best first.

    Raises:
        InvalidInput: a score is NaN (it has no place in an order).
    """
    if any(math.isnan(s) for s in scores.values()):
        raise InvalidInput("run scores must be numbers, got NaN; drop or fix those documents")
    # Sorting the (score, id) pairs descending gives exactly trec_eval's order.
    return [doc_id for _, doc_id in sorted(((s, d) for d, s in scores.items()), reverse=True)]


def count_relevant(qrel: Qrel) -> int:
    """Number of judged documents whose grade is at least ``RELEVANCE_LEVEL``."""
    return sum(1 for grade in qrel.values() if grade >= RELEVANCE_LEVEL)


def _is_relevant(qrel: Qrel, doc_id: str) -> bool:
    return qrel.get(doc_id, 0) >= RELEVANCE_LEVEL


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"cut-off k must be a positive integer, got {k!r}")


def recall_at_k(ranking: Sequence[str], qrel: Qrel, k: int) -> float:
    """Share of the relevant documents found in the top ``k`` (0 when none are relevant)."""
    _check_k(k)
    n_relevant = count_relevant(qrel)
    if n_relevant == 0:
        return 0.0
    found = sum(1 for doc_id in ranking[:k] if _is_relevant(qrel, doc_id))
    return found / n_relevant


def hit_at_k(ranking: Sequence[str], qrel: Qrel, k: int) -> float:
    """1.0 if any relevant document is in the top ``k``, else 0.0."""
    _check_k(k)
    return 1.0 if any(_is_relevant(qrel, doc_id) for doc_id in ranking[:k]) else 0.0


def reciprocal_rank_at_k(ranking: Sequence[str], qrel: Qrel, k: int) -> float:
    """1 / rank of the first relevant document within the top ``k``, else 0.0."""
    _check_k(k)
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if _is_relevant(qrel, doc_id):
            return 1.0 / rank
    return 0.0


def dcg_at_k(gains: Iterable[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains (rank r weighs 1 / log2(r + 1)).

    Non-positive gains add nothing, as in trec_eval.
    """
    _check_k(k)
    total = 0.0
    for rank, gain in enumerate(gains, start=1):
        if rank > k:
            break
        if gain > 0:
            total += gain / math.log2(rank + 1)
    return total


def ndcg_at_k(ranking: Sequence[str], qrel: Qrel, k: int) -> float:
    """nDCG@k with the relevance grade as gain and the ideal ranking taken from the qrels."""
    ideal = dcg_at_k(sorted((g for g in qrel.values() if g > 0), reverse=True), k)
    if ideal == 0.0:
        return 0.0
    return dcg_at_k((qrel.get(doc_id, 0) for doc_id in ranking), k) / ideal


def average_precision_at_k(ranking: Sequence[str], qrel: Qrel, k: int) -> float:
    """AP cut at ``k``: precision at each relevant rank <= k, summed, over all relevant docs."""
    _check_k(k)
    n_relevant = count_relevant(qrel)
    if n_relevant == 0:
        return 0.0
    found = 0
    precision_sum = 0.0
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if _is_relevant(qrel, doc_id):
            found += 1
            precision_sum += found / rank
    return precision_sum / n_relevant


@dataclass(frozen=True)
class EvalResult:
    """Scores of one run against one set of qrels.

    Attributes:
        per_query: Query id -> metric name (``"ndcg@10"``, ``"recall@5"``, ...) -> value,
            for every query in the qrels.
        means: Metric name -> mean over ``per_query``.
        missing_queries: Query ids in the qrels that the run has no results for;
            they are scored 0 (trec_eval ``-c``), so a silent failure lowers the mean.
        ignored_queries: Query ids in the run that the qrels do not judge; not scored.
    """

    per_query: dict[str, dict[str, float]]
    means: dict[str, float]
    missing_queries: tuple[str, ...] = ()
    ignored_queries: tuple[str, ...] = ()

    @property
    def num_queries(self) -> int:
        """Number of queries the means average over."""
        return len(self.per_query)


def evaluate_ranking(
    ranking: Sequence[str],
    qrel: Qrel,
    ks: Sequence[int] = RECALL_CUTOFFS,
    *,
    ndcg_k: int = NDCG_CUTOFF,
    mrr_k: int = MRR_CUTOFF,
    map_k: int = MAP_CUTOFF,
) -> dict[str, float]:
    """Every metric for one query's ranking (best first).

    Returns:
        ``{"ndcg@10", "mrr@10", "map@100", "recall@k" and "hit@k" for each k in ks}``.
    """
    scores = {
        f"ndcg@{ndcg_k}": ndcg_at_k(ranking, qrel, ndcg_k),
        f"mrr@{mrr_k}": reciprocal_rank_at_k(ranking, qrel, mrr_k),
        f"map@{map_k}": average_precision_at_k(ranking, qrel, map_k),
    }
    for k in ks:
        scores[f"recall@{k}"] = recall_at_k(ranking, qrel, k)
    for k in ks:
        scores[f"hit@{k}"] = hit_at_k(ranking, qrel, k)
    return scores


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over the queries (an empty mapping gives an empty dict)."""
    if not per_query:
        return {}
    names = next(iter(per_query.values())).keys()
    n = len(per_query)
    return {name: math.fsum(q[name] for q in per_query.values()) / n for name in names}


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Qrel],
    ks: Sequence[int] = RECALL_CUTOFFS,
    *,
    ndcg_k: int = NDCG_CUTOFF,
    mrr_k: int = MRR_CUTOFF,
    map_k: int = MAP_CUTOFF,
) -> EvalResult:
    """Score a run (query id -> document id -> score) against qrels.

    Every query in ``qrels`` is scored, also those with no relevant document
    (0 everywhere, as trec_eval does) and those the run lacks (0, as
    ``trec_eval -c``). Queries only in the run are ignored and listed.

    Raises:
        InvalidInput: ``qrels`` is empty or a cut-off is not a positive integer.
    """
    if not qrels:
        raise InvalidInput("qrels are empty: give at least one judged query to evaluate")
    for k in (*ks, ndcg_k, mrr_k, map_k):
        _check_k(k)
    per_query: dict[str, dict[str, float]] = {}
    missing: list[str] = []
    for qid, qrel in qrels.items():
        scores = run.get(qid)
        if scores is None:
            missing.append(qid)
            scores = {}
        per_query[qid] = evaluate_ranking(
            rank_documents(scores), qrel, ks, ndcg_k=ndcg_k, mrr_k=mrr_k, map_k=map_k
        )
    ignored = tuple(qid for qid in run if qid not in qrels)
    return EvalResult(
        per_query=per_query,
        means=mean_metrics(per_query),
        missing_queries=tuple(missing),
        ignored_queries=ignored,
    )
