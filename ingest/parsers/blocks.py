"""Pages for formats without pages: blocks of text grouped into numbered pages.

Word and OpenDocument files are reflowed by the application that shows them,
so they have no fixed pages. A citation still needs a place to point at: a
page here is the text between two page breaks stored in the file (hard breaks,
and the breaks Word recorded when it last laid the document out), and a run
of more than BLOCKS_PER_PAGE blocks without a break is cut every
BLOCKS_PER_PAGE blocks (a paragraph, heading, list item or table is a block).
"""

from __future__ import annotations

from collections.abc import Iterable

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
    blocks: Iterable[str], kind: str, per_page: int = BLOCKS_PER_PAGE
) -> tuple[Page, ...]:
    """Group blocks into pages at PAGE_BREAK markers and every ``per_page`` blocks.

    Args:
        blocks: Texts in reading order; PAGE_BREAK alone marks a page break.
        kind: The format's name, for the error message.
        per_page: Most blocks on one page.

    Returns:
        Pages numbered from 1; blocks are separated by a blank line.

    Raises:
        EmptyDocument: no block has text.
    """
    pages: list[list[str]] = [[]]
    for block in blocks:
        if block == PAGE_BREAK:
            if pages[-1]:
                pages.append([])
            continue
        if not block.strip():
            continue
        if len(pages[-1]) >= per_page:
            pages.append([])
        pages[-1].append(block.strip())
    filled = [page for page in pages if page]
    if not filled:
        raise EmptyDocument(f"the {kind} holds no text: upload a file with content")
    return tuple(Page(i, "\n\n".join(page)) for i, page in enumerate(filled, start=1))
