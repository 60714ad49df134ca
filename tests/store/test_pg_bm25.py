"""The MaxScore planning of the PostgreSQL store's keyword search, on hand-made cases."""

from __future__ import annotations

import pytest

from rag.store.pg_bm25 import seed_terms, split_by_bound

pytestmark = pytest.mark.unit


def test_seeds_are_the_rarest_terms_within_the_postings_share() -> None:
    dfs = {"cell": 900.0, "death": 60.0, "tnf": 30.0, "il6": 10.0}  # 1,000 postings
    assert seed_terms(dfs, share=0.10) == ["il6", "tnf", "death"]
    assert seed_terms(dfs, share=0.05) == ["il6", "tnf"]
    # always at least one, even when the rarest alone is over the share
    assert seed_terms({"a": 500.0, "b": 500.0}, share=0.10) == ["a"]


def test_unknown_terms_are_seeds_and_absent_terms_are_not() -> None:
    dfs = {"cell": 900.0, "new": None, "gone": 0.0, "il6": 10.0}
    assert seed_terms(dfs, share=0.10) == ["new", "il6"]


def test_split_leaves_out_the_lowest_bounds_below_the_share_of_theta() -> None:
    # bounds = weight x (k1 + 1) = 2.2 x weight: the 0.5 and 1.0 terms bound 1.1 and 2.2
    weights = {"rare": 6.0, "common": 0.5, "mid": 1.0}
    essential, rest, bound = split_by_bound(weights, theta=8.0, k1=1.2, share=0.5)
    assert rest == ["common", "mid"]  # 1.1 + 2.2 = 3.3 < 4.0
    assert essential == ["rare"]
    assert bound == pytest.approx(3.3)
    essential, rest, bound = split_by_bound(weights, theta=6.0, k1=1.2, share=0.5)
    assert rest == ["common"] and essential == ["rare", "mid"]  # 3.3 >= 3.0
    assert bound == pytest.approx(1.1)
    assert split_by_bound(weights, theta=2.0, k1=1.2, share=0.5) == (
        ["rare", "common", "mid"],
        [],
        0.0,
    )


def test_the_bound_stays_strictly_below_theta() -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_by_bound({"a": 1.0}, theta=10.0, k1=1.2, share=1.0)
