"""A user's own questions: loading with line-numbered errors and hit/MRR by document and page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.user_questions import (
    RetrievedRef,
    UserQuestion,
    load_user_questions,
    score_user_questions,
)
from rag.errors import InvalidInput, ParseError
from rag.types import Hit


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.unit
def test_load_questions(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            json.dumps({"question": " Warranty? ", "document": "manual.pdf", "page": 5}),
            "",
            json.dumps({"question": "Who?", "document": 17, "answer": "Ada", "id": "who"}),
        ],
    )
    questions = load_user_questions(path)
    assert questions == [
        UserQuestion("Warranty?", "manual.pdf", 5, None, "line-1", 1),
        UserQuestion("Who?", "17", None, "Ada", "who", 3),
    ]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"question": "x", ', "invalid JSON"),
        ('["x"]', "expected a JSON object"),
        ('{"document": "a.pdf"}', "'question' must be a non-empty string"),
        ('{"question": "x", "document": ""}', "'document' must be a non-empty"),
        ('{"question": "x", "document": "a.pdf", "page": 0}', "'page' must be an integer >= 1"),
        ('{"question": "x", "document": "a.pdf", "page": "3"}', "'page' must be an integer"),
        ('{"question": "x", "document": "a.pdf", "answer": 3}', "'answer' must be a string"),
        ('{"question": "x", "document": "a.pdf", "Page": 3}', r"unknown keys \['Page'\]"),
    ],
)
def test_bad_line_is_named(tmp_path: Path, line: str, fragment: str) -> None:
    good = json.dumps({"question": "ok", "document": "a.pdf"})
    path = write_lines(tmp_path / "q.jsonl", [good, line])
    with pytest.raises(ParseError, match=rf"q\.jsonl line 2: {fragment}"):
        load_user_questions(path)


@pytest.mark.unit
def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"expected a JSONL file at .*nope\.jsonl"):
        load_user_questions(tmp_path / "nope.jsonl")
    with pytest.raises(ParseError, match="no questions found"):
        load_user_questions(write_lines(tmp_path / "empty.jsonl", ["", "  "]))


QUESTIONS = [
    UserQuestion("q1", "manual.pdf", page=5),
    UserQuestion("q2", "d7"),  # by document id, no page
    UserQuestion("q3", "docs/Guide.PDF", page=2),
]
RESULTS = [
    [
        RetrievedRef("d2", "other.pdf", 1, 1),
        RetrievedRef("d1", "manual.pdf", 1, 2),  # document hit at rank 2, wrong pages
        RetrievedRef("d1", "Manual.pdf", 4, 6),  # page 5 lies in 4-6: page hit at rank 3
    ],
    [RetrievedRef("d7", "x.pdf", 1, 1)],  # id match at rank 1
    [RetrievedRef("d3", "guide.pdf", 3, 4)],  # filename match at 1, page 2 not in 3-4
]


@pytest.mark.unit
def test_scores_hand_computed() -> None:
    report = score_user_questions(QUESTIONS, RESULTS, k=10)
    assert report["num_questions"] == 3 and report["num_with_page"] == 2
    # document ranks 2, 1, 1 -> hit 3/3; MRR (1/2 + 1 + 1) / 3 = 0.8333
    assert report["document"] == {"hit@10": 1.0, "mrr@10": pytest.approx(2.5 / 3)}
    # page ranks (questions with a page only) 3, none -> hit 1/2; MRR (1/3 + 0) / 2
    assert report["page"] == {"hit@10": 0.5, "mrr@10": pytest.approx(1 / 6)}
    rows = report["rows"]
    assert [(r["document_rank"], r["page_rank"]) for r in rows] == [(2, 3), (1, None), (1, None)]
    assert rows[0]["top"][2] == {
        "document_id": "d1",
        "filename": "Manual.pdf",
        "page_start": 4,
        "page_end": 6,
    }


@pytest.mark.unit
def test_cutoff_k_limits_ranks() -> None:
    report = score_user_questions(QUESTIONS, RESULTS, k=1)
    # Only rank 1 counts: document ranks none, 1, 1 -> hit 2/3, MRR 2/3; no page hit.
    assert report["document"] == {"hit@1": pytest.approx(2 / 3), "mrr@1": pytest.approx(2 / 3)}
    assert report["page"] == {"hit@1": 0.0, "mrr@1": 0.0}
    assert all(len(r["top"]) <= 1 for r in report["rows"])


@pytest.mark.unit
def test_no_page_questions_give_no_page_metrics() -> None:
    report = score_user_questions([UserQuestion("q", "a.pdf")], [[]], k=5)
    assert report["page"] is None
    assert report["document"] == {"hit@5": 0.0, "mrr@5": 0.0}


@pytest.mark.unit
def test_invalid_arguments() -> None:
    with pytest.raises(InvalidInput, match="1 questions, 0 result lists"):
        score_user_questions(QUESTIONS[:1], [], k=5)
    with pytest.raises(InvalidInput, match="k must be a positive integer, got 0"):
        score_user_questions(QUESTIONS[:1], RESULTS[:1], k=0)
    with pytest.raises(InvalidInput, match="no questions"):
        score_user_questions([], [], k=5)


@pytest.mark.unit
def test_ref_from_hit() -> None:
    hit = Hit(
        chunk_id=1,
        document_id="d1",
        collection="default",
        filename="manual.pdf",
        ordinal=0,
        text="...",
        page_start=4,
        page_end=6,
        score=0.5,
    )
    assert RetrievedRef.from_hit(hit) == RetrievedRef("d1", "manual.pdf", 4, 6)
