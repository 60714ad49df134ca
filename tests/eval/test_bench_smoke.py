"""The benchmarks run end to end in their --quick configurations.

These prove the benchmark code works (tables printed, every configuration
measured); they never check timings, which belong to the printed report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.bench import bench_api, bench_query, run_all
from eval.bench.common import fmt_ms, markdown_table, percentiles_ms, ratio
from tests.conftest import shared_path

pytestmark = pytest.mark.integration


@pytest.mark.unit
def test_common_helpers_format_tables_and_percentiles() -> None:
    p50, p95 = percentiles_ms([0.001, 0.002, 0.003])
    assert (p50, round(p95, 6)) == (2.0, 2.9)
    assert fmt_ms(float("nan")) == "–"
    assert ratio(3.0, 2.0) == "1.50x"
    assert ratio(1.0, 0.0) == "–"
    assert markdown_table("T", ["a", "b"], [[1, 2]]).splitlines() == [
        "### T",
        "",
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
    ]


def test_bench_query_quick_measures_every_stage_for_each_kind(
    scifact_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = bench_query.main(["--quick", "--scifact", str(scifact_dir)])

    out = capsys.readouterr().out
    assert [(r["kind"], r["size"], r["queries"]) for r in results] == [
        ("flat", 500, 5),
        ("hnsw", 500, 5),
    ]
    for result in results:
        stages = [row[0] for row in result["rows"]]
        assert "query encoding" in stages
        assert any(s.startswith("dense") for s in stages)
        assert all(len(row) == 6 for row in result["rows"])
        assert all(v == v for v in result["candidates_ms"])  # measured, not NaN
    assert "### flat index, 500 chunks, 5 queries" in out
    assert "### hnsw index, 500 chunks, 5 queries" in out
    assert "### Summary: hybrid retrieval latency" in out
    assert "p50 <= 5" in out


def test_bench_api_quick_serves_every_level_and_finds_the_uploaded_pdf(
    scifact_dir: Path, pdfs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = pdfs_dir / bench_api.PDF_NAME
    result = bench_api.main(["--quick", "--scifact", str(scifact_dir), "--pdf", str(pdf)])

    out = capsys.readouterr().out
    assert [r["clients"] for r in result["extractive"]] == [1, 4]
    for run in result["extractive"]:
        assert run["errors"] == []
        assert run["ok"] == run["requests"] == 8
    assert result["transformers"] == []
    upload = result["upload"]
    assert upload["hit"] is True
    assert upload["pages"] == 15
    assert upload["chunks"] > 0
    assert "### POST /ask throughput and latency" in out
    assert f"### Upload to searchable: {bench_api.PDF_NAME}" in out


def test_run_all_skips_a_missing_benchmark_with_a_note(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcomes = run_all.run(["bench_does_not_exist"], quick=True, timeout_s=5)

    assert outcomes == [("bench_does_not_exist", "missing", 0.0)]
    assert "not present in eval/bench, skipped" in capsys.readouterr().out


@pytest.mark.unit
def test_run_all_passes_quick_arguments() -> None:
    assert run_all.command("bench_query", quick=True)[-3:] == [
        "-m",
        "eval.bench.bench_query",
        "--quick",
    ]
    assert "--sizes" in run_all.command("bench_indexes", quick=True)
    assert run_all.command("bench_api", quick=False)[-1] == "eval.bench.bench_api"


def test_run_all_quick_runs_one_benchmark_in_a_subprocess(
    capfd: pytest.CaptureFixture[str],
) -> None:
    shared_path("scifact")  # the benchmark reads SciFact claims and texts
    status = run_all.main(["--quick", "--only", "bench_query"])

    out = capfd.readouterr().out
    assert status == 0
    assert "### Summary: hybrid retrieval latency" in out
    assert "| bench_query | ok |" in out
