"""Hit builder shared by the query tests."""

from __future__ import annotations

from rag.types import Hit


def make_hit(
    chunk_id: int,
    text: str,
    *,
    filename: str = "doc.pdf",
    page_start: int = 1,
    page_end: int | None = None,
    flagged: bool = False,
) -> Hit:
    """A Hit with only what the query modules read filled in."""
    return Hit(
        chunk_id=chunk_id,
        document_id=f"doc-{chunk_id}",
        collection="default",
        filename=filename,
        ordinal=chunk_id,
        text=text,
        page_start=page_start,
        page_end=page_start if page_end is None else page_end,
        score=1.0 / chunk_id if chunk_id else 1.0,
        injection_flagged=flagged,
    )
