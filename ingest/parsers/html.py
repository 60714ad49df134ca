"""HTML parser: the main content's visible text, block structure kept as blank lines.

Saved web pages wrap an article in navigation, sidebars, share widgets, ads
and footers. As readability does, boilerplate is removed before the text is
taken: landmark elements (``<nav>``, ``<header>``, ``<footer>``, ``<aside>``,
``<form>`` and their ARIA roles), elements whose class or id names
boilerplate (``sidebar``, ``share``, ``comment``, ``breadcrumb``, ...), and
blocks made mostly of link text (menus, lists of related links). None of
these rules removes the element holding the page's first ``<h1>`` or a large
share of its text, so an oddly named wrapper cannot take the article with it.

Data tables become Markdown tables, as Word and OpenDocument tables do (see
``ingest.parsers.tables``), so the chunker keeps their rows whole and repeats
the header; a spanned cell's text is in its first grid position only, as
with merged cells in the office formats. Layout tables stay paragraphs.

The charset is taken from the bytes before the page's declaration: bytes that
are valid UTF-8 and not plain ASCII are UTF-8 whatever ``<meta charset>``
says (pages re-saved by editors keep their old declaration), and a declared
charset that fails to decode them is ignored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ingest.parsers.tables import markdown_table, trim_columns
from ingest.parsers.text import decode_text
from ingest.sniff import BOMS, HTML
from rag.errors import EmptyDocument
from rag.types import Page, ParsedDocument

if TYPE_CHECKING:  # BeautifulSoup is imported when a page is parsed
    from bs4 import NavigableString, Tag

# Gives the text to show in place of a picture (``<img>``, SVG ``<image>``),
# e.g. read by OCR; None leaves the picture as it is.
PictureText = Callable[["Tag"], "str | None"]

logger = logging.getLogger(__name__)

# Elements whose text is never content a reader sees or asks about.
_DROPPED = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "head")
# Elements that start a new block; each becomes its own paragraph so the
# cleaner does not glue a heading to the paragraph below it.
_BLOCKS = (
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
)
_CELLS = ("td", "th")
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_\-]+)", re.IGNORECASE)
_BLOCK_MARK = "\n\n"
_WHITESPACE = re.compile(r"\s+")
_DROPPED_SET = frozenset(_DROPPED)
_BLOCKS_SET = frozenset(_BLOCKS)

# Landmarks and ARIA roles around, not in, the content.
_LANDMARKS = frozenset({"header", "footer", "aside", "form", "menu", "dialog"})
_LANDMARK_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "dialog"}
)
# Words in class/id names that mark boilerplate (one word of the name, so
# "shareBtn" and "mw-footer" match but "header-title" does not match "head").
_BOILERPLATE_WORDS = frozenset(
    {
        "nav", "navbar", "navbox", "navigation", "menu", "footer", "sidebar", "comment",
        "comments", "share", "social", "breadcrumb", "breadcrumbs", "ad", "ads", "advert",
        "advertisement", "banner", "related", "recommend", "login", "copyright", "toolbar",
        "popup", "cookie", "subscribe", "catlinks", "editsection", "toc", "sitenotice",
    }
)  # fmt: skip
_NAME_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# Blocks checked for link density, and the share of link text that makes
# one a menu (readability uses 0.5 for its candidates; lists of links are
# well above it, prose citing a few sources well below).
_LINK_BLOCKS = frozenset({"ul", "ol", "div", "table", "section", "dl", "p", "span", "td"})
_LINK_DENSITY = 0.6
# An element with this share of the page's text is content, whatever its name.
_KEEP_SHARE = 0.3
# Pages lay themselves out with tables too (a whole article in one cell). A
# table with a cell longer than this (a paragraph or more), with a single row
# or column, or with a table inside is layout: its text stays paragraphs.
_LAYOUT_CELL_CHARS = 400
# A rowspan or colspan beyond this is a typo or an attack (the grid is sized by them).
_MAX_SPAN = 100


def decode_html(data: bytes) -> str:
    """The page's text: BOM, then UTF-8 if the bytes are UTF-8, then the declared charset.

    Valid UTF-8 with non-ASCII bytes is practically never a legacy encoding,
    so it wins over a declaration; other bytes use the declared charset when
    it decodes them, else the text detection (UTF-8, GB18030, a guess).
    """
    if not any(data.startswith(bom) for bom, _ in BOMS) and not data.isascii():
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    declared = _META_CHARSET.search(data[:4096])
    if declared:
        encoding = declared.group(1).decode("ascii").lower()
        try:
            return data.decode(encoding).lstrip("\ufeff")
        except (LookupError, UnicodeDecodeError):
            logger.debug("declared charset=%s does not decode the page; detecting", encoding)
    return decode_text(data).text


def _words(name: str) -> list[str]:
    """Lower-case words of a class or id name (``shareBtn``: share, btn)."""
    return [word.lower() for word in _NAME_WORD.findall(name)]


def _is_boilerplate(tag: Tag) -> bool:
    if tag.name in _LANDMARKS or (tag.get("role") or "") in _LANDMARK_ROLES:
        return True
    names = [*(tag.get("class") or []), str(tag.get("id") or "")]
    return any(word in _BOILERPLATE_WORDS for name in names for word in _words(str(name)))


def _link_dense(tag: Tag, length: int) -> bool:
    """Mostly link text: a menu or a list of links, not prose that cites some."""
    if tag.name not in _LINK_BLOCKS or length == 0:
        return False
    linked = sum(len(a.get_text(" ", strip=True)) for a in tag.find_all("a"))
    return linked >= _LINK_DENSITY * length


def remove_boilerplate(body: Tag) -> None:
    """Remove navigation, sidebars, widgets and link lists from ``body`` in place.

    An element holding the first ``<h1>`` or at least _KEEP_SHARE of the
    text is never removed (only its boilerplate descendants are).
    """
    total = len(body.get_text(" ", strip=True)) or 1
    h1 = body.find("h1")
    for tag in body.find_all(True):
        if tag.decomposed or tag.parent is None:
            continue
        if not (_is_boilerplate(tag) or tag.name in _LINK_BLOCKS):
            continue
        length = len(tag.get_text(" ", strip=True))
        if length >= _KEEP_SHARE * total or (
            h1 is not None and (tag is h1 or h1 in tag.descendants)
        ):
            continue
        if _is_boilerplate(tag) or _link_dense(tag, length):
            tag.decompose()


def _cell_spans(cell: Tag) -> tuple[int, int]:
    """(rowspan, colspan) of a cell, each 1 to _MAX_SPAN (0 or junk counts as 1)."""

    def span(name: str) -> int:
        value = str(cell.get(name) or "1").strip()
        return min(max(int(value), 1), _MAX_SPAN) if value.isdigit() else 1

    return span("rowspan"), span("colspan")


def _skip_covered(row: list[str], column: int, pending: dict[int, int]) -> int:
    """Empty cells in ``row`` for the columns a rowspan from above covers; the next free column."""
    while pending.get(column, 0) > 0:
        row.append("")
        pending[column] -= 1
        column += 1
    return column


def table_grid(table: Tag) -> list[list[str]] | None:
    """The table's cell texts on a grid, spanned positions empty; None for a layout table.

    A cell spanning rows or columns keeps its text in its top-left grid
    position only (repeating it would make one cell look like several).
    Empty rows and columns are removed.
    """
    if (table.get("role") or "") == "presentation" or table.find("table") is not None:
        return None
    grid: list[list[str]] = []
    pending: dict[int, int] = {}  # column -> rows still covered by a rowspan from above
    for tr in table.find_all("tr"):
        row: list[str] = []
        column = 0
        for cell in tr.find_all(("td", "th"), recursive=False):
            column = _skip_covered(row, column, pending)
            text = " ".join(cell.get_text(" ").split())
            if len(text) > _LAYOUT_CELL_CHARS:
                return None
            rowspan, colspan = _cell_spans(cell)
            for offset in range(colspan):
                row.append(text if offset == 0 else "")
                if rowspan > 1:
                    pending[column + offset] = rowspan - 1
            column += colspan
        column = _skip_covered(row, column, pending)
        # a rowspan reaching past this row's last cell still covers its column
        for col in [c for c, left in pending.items() if c >= column and left > 0]:
            row.extend([""] * (col + 1 - len(row)))
            pending[col] -= 1
        grid.append(row)
    grid = trim_columns([row for row in grid if any(cell for cell in row)])
    if len(grid) < 2 or max(len(row) for row in grid) < 2:
        return None
    return grid


def table_markdown(table: Tag) -> str | None:
    """A data table as Markdown (its caption a line above); None for a layout table.

    The header is the first row, as for Word tables (``<thead>`` or ``<th>``
    cells usually mark it, and a table without them still starts with its
    column names far more often than not).
    """
    grid = table_grid(table)
    if grid is None:
        return None
    caption = table.find("caption")
    title = " ".join(caption.get_text(" ").split()) if caption is not None else ""
    rendered = markdown_table(grid[0], grid[1:])
    return f"{title}\n\n{rendered}" if title else rendered


def _tables_to_markdown(soup: Tag) -> None:
    """Replace each data table by its Markdown, innermost first, in place."""
    from bs4 import NavigableString

    # find_all lists a table before the tables inside it: reversed, inner ones go first.
    for table in reversed(soup.find_all("table")):
        if table.decomposed or table.parent is None:
            continue
        rendered = table_markdown(table)
        if rendered is not None:
            table.replace_with(NavigableString(f"{_BLOCK_MARK}{rendered}{_BLOCK_MARK}"))


def _place_pictures(soup: Tag, pictures: PictureText) -> list[NavigableString]:
    """Put each picture's text where the picture is, as its own block; the strings placed.

    Pictures are offered in document order. One inside an ``<svg>`` (dropped
    with its drawing) gets its text just before the outermost ``<svg>``; one
    inside another dropped element (``<noscript>``, ``<template>``...) is not
    shown by a reader and is not offered.
    """
    from bs4 import NavigableString

    placed = []
    for picture in soup.find_all(("img", "image")):
        dropped = [parent for parent in picture.parents if parent.name in _DROPPED_SET]
        if any(parent.name != "svg" for parent in dropped):
            continue
        text = (pictures(picture) or "").strip()
        if not text:
            continue
        block = NavigableString(f"{_BLOCK_MARK}{text}{_BLOCK_MARK}")
        if dropped:
            dropped[-1].insert_before(block)  # parents run upwards: the last is the outermost
        else:
            picture.replace_with(block)
        placed.append(block)
    return placed


def html_to_text(
    markup: str,
    *,
    main_content: bool = False,
    title: bool = True,
    pictures: PictureText | None = None,
) -> str:
    """Visible text of an HTML page: title first, then one paragraph per block.

    Scripts, styles, navigation and comments are dropped; whitespace inside a
    block is collapsed as a browser would, except inside ``<pre>``.

    Args:
        markup: The page.
        main_content: Also remove boilerplate (see :func:`remove_boilerplate`);
            for saved web pages, not for book chapters.
        title: Start with the ``<title>`` (book chapters repeat the book's).
        pictures: Called with each ``<img>`` and SVG ``<image>`` in document
            order; the text it returns (lines kept) replaces the picture as a
            paragraph of its own. None (the default) leaves pictures out.
    """
    from bs4 import BeautifulSoup, NavigableString

    soup = BeautifulSoup(markup, "html.parser")
    title_text = " ".join(soup.title.get_text(" ").split()) if soup.title and title else ""
    # Before the drop below, which takes <svg> (and the pictures in it) away.
    placed = _place_pictures(soup, pictures) if pictures is not None else []
    for element in soup.find_all(True):  # one walk: matching a tag list per tag is slow
        if element.name in _DROPPED_SET and not element.decomposed:
            element.decompose()
    if main_content:
        remove_boilerplate(soup.body or soup)
    # Looked up once: asking each string for a <pre> ancestor is a tree walk.
    preformatted = {id(s) for pre in soup.find_all("pre") for s in pre.find_all(string=True)}
    preformatted.update(id(block) for block in placed)  # OCR lines stay lines
    for string in soup.find_all(string=True):
        # Comments, the doctype, CDATA and processing instructions are
        # NavigableString subclasses; none of them is visible text.
        if type(string) is not NavigableString:
            string.extract()
        elif id(string) not in preformatted:
            collapsed = _WHITESPACE.sub(" ", string)
            if collapsed != string:
                string.replace_with(collapsed)
    _tables_to_markdown(soup)
    for tag in soup.find_all(True):
        if tag.name == "br":
            tag.replace_with("\n")
        elif tag.name in _CELLS:
            tag.insert_after(" ")
        elif tag.name in _BLOCKS_SET:
            tag.insert_before(_BLOCK_MARK)
            tag.insert_after(_BLOCK_MARK)

    lines = [line.strip() for line in soup.get_text().split("\n")]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if title_text and not body.startswith(title_text):
        return f"{title_text}\n\n{body}".strip()
    return body


class HtmlParser:
    """HTML pages: one page holding the main content's visible text."""

    media_type = HTML

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Extract the main content's visible text of ``data``; ``password`` is ignored.

        Raises:
            EmptyDocument: the page has no visible text.
        """
        if not data:
            raise EmptyDocument("file is empty")
        text = html_to_text(decode_html(data), main_content=True)
        if not text:
            raise EmptyDocument("HTML page has no visible text: upload a page with content")
        logger.debug("parsed media_type=%s chars=%d", self.media_type, len(text))
        return ParsedDocument(media_type=self.media_type, pages=(Page(1, text),))
