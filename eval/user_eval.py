"""Evaluate retrieval on a user's own knowledge base from a JSONL file of questions.

Each line names the expected document (file name or id) and optionally the
page; hit rate and MRR are reported by document and by page for each
retrieval mode, against an existing collection (nothing is ingested).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.report import draw_chart, markdown_table
from eval.runner import MODES
from eval.user_questions import RetrievedRef, load_user_questions, score_user_questions
from rag.query.retrieval import RetrievalFilter

COLUMNS = ["document_hit", "document_mrr", "page_hit", "page_mrr"]


def evaluate_user_questions(
    services: Any, questions_path: Path, collections: tuple[str, ...], modes: list[str], k: int
) -> dict[str, Any]:
    """Scores per mode: ``{"metrics": {mode: {...}}, "rows": {mode: [...]}}``."""
    questions = load_user_questions(questions_path)
    retriever = services.retriever()
    metrics: dict[str, dict[str, float | None]] = {}
    rows: dict[str, list] = {}
    for mode in modes:
        retriever_mode, fusion = MODES[mode]
        results = [
            [
                RetrievedRef.from_hit(hit)
                for hit in retriever.retrieve(
                    q.question,
                    where=RetrievalFilter(collections=collections),
                    top_k=k,
                    mode=retriever_mode,  # type: ignore[arg-type]
                    fusion=fusion,
                ).hits
            ]
            for q in questions
        ]
        scored = score_user_questions(questions, results, k)
        page = scored["page"] or {}
        metrics[mode] = {
            "document_hit": scored["document"][f"hit@{k}"],
            "document_mrr": scored["document"][f"mrr@{k}"],
            "page_hit": page.get(f"hit@{k}"),
            "page_mrr": page.get(f"mrr@{k}"),
        }
        rows[mode] = scored["rows"]
    return {"metrics": metrics, "rows": rows, "questions": len(questions), "k": k}


def write_user_report(out_dir: Path, result: dict[str, Any]) -> tuple[Path, Path, Path]:
    """results.json, results.md and chart.png for a user-questions run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, chart_path = (
        out_dir / "results.json",
        out_dir / "results.md",
        out_dir / "chart.png",
    )
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    table = markdown_table(result["metrics"], COLUMNS)
    md_path.write_text(
        f"# Retrieval on your questions ({result['questions']} questions, k = {result['k']})\n\n"
        f"{table}\n"
    )
    present = {
        mode: {c: v for c, v in m.items() if v is not None} for mode, m in result["metrics"].items()
    }
    draw_chart(chart_path, present, None, metrics=["document_hit", "page_hit"])
    return json_path, md_path, chart_path
