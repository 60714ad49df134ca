"""Report writing: results.json schema, Markdown table, PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eval.report import ReportPaths, collect_versions, column_title, markdown_table, write_report
from rag.errors import InvalidInput

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

METRICS = {
    "bm25": {
        "ndcg@10": 0.67621,
        "mrr@10": 0.6413,
        "recall@1": 0.5,
        "recall@5": 0.75,
        "recall@10": 0.8013,
        "recall@100": 0.9127,
        "map@100": 0.63,
    },
    "dense": {"ndcg@10": 0.6451, "mrr@10": 0.6, "recall@10": 0.7833, "map@100": math.nan},
}
REFERENCES = {
    "BM25 Anserini flat": {"ndcg@10": 0.6789, "recall@100": 0.9253, "source": "anserini"},
    "all-MiniLM-L6-v2": {"ndcg@10": 0.6451, "recall@10": 0.7833, "source": "MTEB"},
}


def _results(**overrides: object) -> dict:
    results = {
        "config": {"model": "all-MiniLM-L6-v2", "index_dir": Path("/tmp/x")},
        "dataset": {"name": "scifact", "split": "test", "num_queries": 300, "num_docs": 5183},
        "metrics": METRICS,
        "per_query": {"bm25": {"1": {"ndcg@10": 1.0}}, "dense": {"1": {"ndcg@10": 0.5}}},
        "timings": {"bm25": {"index_s": 1.234, "search_s": 0.5}, "total_s": 9.0},
        "references": REFERENCES,
    }
    results.update(overrides)
    return results


@pytest.mark.unit
def test_write_report_files(tmp_path: Path) -> None:
    out = tmp_path / "run" / "nested"
    paths = write_report(out, _results())
    assert paths == ReportPaths(out / "results.json", out / "results.md", out / "chart.png")
    assert sorted(p.name for p in out.iterdir()) == ["chart.png", "results.json", "results.md"]

    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert list(data) == [
        "config",
        "dataset",
        "metrics",
        "per_query",
        "timings",
        "versions",
        "references",
    ]
    assert data["metrics"]["bm25"]["ndcg@10"] == 0.67621
    assert data["metrics"]["dense"]["map@100"] is None  # NaN is not JSON
    assert data["config"]["index_dir"] == "/tmp/x"
    assert data["per_query"]["dense"]["1"] == {"ndcg@10": 0.5}
    assert set(data["versions"]) == {
        "python",
        "torch",
        "faiss",
        "sentence-transformers",
        "transformers",
        "rag",
    }
    assert data["versions"]["python"].startswith("3.")

    assert paths.chart.read_bytes()[:8] == PNG_SIGNATURE
    assert paths.chart.stat().st_size > 5_000

    md = paths.markdown.read_text(encoding="utf-8")
    assert md.startswith("# Retrieval evaluation: scifact (test)")
    assert "300 queries, 5,183 documents." in md
    assert (
        "| mode | nDCG@10 | MRR@10 | Recall@1 | Recall@5 | Recall@10 | Recall@100 | MAP@100 |" in md
    )
    assert "| bm25 | 0.6762 | 0.6413 | 0.5000 | 0.7500 | 0.8013 | 0.9127 | 0.6300 |" in md
    assert "| dense | 0.6451 | 0.6000 | – | – | 0.7833 | – | – |" in md
    assert "## Published references" in md
    assert "| BM25 Anserini flat | 0.6789 | – | 0.9253 | anserini |" in md
    assert "| bm25.index_s | 1.23 |" in md
    assert '"model": "all-MiniLM-L6-v2"' in md


@pytest.mark.unit
def test_report_without_references_and_given_versions_win(tmp_path: Path) -> None:
    paths = write_report(
        tmp_path, {"metrics": {"only": {"ndcg@10": 0.5}}, "versions": {"torch": "9.9"}, "x": 1}
    )
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["versions"]["torch"] == "9.9"
    assert data["references"] == {} and data["x"] == 1
    assert "Published references" not in paths.markdown.read_text(encoding="utf-8")
    assert paths.chart.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.unit
@pytest.mark.parametrize(
    "results",
    [{}, {"metrics": {}}, {"metrics": {"a": 0.5}}, {"metrics": METRICS, "references": {"x": 1}}],
)
def test_invalid_results_rejected(tmp_path: Path, results: dict) -> None:
    with pytest.raises(InvalidInput, match=r"results\['(metrics|references)'\]"):
        write_report(tmp_path, results)
    assert not any(tmp_path.iterdir())


@pytest.mark.unit
def test_markdown_table_exact() -> None:
    table = markdown_table(
        {"a|b": {"ndcg@10": 0.123456, "hit@5": 1}, "c": {"note": "x"}},
        ["ndcg@10", "hit@5", "note"],
        digits=3,
    )
    assert table == (
        "| mode | nDCG@10 | Hit@5 | note |\n"
        "|---|---:|---:|---|\n"
        "| a\\|b | 0.123 | 1 | – |\n"
        "| c | – | – | x |\n"
    )


@pytest.mark.unit
def test_column_titles_and_versions() -> None:
    assert column_title("ndcg@10") == "nDCG@10"
    assert column_title("recall@100") == "Recall@100"
    assert column_title("source") == "source"
    versions = collect_versions()
    assert versions["python"] and "rag" in versions
