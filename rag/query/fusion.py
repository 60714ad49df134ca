"""Fusing the dense and the keyword (BM25) result lists into one ranking.

Two methods, both pure functions:

* :func:`reciprocal_rank_fusion` uses only ranks, so it needs no calibration
  between cosine similarities and BM25 scores, which live on unrelated scales.
* :func:`weighted_score_fusion` min-max normalises each list's scores to
  [0, 1] and mixes them with a weight, for when the scores carry information
  the ranks lose (a clear winner versus a near tie).

:func:`fuse_hits` applies the configured method to two retrievers' lists and
keeps, for each candidate, where each retriever placed it (shown to users as
"why this source").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rag.errors import InvalidInput
from rag.types import ScoredId

# Cormack, Clarke & Büttcher (SIGIR 2009, "Reciprocal Rank Fusion outperforms
# Condorcet and individual rank learning methods") set k = 60 on TREC data.
# k damps the head of each list: with k = 60 a retriever's #1 scores 1/61 and
# its #10 scores 1/70, so one retriever's top hit cannot dominate the fused
# list, and a document ranked fairly high by both retrievers beats one ranked
# first by a single retriever. The paper found results insensitive to k
# around this value.
DEFAULT_RRF_K = 60

FusionMethod = Literal["rrf", "weighted"]


@dataclass(frozen=True)
class FusedCandidate:
    """One chunk after fusion, with where each retriever placed it.

    Ranks are 1-based; a rank or score is None when that retriever did not
    return the chunk.
    """

    chunk_id: int
    score: float
    dense_rank: int | None = None
    sparse_rank: int | None = None
    dense_score: float | None = None
    sparse_score: float | None = None


def _ranks(ids: Sequence[int]) -> dict[int, int]:
    """1-based rank of each id; a repeated id keeps its first (best) rank."""
    ranks: dict[int, int] = {}
    for position, chunk_id in enumerate(ids, start=1):
        ranks.setdefault(int(chunk_id), position)
    return ranks


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[int]],
    k: int = DEFAULT_RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """Fuse ranked id lists by Reciprocal Rank Fusion.

    ``score(d) = sum_i w_i / (k + rank_i(d))`` over the lists that contain
    ``d`` (rank 1-based). Ties are broken by the best rank the id reached in
    any list, then by the smaller id, so the output is deterministic.

    Args:
        ranked_lists: Id lists, best first. An id repeated within one list
            counts once, at its best rank.
        k: Damping constant (see ``DEFAULT_RRF_K``); must be positive.
        weights: One non-negative weight per list (default all 1.0).

    Returns:
        ``(id, score)`` pairs, best first.

    Raises:
        InvalidInput: If ``k`` is not positive or the weights do not match.
    """
    if k <= 0:
        raise InvalidInput(f"rrf k must be positive, got {k}")
    if weights is None:
        weights = [1.0] * len(ranked_lists)
    if len(weights) != len(ranked_lists):
        raise InvalidInput(
            f"rrf needs one weight per ranked list: got {len(weights)} weights "
            f"for {len(ranked_lists)} lists"
        )
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise InvalidInput(f"rrf weights must be finite and non-negative, got {list(weights)}")

    scores: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for ids, weight in zip(ranked_lists, weights, strict=True):
        for chunk_id, rank in _ranks(ids).items():
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
            best_rank[chunk_id] = min(rank, best_rank.get(chunk_id, rank))
    return sorted(scores.items(), key=lambda item: (-item[1], best_rank[item[0]], item[0]))


def min_max_normalize(scores: Sequence[float]) -> list[float]:
    """Scale scores to [0, 1] (min → 0, max → 1).

    A list whose scores are all equal (including a single score) maps to 1.0:
    every member was returned by the retriever, and with no spread there is no
    evidence that any of them is worse than the best.
    """
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high - low <= 0.0:
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def weighted_score_fusion(
    dense: Sequence[tuple[int, float]],
    sparse: Sequence[tuple[int, float]],
    dense_weight: float = 0.5,
    normalization: str = "minmax",
) -> list[tuple[int, float]]:
    """Fuse two scored lists by a weighted sum of normalised scores.

    ``score(d) = dense_weight * norm_dense(d) + (1 - dense_weight) * norm_sparse(d)``,
    where an id missing from a list contributes 0 for that list. Ties are
    broken by the best rank in either list, then by the smaller id.

    Args:
        dense: ``(id, score)`` pairs from the dense retriever, best first.
        sparse: ``(id, score)`` pairs from the keyword retriever, best first.
        dense_weight: Weight of the dense score, in [0, 1].
        normalization: Only ``"minmax"`` is supported (see :func:`min_max_normalize`).

    Returns:
        ``(id, score)`` pairs, best first, scores in [0, 1].

    Raises:
        InvalidInput: For a weight outside [0, 1] or an unknown normalization.
    """
    if not 0.0 <= dense_weight <= 1.0:
        raise InvalidInput(f"dense_weight must be between 0 and 1, got {dense_weight}")
    if normalization != "minmax":
        raise InvalidInput(f"normalization must be 'minmax', got {normalization!r}")

    def normalised(pairs: Sequence[tuple[int, float]]) -> tuple[dict[int, float], dict[int, int]]:
        firsts: dict[int, float] = {}
        for chunk_id, score in pairs:
            firsts.setdefault(int(chunk_id), float(score))
        values = min_max_normalize(list(firsts.values()))
        ranks = {chunk_id: rank for rank, chunk_id in enumerate(firsts, start=1)}
        return dict(zip(firsts, values, strict=True)), ranks

    dense_norm, dense_ranks = normalised(dense)
    sparse_norm, sparse_ranks = normalised(sparse)
    fused: dict[int, float] = {}
    best_rank: dict[int, float] = {}
    for chunk_id in [*dense_norm, *sparse_norm]:
        if chunk_id in fused:
            continue
        fused[chunk_id] = dense_weight * dense_norm.get(chunk_id, 0.0) + (
            1.0 - dense_weight
        ) * sparse_norm.get(chunk_id, 0.0)
        best_rank[chunk_id] = min(
            dense_ranks.get(chunk_id, math.inf), sparse_ranks.get(chunk_id, math.inf)
        )
    return sorted(fused.items(), key=lambda item: (-item[1], best_rank[item[0]], item[0]))


def fuse_hits(
    dense: Sequence[ScoredId],
    sparse: Sequence[ScoredId],
    method: FusionMethod | str = "rrf",
    rrf_k: int = DEFAULT_RRF_K,
    dense_weight: float = 0.5,
) -> list[FusedCandidate]:
    """Fuse a dense and a sparse result list, keeping each retriever's rank and score.

    Args:
        dense: Dense retriever results, best first.
        sparse: Keyword retriever results, best first.
        method: ``"rrf"`` (:func:`reciprocal_rank_fusion`) or ``"weighted"``
            (:func:`weighted_score_fusion`).
        rrf_k: RRF damping constant.
        dense_weight: Weight of the dense score in ``"weighted"`` fusion; RRF
            ignores it (plain, unweighted RRF, as the settings document).

    Returns:
        Candidates, best first.

    Raises:
        InvalidInput: For an unknown method or an out-of-range parameter.
    """
    if not 0.0 <= dense_weight <= 1.0:
        raise InvalidInput(f"dense_weight must be between 0 and 1, got {dense_weight}")
    dense_ranks = _ranks([s.chunk_id for s in dense])
    sparse_ranks = _ranks([s.chunk_id for s in sparse])
    dense_scores: dict[int, float] = {}
    for s in dense:
        dense_scores.setdefault(int(s.chunk_id), float(s.score))
    sparse_scores: dict[int, float] = {}
    for s in sparse:
        sparse_scores.setdefault(int(s.chunk_id), float(s.score))

    if method == "rrf":
        fused = reciprocal_rank_fusion([list(dense_ranks), list(sparse_ranks)], k=rrf_k)
    elif method == "weighted":
        fused = weighted_score_fusion(
            list(dense_scores.items()), list(sparse_scores.items()), dense_weight=dense_weight
        )
    else:
        raise InvalidInput(f"fusion method must be 'rrf' or 'weighted', got {method!r}")

    return [
        FusedCandidate(
            chunk_id=chunk_id,
            score=score,
            dense_rank=dense_ranks.get(chunk_id),
            sparse_rank=sparse_ranks.get(chunk_id),
            dense_score=dense_scores.get(chunk_id),
            sparse_score=sparse_scores.get(chunk_id),
        )
        for chunk_id, score in fused
    ]
