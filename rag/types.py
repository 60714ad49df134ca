"""Small frozen data types passed between stages.

They are replaced, never mutated, so a stage cannot change what an earlier
stage handed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Page:
    """Text of one page as a parser returned it (1-based page number).

    ``ocr_confidence`` is set when the text was read by OCR: the engine's
    mean confidence over the page's characters, 0 to 1.
    """

    number: int
    text: str
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """What a parser returns: the pages and the media type it recognised."""

    media_type: str
    pages: tuple[Page, ...]
    warnings: tuple[str, ...] = ()

    @property
    def page_count(self) -> int:
        """Number of pages (1 for plain text and HTML)."""
        return len(self.pages)


@dataclass(frozen=True)
class CleanText:
    """The cleaned text of a whole document and where each page starts in it.

    ``page_starts[i]`` is the character offset at which ``page_numbers[i]``
    begins; pages are joined with a blank line.
    """

    text: str
    page_starts: tuple[int, ...]
    page_numbers: tuple[int, ...]

    def page_at(self, offset: int) -> int:
        """Page number that holds the character at ``offset``."""
        import bisect

        if not self.page_numbers:
            return 1
        i = bisect.bisect_right(self.page_starts, offset) - 1
        return self.page_numbers[max(i, 0)]

    def page_breaks(self, start: int, end: int) -> tuple[tuple[int, int], ...]:
        """Pages that begin inside ``(start, end)``: (offset relative to start, page number)."""
        return tuple(
            (offset - start, number)
            for offset, number in zip(self.page_starts, self.page_numbers, strict=False)
            if start < offset < end
        )


@dataclass(frozen=True)
class Chunk:
    """A piece of a document's cleaned text, ready to embed and index.

    ``text[overlap_chars:] == clean.text[char_start:char_end]``; the first
    ``overlap_chars`` characters repeat the end of the previous chunk, or, in
    a chunk that continues a Markdown table, that table's header lines.
    ``ocr_confidence`` is set when the text was read by OCR (the least
    confident of its pages, 0 to 1).
    """

    ordinal: int
    text: str
    char_start: int
    char_end: int
    page_start: int
    page_end: int
    token_count: int
    overlap_chars: int = 0
    page_breaks: tuple[tuple[int, int], ...] = ()
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class ScoredId:
    """A chunk id with a retriever's score, best first in a result list."""

    chunk_id: int
    score: float


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with why it was chosen.

    ``dense_rank``/``sparse_rank`` are 1-based ranks in each retriever's list
    (None when that retriever did not return the chunk).
    """

    chunk_id: int
    document_id: str
    collection: str
    filename: str
    ordinal: int
    text: str
    page_start: int
    page_end: int
    score: float
    dense_rank: int | None = None
    sparse_rank: int | None = None
    dense_score: float | None = None
    sparse_score: float | None = None
    rerank_score: float | None = None
    injection_flagged: bool = False
    page_breaks: tuple[tuple[int, int], ...] = ()

    def page_at(self, offset: int) -> int:
        """Page of the character at ``offset`` in this chunk's text."""
        page = self.page_start
        for start, number in self.page_breaks:
            if start <= offset:
                page = number
        return page


@dataclass(frozen=True)
class Citation:
    """A source the answer cites, pointing to a document and page."""

    number: int
    document_id: str
    filename: str
    page: int
    chunk_id: int
    snippet: str
    score: float
    dense_rank: int | None = None
    sparse_rank: int | None = None


@dataclass(frozen=True)
class AnswerFlags:
    """What the rules did to the answer."""

    refused: bool = False
    injection_detected: bool = False
    fallback_used: bool = False
    redacted: bool = False
    not_found: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation."""

    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Answer:
    """The typed result of a question."""

    question: str
    answer: str
    citations: tuple[Citation, ...]
    flags: AnswerFlags
    timings: dict[str, float] = field(default_factory=dict)
    retrieval_query: str = ""
    generator: str = ""

    def to_dict(self) -> dict:
        """JSON-ready dict (the `--json` and API shape)."""
        from dataclasses import asdict

        return {
            "question": self.question,
            "answer": self.answer,
            "citations": [asdict(c) for c in self.citations],
            "flags": asdict(self.flags),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "retrieval_query": self.retrieval_query,
            "generator": self.generator,
        }
