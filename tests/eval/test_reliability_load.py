"""The mixed-load run of `make reliability` works end to end on a small scale."""

from __future__ import annotations

import pytest

from eval.reliability.load import run_load

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_small_mixed_load_loses_nothing() -> None:
    result = run_load(clients=4, seconds=60.0, max_requests=12, embedding="hashing:64")
    assert result["requests"] > 0 and result["uploads"] > 0
    assert result["errors"] == 0, result["error_examples"]
    assert result["lost"] == result["stuck"] == 0
    assert result["consistent"]
