"""Answer evaluation end to end: real ingest, the API's AnswerPipeline, the bundled models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from eval.answer_runner import evaluate_answers
from eval.qa import load_qa, slice_qa
from rag.settings import load_settings
from tests.conftest import shared_path

pytestmark = pytest.mark.integration

# Measured on the first 10 questions of each set (6 answerable and 4
# unanswerable for SQuAD; 10 answerable over their documents + 20 others for
# CMRC) with MiniLM and the extractive generator; floors sit a little below.
# The extractive answer quotes whole source sentences, so F1 against a short
# gold span is low while "contains gold" and citation support are high, and it
# never refuses: it always has a sentence to quote.
SQUAD_EXTRACTIVE_FLOORS = {
    "contains_gold": 0.45,  # measured 0.50
    "f1": 0.08,  # 0.095
    "first_sentence_f1": 0.3,  # 0.381 (0.105 before the answer phrase led)
    "gold_doc_cited": 0.95,  # 1.00 (one document)
    "citation_recall": 0.9,  # 1.00: quoted sentences
    "citation_precision": 0.9,  # 1.00
}
CMRC_EXTRACTIVE_FLOORS = {
    "contains_gold": 0.85,  # measured 0.90
    "f1": 0.44,  # 0.489
    "first_sentence_f1": 0.5,  # 0.552 (0.511 before the answer phrase led)
    "gold_doc_cited": 0.95,  # 1.00
    "citation_recall": 0.9,  # 1.00
    "citation_precision": 0.9,  # 1.00
}
# No slice with the transformers generator: SmolLM2 took about 70 s per
# question on the shared 2-core machine (prefill of a 5-source prompt), far
# over the minute such a test may take; `rag eval --generators transformers
# --limit N` measures it instead (README, evaluation section).


def _qa(name: str) -> Path:
    return shared_path("qa", name)


def _check_records(path: Path, expected: int, generator: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == expected
    for record in records:
        assert record["generator"] == generator
        assert {"question", "gold", "answer", "citations", "flags", "scores"} <= set(record)
        for citation in record["citations"]:
            assert citation["file"] and citation["page"] >= 1
    return records


def _assert_floors(metrics: dict[str, Any], floors: dict[str, float]) -> None:
    for key, floor in floors.items():
        assert metrics[key] is not None and metrics[key] >= floor, (key, metrics)


@pytest.mark.slow
def test_squad_slice_with_the_extractive_generator(tmp_path: Path, real_embedder) -> None:
    dataset = load_qa(_qa("squad2-normans")).head(10)
    settings = load_settings(data_dir=tmp_path / "data")
    answers = tmp_path / "answers.jsonl"
    result = evaluate_answers(
        dataset,
        settings,
        ["extractive"],
        tmp_path / "cache",
        answers_path=answers,
        embedder=real_embedder,
    )
    metrics = result.metrics["extractive"]
    _assert_floors(metrics, SQUAD_EXTRACTIVE_FLOORS)
    assert metrics["questions"] == 10 and metrics["latency_p50"] > 0
    assert metrics["tokens_generated_mean"] is None  # no model, no tokens
    records = _check_records(answers, 10, "extractive")
    assert sum(not r["scores"]["answerable"] for r in records) == 4
    again = evaluate_answers(
        dataset.head(1), settings, ["extractive"], tmp_path / "cache", embedder=real_embedder
    )
    assert again.timings["ingest_seconds"] == 0.0  # the knowledge base is cached


@pytest.mark.slow
def test_cmrc_slice_with_the_extractive_generator(tmp_path: Path, real_embedder) -> None:
    dataset = slice_qa(load_qa(_qa("cmrc2018-trial")), n_questions=10, extra_docs=20)
    settings = load_settings(data_dir=tmp_path / "data")
    answers = tmp_path / "answers.jsonl"
    result = evaluate_answers(
        dataset,
        settings,
        ["extractive"],
        tmp_path / "cache",
        answers_path=answers,
        embedder=real_embedder,
    )
    metrics = result.metrics["extractive"]
    _assert_floors(metrics, CMRC_EXTRACTIVE_FLOORS)
    assert metrics["unanswerable_refused"] is None  # CMRC has no unanswerable questions
    _check_records(answers, 10, "extractive")


def _write_small_set(folder: Path) -> Path:
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "normandy.md").write_text(
        "# Normandy\n\nNormandy is a region in France. Rollo led the Normans in the 10th century.\n"
    )
    (folder / "docs" / "tea.txt").write_text("普洱茶属于黑茶。普洱茶产于云南。\n", encoding="utf-8")
    rows = [
        {"id": "1", "question": "In what country is Normandy?", "document": "normandy.md",
         "answers": ["France"]},
        {"id": "2", "question": "普洱茶属于哪一类茶？", "document": "tea.txt", "answers": ["黑茶"]},
        {"id": "3", "question": "Who wrote the Iliad?", "document": None, "answers": []},
    ]  # fmt: skip
    (folder / "questions.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return folder


def test_rag_eval_detects_a_qa_folder_and_writes_the_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    data = _write_small_set(tmp_path / "qa")
    env = {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_EMBEDDING__MODEL": "hashing:256"}
    out = tmp_path / "out"
    args = ["eval", str(data), "--generators", "extractive", "--limit", "3", "--out", str(out)]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.stdout
    assert {p.name for p in out.iterdir()} >= {
        "results.json",
        "results.md",
        "chart.png",
        "answers.jsonl",
    }
    report = json.loads((out / "results.json").read_text())
    metrics = report["metrics"]["extractive"]
    assert metrics["questions"] == 3
    assert metrics["contains_gold"] == 1.0  # both tiny documents quote the answer
    assert "Answer evaluation" in (out / "results.md").read_text()
    records = _check_records(out / "answers.jsonl", 3, "extractive")
    assert records[1]["scores"]["f1"] > 0  # Chinese scored by character
    bad = CliRunner().invoke(app, [*args[:3], "gpt5"], env=env)
    assert bad.exit_code == 2
