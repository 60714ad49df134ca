"""Pages for formats without pages: blocks of text grouped into numbered pages.

Word and OpenDocument files are reflowed by the application that shows them,
so they have no fixed pages. A citation still needs a place to point at: a
page here is the text between two page breaks stored in the file (hard breaks,
and the breaks Word recorded when it last laid the document out), and a run
of more than BLOCKS_PER_PAGE blocks without a break is cut every
BLOCKS_PER_PAGE blocks (a paragraph, heading, list item or table is a block).
A picture's OCR text is a block too (``ingest.parsers.images.OcrBlock``): the
page records the lowest confidence among its OCR blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.parsers.images import OcrBlock
from rag.errors import EmptyDocument
from rag.types import Page

# About what a printed page holds: 40 paragraphs of 2-3 lines each is one to
# two pages of body text, so a cited "page" stays a short read.
BLOCKS_PER_PAGE = 40
PAGE_BREAK = "\f"


def heading(level: int, text: str) -> str:
    """A Markdown ATX heading (level clamped to 1-6)."""
    return "#" * min(max(level, 1), 6) + " " + " ".join(text.split())


def pages_from_blocks(
    blocks: Iterable[str | OcrBlock], kind: str, per_page: int = BLOCKS_PER_PAGE
) -> tuple[Page, ...]:
    """Group blocks into pages at PAGE_BREAK markers and every ``per_page`` blocks.

    Args:
        blocks: Texts in reading order; PAGE_BREAK alone marks a page break;
            an OcrBlock is a picture's text read by OCR.
        kind: The format's name, for the error message.
        per_page: Most blocks on one page.

    Returns:
        Pages numbered from 1; blocks are separated by a blank line. A page
        with OCR blocks has the least of their confidences as ``ocr_confidence``.

    Raises:
        EmptyDocument: no block has text.
    """
    pages: list[list[str]] = [[]]
    confidences: list[list[float]] = [[]]
    for block in blocks:
        if block == PAGE_BREAK:
            if pages[-1]:
                pages.append([])
                confidences.append([])
            continue
        text = block.text if isinstance(block, OcrBlock) else block
        if not text.strip():
            continue
        if len(pages[-1]) >= per_page:
            pages.append([])
            confidences.append([])
        pages[-1].append(text.strip())
        if isinstance(block, OcrBlock) and block.confidence is not None:
            confidences[-1].append(block.confidence)
    filled = [(page, sure) for page, sure in zip(pages, confidences, strict=True) if page]
    if not filled:
        raise EmptyDocument(f"the {kind} holds no text: upload a file with content")
    return tuple(
        Page(i, "\n\n".join(page), min(sure) if sure else None)
        for i, (page, sure) in enumerate(filled, start=1)
    )
