"""Load a question-answering set with gold answers (a ``docs/`` folder and ``questions.jsonl``).

One question a line: ``{"id", "question", "document", "answers", "context"}``,
where ``document`` names the file in ``docs/`` that holds the answer (null when
none does) and an empty ``answers`` list marks a question the documents cannot
answer: the right reply is "not in the knowledge base".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import InvalidInput, ParseError

log = logging.getLogger(__name__)

QUESTIONS_FILE = "questions.jsonl"
DOCS_FOLDER = "docs"


@dataclass(frozen=True)
class QaQuestion:
    """One question and what counts as a right answer.

    Attributes:
        qid: The question's id in the set.
        question: The question text.
        answers: Gold answer spans; empty when the documents hold no answer.
        document: File name in ``docs/`` holding the answer, None when unanswerable.
        context: The paragraph the gold spans come from ("" when unanswerable).
    """

    qid: str
    question: str
    answers: tuple[str, ...]
    document: str | None
    context: str = ""

    @property
    def answerable(self) -> bool:
        """Whether the documents hold an answer (there are gold spans)."""
        return bool(self.answers)


@dataclass(frozen=True)
class QaDataset:
    """Documents to ingest and the questions about them, in file order."""

    name: str
    docs_dir: Path
    documents: tuple[str, ...]
    questions: tuple[QaQuestion, ...]
    skipped: int = 0  # lines whose question is empty (a defect of the set), left out

    def summary(self) -> dict[str, Any]:
        """Counts for a report: name, documents, questions, answerable and unanswerable."""
        answerable = sum(q.answerable for q in self.questions)
        return {
            "name": self.name,
            "num_docs": len(self.documents),
            "num_queries": len(self.questions),
            "answerable": answerable,
            "unanswerable": len(self.questions) - answerable,
            "skipped_empty_questions": self.skipped,
        }

    def head(self, limit: int | None) -> QaDataset:
        """The same set with only its first ``limit`` questions (all when None)."""
        if limit is None:
            return self
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        return QaDataset(
            self.name, self.docs_dir, self.documents, self.questions[:limit], self.skipped
        )


def is_qa_folder(path: Path) -> bool:
    """True for a QA-set layout (``docs/`` and ``questions.jsonl``, no BEIR corpus)."""
    path = Path(path)
    if (path / "corpus.jsonl").exists() or (path / "corpus.jsonl.gz").exists():
        return False
    return (path / DOCS_FOLDER).is_dir() and (path / QUESTIONS_FILE).is_file()


def load_qa(folder: Path) -> QaDataset:
    """Read a QA set.

    Raises:
        InvalidInput: The folder lacks ``docs/`` or ``questions.jsonl``, or
            ``docs/`` holds no file.
        ParseError: A line is not a JSON object with a ``question`` and a list
            of ``answers``, or names a document that ``docs/`` lacks.
    """
    folder = Path(folder)
    docs_dir = folder / DOCS_FOLDER
    questions_path = folder / QUESTIONS_FILE
    if not docs_dir.is_dir() or not questions_path.is_file():
        raise InvalidInput(
            f"QA set not found: expected {docs_dir}/ and {questions_path} "
            "(see datasets/qa/README.md for the format)"
        )
    documents = tuple(sorted(p.name for p in docs_dir.iterdir() if p.is_file()))
    if not documents:
        raise InvalidInput(f"QA set {folder} has no documents in {docs_dir}")
    known = set(documents)
    questions: list[QaQuestion] = []
    skipped = 0
    with questions_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            question = _parse_question(line, number, questions_path, known)
            if not question.question.strip():
                # CMRC 2018 trial has one such line; the pipeline rejects an empty
                # question, and it has nothing to measure.
                log.warning("empty question skipped file=%s line=%d", questions_path, number)
                skipped += 1
                continue
            questions.append(question)
    if not questions:
        raise InvalidInput(f"{questions_path} holds no questions")
    return QaDataset(folder.name, docs_dir, documents, tuple(questions), skipped)


def _parse_question(line: str, number: int, path: Path, known: set[str]) -> QaQuestion:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{path} line {number}: not JSON ({exc.msg})") from exc
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        raise ParseError(f"{path} line {number}: expected an object with a 'question' string")
    answers = row.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ParseError(f"{path} line {number}: 'answers' must be a list of strings")
    document = row.get("document")
    if document is not None and document not in known:
        raise ParseError(f"{path} line {number}: document {document!r} is not in docs/")
    return QaQuestion(
        qid=str(row.get("id", number)),
        question=row["question"],
        answers=tuple(a for a in answers if a.strip()),
        document=document,
        context=str(row.get("context") or ""),
    )


def slice_qa(dataset: QaDataset, n_questions: int, extra_docs: int) -> QaDataset:
    """The first ``n_questions`` questions over their documents plus ``extra_docs`` others.

    For quick end-to-end tests on a large set: the distractors are the first
    other documents in name order, so the slice is deterministic (and easier
    than the whole set, which has more distractors).
    """
    head = dataset.head(n_questions)
    needed = {q.document for q in head.questions if q.document}
    others = [d for d in dataset.documents if d not in needed][:extra_docs]
    documents = tuple(sorted(needed | set(others)))
    return QaDataset(dataset.name, dataset.docs_dir, documents, head.questions, dataset.skipped)
