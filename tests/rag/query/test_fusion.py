from __future__ import annotations

import pytest

from rag.errors import InvalidInput
from rag.query.fusion import (
    DEFAULT_RRF_K,
    FusedCandidate,
    fuse_hits,
    min_max_normalize,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from rag.types import ScoredId

pytestmark = pytest.mark.unit


def test_rrf_hand_computed() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    expected = {
        1: 1 / 61 + 1 / 62,
        2: 1 / 62,
        3: 1 / 63 + 1 / 61,
        4: 1 / 63,
    }
    assert [cid for cid, _ in fused] == [1, 3, 2, 4]
    for cid, score in fused:
        assert score == pytest.approx(expected[cid])


def test_rrf_default_k_is_60() -> None:
    assert DEFAULT_RRF_K == 60
    ((cid, score),) = reciprocal_rank_fusion([[7]])
    assert (cid, score) == (7, pytest.approx(1 / 61))


def test_rrf_weights() -> None:
    fused = dict(reciprocal_rank_fusion([[1, 2], [2, 1]], k=10, weights=[2.0, 1.0]))
    assert fused[1] == pytest.approx(2 / 11 + 1 / 12)
    assert fused[2] == pytest.approx(2 / 12 + 1 / 11)


def test_rrf_ties_break_by_best_rank_then_id() -> None:
    # k = 1: id 5 at ranks (2, 2) scores 1/3 + 1/3; id 99 at ranks (1, 5) scores 1/2 + 1/6.
    fused = reciprocal_rank_fusion([[99, 5, 11, 12, 13], [21, 5, 22, 23, 99]], k=1)
    assert fused[0][1] == fused[1][1]
    assert [cid for cid, _ in fused[:2]] == [99, 5]
    # Equal score and equal best rank: smaller id first, whatever the input order.
    assert [c for c, _ in reciprocal_rank_fusion([[8], [3]])] == [3, 8]
    assert [c for c, _ in reciprocal_rank_fusion([[3], [8]])] == [3, 8]


def test_rrf_repeated_id_counts_once_at_best_rank() -> None:
    assert dict(reciprocal_rank_fusion([[4, 4, 5]], k=60)) == {
        4: pytest.approx(1 / 61),
        5: pytest.approx(1 / 63),
    }


def test_rrf_validates() -> None:
    with pytest.raises(InvalidInput, match="positive"):
        reciprocal_rank_fusion([[1]], k=0)
    with pytest.raises(InvalidInput, match="one weight per ranked list"):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])
    assert reciprocal_rank_fusion([]) == []


def test_min_max_normalize() -> None:
    assert min_max_normalize([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert min_max_normalize([0.4, 0.4]) == [1.0, 1.0]
    assert min_max_normalize([]) == []


def test_weighted_fusion_hand_computed() -> None:
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]  # normalised: 1.0, 0.5, 0.0
    sparse = [(3, 10.0), (4, 6.0), (1, 2.0)]  # normalised: 1.0, 0.5, 0.0
    fused = weighted_score_fusion(dense, sparse, dense_weight=0.6)
    assert [cid for cid, _ in fused] == [1, 3, 2, 4]
    scores = dict(fused)
    assert scores[1] == pytest.approx(0.6 * 1.0 + 0.4 * 0.0)
    assert scores[3] == pytest.approx(0.6 * 0.0 + 0.4 * 1.0)
    assert scores[2] == pytest.approx(0.6 * 0.5)  # missing from sparse: 0 there
    assert scores[4] == pytest.approx(0.4 * 0.5)  # missing from dense: 0 there


def test_weighted_fusion_equal_scores_normalise_to_one() -> None:
    fused = dict(weighted_score_fusion([(1, 0.3), (2, 0.3)], [], dense_weight=0.5))
    assert fused == {1: pytest.approx(0.5), 2: pytest.approx(0.5)}


def test_weighted_fusion_ties_break_by_best_rank_then_id() -> None:
    fused = weighted_score_fusion([(1, 0.9), (2, 0.5), (3, 0.1)], [(3, 10.0), (4, 6.0), (1, 2.0)])
    assert [cid for cid, _ in fused] == [1, 3, 2, 4]


def test_weighted_fusion_validates() -> None:
    with pytest.raises(InvalidInput, match="dense_weight"):
        weighted_score_fusion([], [], dense_weight=1.5)
    with pytest.raises(InvalidInput, match="normalization"):
        weighted_score_fusion([], [], normalization="zscore")


def test_fuse_hits_rrf_keeps_ranks_and_scores() -> None:
    dense = [ScoredId(1, 0.8), ScoredId(2, 0.6)]
    sparse = [ScoredId(2, 7.0), ScoredId(3, 4.0)]
    fused = fuse_hits(dense, sparse, "rrf", rrf_k=60, dense_weight=0.9)
    assert fused[0] == FusedCandidate(
        chunk_id=2,
        score=pytest.approx(1 / 62 + 1 / 61),
        dense_rank=2,
        sparse_rank=1,
        dense_score=0.6,
        sparse_score=7.0,
    )
    assert [c.chunk_id for c in fused] == [2, 1, 3]
    assert fused[1].sparse_rank is None and fused[1].sparse_score is None
    assert fused[2].dense_rank is None and fused[2].score == pytest.approx(1 / 62)


def test_fuse_hits_weighted() -> None:
    dense = [ScoredId(1, 0.8), ScoredId(2, 0.6)]
    sparse = [ScoredId(2, 7.0), ScoredId(3, 4.0)]
    fused = fuse_hits(dense, sparse, "weighted", rrf_k=60, dense_weight=0.5)
    assert {c.chunk_id: c.score for c in fused} == {
        1: pytest.approx(0.5),
        2: pytest.approx(0.5),
        3: pytest.approx(0.0),
    }
    assert [c.chunk_id for c in fused] == [1, 2, 3]


def test_fuse_hits_unknown_method() -> None:
    with pytest.raises(InvalidInput, match="'rrf' or 'weighted'"):
        fuse_hits([], [], "borda", 60, 0.5)


def test_fused_candidate_is_frozen() -> None:
    candidate = FusedCandidate(1, 0.5)
    with pytest.raises(AttributeError):
        candidate.score = 1.0  # type: ignore[misc]
