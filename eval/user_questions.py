"""Evaluate retrieval on a user's own questions about their own documents.

The questions file is JSONL, one object a line::

    {"question": "What is the warranty period?", "document": "manual.pdf", "page": 12,
     "answer": "Two years"}

``document`` is a document id or a filename; ``page`` (1-based) and ``answer`` are
optional; ``id`` may name the question. Scoring asks whether the expected
document, and the expected page, appear among the top k retrieved chunks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePath
from typing import Any

from rag.errors import InvalidInput, ParseError

ALLOWED_KEYS = frozenset({"question", "document", "page", "answer", "id"})


@dataclass(frozen=True)
class UserQuestion:
    """One question with where its answer is expected.

    Attributes:
        question: The question text.
        document: Expected document, by id or by filename.
        page: Expected 1-based page, or None when only the document is known.
        answer: Expected answer text, kept for reports.
        question_id: The ``id`` field, else ``"line-<n>"``.
        line: 1-based line number in the questions file (0 when built in code).
    """

    question: str
    document: str
    page: int | None = None
    answer: str | None = None
    question_id: str = ""
    line: int = 0


@dataclass(frozen=True)
class RetrievedRef:
    """Where one retrieved chunk comes from: the document and its page range."""

    document_id: str
    filename: str
    page_start: int
    page_end: int

    @classmethod
    def from_hit(cls, hit: Any) -> RetrievedRef:
        """Build from a ``rag.types.Hit`` (or anything with the same four fields)."""
        return cls(hit.document_id, hit.filename, hit.page_start, hit.page_end)


def _filename_key(name: str) -> str:
    # Users write "Manual.pdf" or "docs/manual.pdf" for a stored "manual.pdf";
    # compare the last path part, case-folded.
    return PurePath(name.replace("\\", "/")).name.casefold()


def document_matches(question: UserQuestion, ref: RetrievedRef) -> bool:
    """True when ``ref`` is the expected document: same id, or same file name (any case/folder)."""
    if question.document == ref.document_id:
        return True
    return bool(ref.filename) and _filename_key(question.document) == _filename_key(ref.filename)


def page_matches(question: UserQuestion, ref: RetrievedRef) -> bool:
    """True when ``ref`` is the expected document and its pages include the expected page."""
    if question.page is None or not document_matches(question, ref):
        return False
    return ref.page_start <= question.page <= ref.page_end


def _parse_line(record: Any, name: str, number: int) -> UserQuestion:
    where = f"{name} line {number}"
    if not isinstance(record, dict):
        raise ParseError(f"{where}: expected a JSON object")
    unknown = sorted(set(record) - ALLOWED_KEYS)
    if unknown:
        raise ParseError(f"{where}: unknown keys {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ParseError(f"{where}: 'question' must be a non-empty string")
    document = record.get("document")
    if isinstance(document, int) and not isinstance(document, bool):
        document = str(document)
    if not isinstance(document, str) or not document.strip():
        raise ParseError(f"{where}: 'document' must be a non-empty filename or document id")
    page = record.get("page")
    if page is not None and (isinstance(page, bool) or not isinstance(page, int) or page < 1):
        raise ParseError(f"{where}: 'page' must be an integer >= 1, got {page!r}")
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise ParseError(f"{where}: 'answer' must be a string, got {answer!r}")
    qid = record.get("id")
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, str | int)):
        raise ParseError(f"{where}: 'id' must be a string or integer, got {qid!r}")
    return UserQuestion(
        question=question.strip(),
        document=document.strip(),
        page=page,
        answer=answer,
        question_id=str(qid) if qid is not None else f"line-{number}",
        line=number,
    )


def load_user_questions(path: Path) -> list[UserQuestion]:
    """Read a questions JSONL file; blank lines are skipped.

    Raises:
        InvalidInput: the file does not exist.
        ParseError: a line is not valid JSON or breaks the schema (file and
            1-based line number in the message), or the file holds no question.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"questions file not found: expected a JSONL file at {path}")
    questions: list[UserQuestion] = []
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ParseError(
                        f"{path.name} line {number}: invalid JSON ({exc.msg})"
                    ) from exc
                questions.append(_parse_line(record, path.name, number))
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path.name}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    if not questions:
        raise ParseError(f"{path.name}: no questions found; write one JSON object a line")
    return questions


def _first_rank(refs: Sequence[RetrievedRef], match: Callable[[RetrievedRef], bool]) -> int | None:
    for rank, ref in enumerate(refs, start=1):
        if match(ref):
            return rank
    return None


def _summary(ranks: Sequence[int | None], k: int) -> dict[str, float]:
    n = len(ranks)
    return {
        f"hit@{k}": sum(1 for r in ranks if r is not None) / n,
        f"mrr@{k}": math.fsum(1.0 / r for r in ranks if r is not None) / n,
    }


def score_user_questions(
    questions: Sequence[UserQuestion],
    results: Sequence[Sequence[RetrievedRef]],
    k: int = 10,
) -> dict[str, Any]:
    """Hit rate@k and MRR@k by document and by page, plus one row per question.

    Args:
        questions: The questions, in order.
        results: For each question, the retrieved chunks best first.
        k: Only the first ``k`` chunks of each result count.

    Returns:
        ``{"k", "num_questions", "num_with_page", "document": {"hit@k", "mrr@k"},
        "page": {"hit@k", "mrr@k"} over the questions that name a page (None if none do),
        "rows": [{"id", "question", "document", "page", "answer", "document_rank",
        "page_rank", "top"}]}``; ranks are 1-based or None when not in the top k.

    Raises:
        InvalidInput: no questions, a results list of another length, or k < 1.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k must be a positive integer, got {k!r}")
    if not questions:
        raise InvalidInput("no questions to score; the questions list is empty")
    if len(results) != len(questions):
        raise InvalidInput(
            f"results must hold one list per question: {len(questions)} questions, "
            f"{len(results)} result lists"
        )
    rows: list[dict[str, Any]] = []
    doc_ranks: list[int | None] = []
    page_ranks: list[int | None] = []
    for question, refs in zip(questions, results, strict=True):
        top = list(refs[:k])
        doc_rank = _first_rank(top, partial(document_matches, question))
        page_rank = None
        if question.page is not None:
            page_rank = _first_rank(top, partial(page_matches, question))
            page_ranks.append(page_rank)
        doc_ranks.append(doc_rank)
        rows.append(
            {
                "id": question.question_id,
                "question": question.question,
                "document": question.document,
                "page": question.page,
                "answer": question.answer,
                "document_rank": doc_rank,
                "page_rank": page_rank,
                "top": [
                    {
                        "document_id": r.document_id,
                        "filename": r.filename,
                        "page_start": r.page_start,
                        "page_end": r.page_end,
                    }
                    for r in top
                ],
            }
        )
    return {
        "k": k,
        "num_questions": len(questions),
        "num_with_page": len(page_ranks),
        "document": _summary(doc_ranks, k),
        "page": _summary(page_ranks, k) if page_ranks else None,
        "rows": rows,
    }
