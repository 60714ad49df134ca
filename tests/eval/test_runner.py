"""End-to-end evaluation through the real ingest pipeline and the bundled embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.beir import load_beir, slice_beir
from eval.cli import run_eval_command
from eval.runner import MODES, evaluate
from rag.settings import load_settings
from tests.eval.zh_corpus import write_zh_dataset

pytestmark = pytest.mark.integration

# nDCG@10 of the default hybrids on the full SciFact test split (README); a slice
# with fewer distractors is easier, so it must do at least as well.
FULL_RUN_NDCG = {"hybrid-rrf": 0.7077, "hybrid-weighted": 0.7257}
# Measured on this slice (20 test queries + 200 distractors, seed 0): rrf 0.935,
# weighted 0.895; the floors leave 0.05 for numeric noise (bf16, threads).
SLICE_NDCG_FLOOR = {"hybrid-rrf": 0.88, "hybrid-weighted": 0.84}


@pytest.mark.slow
def test_scifact_slice_hybrid_finds_relevant_documents(
    scifact_dir: Path, tmp_path: Path, real_embedder
) -> None:
    dataset = slice_beir(load_beir(scifact_dir, "test"), n_queries=20, extra_docs=200, seed=0)
    settings = load_settings(data_dir=tmp_path / "data")
    result = evaluate(dataset, settings, list(MODES), tmp_path / "cache", embedder=real_embedder)
    for mode, floor in SLICE_NDCG_FLOOR.items():
        ndcg = result.metrics[mode]["ndcg@10"]
        assert ndcg >= max(floor, FULL_RUN_NDCG[mode]), (mode, result.metrics)
    hybrid = result.metrics["hybrid-rrf"]
    assert hybrid["recall@10"] >= 0.95
    top = {qid: max(run, key=run.get) for qid, run in result.runs["hybrid-rrf"].items() if run}
    first_relevant = sum(top[q] in dataset.qrels[q] for q in top) / len(top)
    assert first_relevant >= 0.6  # a known relevant document is ranked first for most claims
    again = evaluate(dataset, settings, ["bm25"], tmp_path / "cache", embedder=real_embedder)
    assert again.timings["ingest_seconds"] == 0.0  # cached: a sweep re-embeds nothing


@pytest.mark.slow
def test_fusion_is_robust_when_the_dense_retriever_is_weak(tmp_path: Path, real_embedder) -> None:
    dataset = load_beir(write_zh_dataset(tmp_path / "zh"), "test")
    settings = load_settings(data_dir=tmp_path / "data")
    result = evaluate(dataset, settings, list(MODES), tmp_path / "cache", embedder=real_embedder)
    ndcg = {mode: m["ndcg@10"] for mode, m in result.metrics.items()}
    best_single = max(ndcg["bm25"], ndcg["dense"])
    assert ndcg["bm25"] > ndcg["dense"], ndcg  # English-only embedder on Chinese text
    assert ndcg["hybrid-rrf"] >= best_single - 0.1, ndcg


def test_eval_command_writes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_zh_dataset(tmp_path / "zh")
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_EMBEDDING__MODEL", "hashing:256")
    out = tmp_path / "out"
    code = run_eval_command(data, "test", "bm25,hybrid-rrf", 10, out, None)
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.md", "chart.png"}
    import json

    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"bm25", "hybrid-rrf"}
    assert {"ndcg@10", "recall@10", "mrr@10"} <= set(results["metrics"]["bm25"])
    assert results["metrics"]["bm25"]["ndcg@10"] > 0.8
    assert run_eval_command(data, "test", "bm25,nonsense", 10, out, None) == 2
    assert run_eval_command(tmp_path / "missing", "test", "bm25", 10, out, None) == 2


def test_sweep_adds_a_row_per_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    data = write_zh_dataset(tmp_path / "zh")
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_EMBEDDING__MODEL", "hashing:256")
    out = tmp_path / "out"
    code = run_eval_command(
        data, "test", "bm25", 10, out, None, rrf_k="20,60", dense_weight="0.3", candidates="5"
    )
    assert code == 0
    metrics = json.loads((out / "results.json").read_text())["metrics"]
    assert set(metrics) == {
        "bm25",
        "hybrid-rrf k=20",
        "hybrid-rrf k=60",
        "hybrid-weighted w=0.3",
        "bm25 candidates=5",
    }
    assert run_eval_command(data, "test", "bm25", 10, out, None, rrf_k="x") == 2


def test_user_questions_against_an_existing_collection(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app
    from tests.conftest import PROJECT_ROOT

    env = {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_EMBEDDING__MODEL": "hashing:256"}
    runner = CliRunner()
    pdf = PROJECT_ROOT / "data" / "acme-employee-handbook.pdf"
    assert (
        runner.invoke(app, ["ingest", str(pdf), str(PROJECT_ROOT / "data")], env=env).exit_code == 0
    )
    questions = tmp_path / "questions.jsonl"
    rows = [
        {
            "question": "When is a doctor's certificate required?",
            "document": "acme-employee-handbook.pdf",
            "page": 2,
        },
        {
            "question": "How much is the training budget per year?",
            "document": "acme-employee-handbook.pdf",
            "page": 3,
        },
        {"question": "普洱茶属于哪一类茶？", "document": "tea-culture-zh.md"},
    ]
    questions.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "eval",
            str(questions),
            "-c",
            "default",
            "--modes",
            "bm25,hybrid-weighted",
            "--k",
            "5",
            "--out",
            str(out),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["metrics"]["hybrid-weighted"]["document_hit"] == 1.0
    assert report["metrics"]["bm25"]["page_hit"] == 1.0
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"
    questions.write_text('{"question": "x"}\n')
    bad = runner.invoke(app, ["eval", str(questions)], env=env)
    assert bad.exit_code == 2 and "line 1" in (bad.stdout + (bad.stderr or ""))


# CMRC 2018 trial slice (60 questions, their passages + 30 distractors, seed 0;
# 224 chunks), Chinese questions with the English-only bundled embedder. Measured
# nDCG@10: bm25 0.979, dense 0.357, both hybrids 0.979 (BM25 alone for Chinese;
# before that, weighted fusion lost 0.04 and RRF 0.25 to BM25 on the full set).
CMRC_SLICE_BM25_FLOOR = 0.95
# The default hybrid may fall this far below the better single retriever (issue 9).
BEST_SINGLE_TOLERANCE = 0.005


@pytest.mark.slow
def test_cmrc_slice_hybrid_keeps_up_with_the_better_retriever(
    tmp_path: Path, real_embedder
) -> None:
    from tests.conftest import shared_path

    dataset = slice_beir(
        load_beir(shared_path("cmrc2018-trial"), "test"), n_queries=60, extra_docs=30, seed=0
    )
    settings = load_settings(data_dir=tmp_path / "data")
    result = evaluate(dataset, settings, list(MODES), tmp_path / "cache", embedder=real_embedder)
    ndcg = {mode: m["ndcg@10"] for mode, m in result.metrics.items()}
    default = f"hybrid-{settings.retrieval.fusion}"
    assert ndcg["bm25"] >= CMRC_SLICE_BM25_FLOOR, ndcg
    assert ndcg[default] >= max(ndcg["bm25"], ndcg["dense"]) - BEST_SINGLE_TOLERANCE, ndcg
    assert ndcg["hybrid-rrf"] >= max(ndcg["bm25"], ndcg["dense"]) - BEST_SINGLE_TOLERANCE, ndcg
