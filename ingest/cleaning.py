"""Turn parsed pages into one clean text for chunking and search.

PDF text extraction leaves layout debris: running headers and footers, page
numbers, words hyphenated at line ends, lines broken mid-sentence (with a
stray space between Chinese characters where the break was). Left in, they
split sentences and words, pollute keyword search and repeat the same header
in every chunk. The rules here remove that debris and nothing else.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence

from rag.text.normalize import CJK_CHAR, collapse_spaces, nfkc
from rag.text.sentences import ends_with_abbreviation
from rag.types import CleanText, Page

logger = logging.getLogger(__name__)

PAGE_SEPARATOR = "\n\n"

# Headers/footers are looked for in this many non-empty lines at the top and
# at the bottom of each page (the Federal Register's footer spans three).
EDGE_LINES = 3
# A line is a running header/footer when it (digits ignored) sits in the top
# or bottom zone of at least this share of the pages, and of at least
# MIN_REPEAT_PAGES pages; with fewer pages repetition proves nothing.
REPEAT_SHARE = 0.5
MIN_REPEAT_PAGES = 3
# A repeated line this long is also recognised glued to the start or end of
# another line; shorter ones ("page #") would match real text too easily.
MIN_GLUED_KEY = 12

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\u00ad\u200c\u200d\u2060]")
_DIGITS = re.compile(r"\d+")
_CHINESE_NUMERAL = "[0-9一二三四五六七八九十百零〇]+"
_PAGE_NUMBER = re.compile(
    r"^(?:"
    r"[-–—~]*\s*\d{1,4}\s*[-–—~]*"  # 12, - 12 -, -- 24
    r"|\d{1,4}\s*/\s*\d{1,4}"  # 3 / 10
    r"|(?:page|p\.|pg\.?)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?"  # Page 3, Page 3 of 10
    r"|(?-i:(?=[ivx])x{0,3}(?:ix|iv|v?i{0,3}))"  # roman front-matter numbers (i-xxxix)
    rf"|第\s*{_CHINESE_NUMERAL}\s*页(?:\s*[,，/]?\s*共\s*{_CHINESE_NUMERAL}\s*页)?"  # 第 3 页
    rf"|共\s*{_CHINESE_NUMERAL}\s*页\s*[,，]?\s*第\s*{_CHINESE_NUMERAL}\s*页"
    r")$",
    re.IGNORECASE,
)
# Line endings after which the line break is kept: sentence-final or
# introducing punctuation (a list follows ":").
_KEEP_BREAK_AFTER = re.compile(r"[.!?。！？…:;：；]['\"”’」』)）\]]*$")
# Lines that start a new block: bullets, numbered items, Chinese section
# markers (一、 （一） 第三章), so they are not glued to the line above.
_BLOCK_START = re.compile(
    r"^(?:[•●○▪■□◆◇▶►·*-]\s"
    r"|\(?\d{1,3}[.)]\s"
    r"|\(?[a-z][.)]\s"
    r"|[一二三四五六七八九十]+、"
    r"|[（(][一二三四五六七八九十]+[)）]"
    rf"|第{_CHINESE_NUMERAL}[章节条篇部]"
    r")"
)
_HYPHEN_END = re.compile(r"[A-Za-z0-9]-$")
# A Markdown table row ("| a | b |", from a parser's table): kept on its own
# line and never taken for a running header, so the table stays a table.
_TABLE_ROW = re.compile(r"^\|.*\|$")
# A Markdown heading ("# Sheet2", "## Slide 3", from a structured parser):
# every page of a workbook starts with one that differs only in its digits,
# which is what a running header looks like; it is kept.
_HEADING = re.compile(r"^#{1,6}\s+\S")
# Chinese text uses the curly quotes as its own punctuation; a quote next to
# a CJK character belongs to the CJK text for spacing and line joining.
_QUOTES = "[“”‘’]*"
_CJK_END = re.compile(rf"{CJK_CHAR}{_QUOTES}$")
_CJK_START = re.compile(rf"{_QUOTES}{CJK_CHAR}")
_SPACE_BETWEEN_CJK = re.compile(rf"({CJK_CHAR}{_QUOTES})[ \t]+(?={_QUOTES}{CJK_CHAR})")


def _normalise_lines(text: str) -> list[str]:
    """NFKC, one kind of newline, no control characters, tidy spaces per line."""
    text = nfkc(text).replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = text.replace("\v", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _CONTROL.sub("", text)
    return [collapse_spaces(line).strip() for line in text.split("\n")]


def _line_key(line: str) -> str:
    """Identity of a header/footer line: case-folded, with digits ignored."""
    return _DIGITS.sub("#", line.casefold())


def _edge_indexes(lines: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indexes of the non-empty lines at the top and at the bottom of a page.

    Up to EDGE_LINES each, and never more than half of the page, so the two
    zones do not overlap and a short page's body is never taken for an edge.
    """
    filled = [i for i, line in enumerate(lines) if line]
    size = min(EDGE_LINES, len(filled) // 2)
    if size == 0:
        return [], []
    return filled[:size], filled[-size:]


def repeated_edge_lines(pages: Sequence[Sequence[str]]) -> set[str]:
    """Keys of lines repeated at the edges (top or bottom) of many pages.

    Top and bottom are pooled: on a page that is mostly a figure, the
    footer's first line can sit in the top half.

    Args:
        pages: Each page's lines.

    Returns:
        Keys, as made by ``_line_key``, of the running headers and footers.
    """
    filled_pages = [lines for lines in pages if any(lines)]
    if len(filled_pages) < MIN_REPEAT_PAGES:
        return set()
    needed = max(MIN_REPEAT_PAGES, math.ceil(REPEAT_SHARE * len(filled_pages)))
    pages_with: Counter[str] = Counter()
    for lines in filled_pages:
        head, tail = _edge_indexes(lines)
        pages_with.update({_line_key(lines[i]) for i in head + tail})
    return {key for key, count in pages_with.items() if count >= needed}


def is_page_number(line: str) -> bool:
    """True for a bare page number: "12", "- 12 -", "Page 3 of 10", "第 3 页"."""
    return bool(_PAGE_NUMBER.match(line.strip()))


def _is_repeated(key: str, repeated: set[str]) -> bool:
    """True when ``key`` is a repeated line, alone or glued to another one.

    Extraction sometimes runs a two-line footer into one line on some pages
    only, so a line that starts or ends with a long repeated line counts too.
    """
    if key in repeated:
        return True
    return any(
        len(known) >= MIN_GLUED_KEY and (key.startswith(known) or key.endswith(known))
        for known in repeated
    )


def _drop_edges(lines: list[str], repeated: set[str]) -> list[str]:
    """Remove running headers, footers and page numbers from a page's edges."""
    filled = [i for i, line in enumerate(lines) if line]
    if len(filled) == 1 and is_page_number(lines[filled[0]]):
        return []  # a page holding only its number
    head, tail = _edge_indexes(lines)
    drop = {
        i
        for i in head + tail
        if not _TABLE_ROW.match(lines[i])
        and not _HEADING.match(lines[i])
        and (is_page_number(lines[i]) or _is_repeated(_line_key(lines[i]), repeated))
    }
    return [line for i, line in enumerate(lines) if i not in drop]


def _join(previous: str, line: str) -> str:
    """The separator between two lines of one paragraph (empty, space or newline).

    A hyphen at a line end followed by a lower-case word is a hyphenation
    ("exam-" + "ple") and is removed by the caller; one followed by anything
    else belongs to the word ("Soekarno-" + "Hatta") and stays, unspaced.
    """
    if _TABLE_ROW.match(previous) or _TABLE_ROW.match(line):
        return "\n"
    if _HYPHEN_END.search(previous):
        return ""
    if (_KEEP_BREAK_AFTER.search(previous) and not ends_with_abbreviation(previous)) or (
        _BLOCK_START.match(line)
    ):
        return "\n"
    if _CJK_END.search(previous) and _CJK_START.match(line):
        return ""
    return " "


def join_lines(lines: Sequence[str]) -> str:
    """Rebuild paragraphs from a page's lines.

    Blank lines separate paragraphs. Inside a paragraph a line that ends a
    sentence keeps its line break, a hyphenated word is re-joined, a Chinese
    line continues without a space and an English one with a space.
    """
    paragraphs: list[str] = []
    parts: list[str] = []  # the current paragraph, lines and separators
    for line in lines:
        if not line:
            if parts:
                paragraphs.append("".join(parts))
            parts = []
            continue
        if parts:
            # Decisions look only at the previous line, which keeps this linear.
            previous = parts[-1]
            if _HYPHEN_END.search(previous) and previous[-2].isalpha() and line[0].islower():
                parts[-1] = previous[:-1]  # "exam-" + "ple": a hyphenated word
            parts.append(_join(previous, line))
        parts.append(line)
    if parts:
        paragraphs.append("".join(parts))
    return "\n\n".join(paragraphs)


def clean_page_text(lines: Sequence[str]) -> str:
    """One page's cleaned text from its (already edge-stripped) lines."""
    text = join_lines(lines)
    return _SPACE_BETWEEN_CJK.sub(r"\1", text).strip()


def clean_pages(pages: Sequence[Page]) -> CleanText:
    """Clean every page and join them into one text.

    Applies NFKC (full-width to half-width), whitespace tidying, removal of
    running headers/footers and bare page numbers, re-joining of hyphenated
    and broken lines, and removal of spaces between CJK characters. Empty
    pages are dropped; the others keep their page numbers.

    Returns:
        The text, pages joined by a blank line, with each kept page's start
        offset. Empty when no page has text.
    """
    page_lines = [_normalise_lines(page.text) for page in pages]
    repeated = repeated_edge_lines(page_lines)
    if repeated:
        logger.debug("dropping running headers/footers kinds=%d", len(repeated))
    parts: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    offset = 0
    for page, lines in zip(pages, page_lines, strict=True):
        text = clean_page_text(_drop_edges(lines, repeated))
        if not text:
            continue
        if parts:
            offset += len(PAGE_SEPARATOR)
        starts.append(offset)
        numbers.append(page.number)
        parts.append(text)
        offset += len(text)
    return CleanText(
        text=PAGE_SEPARATOR.join(parts), page_starts=tuple(starts), page_numbers=tuple(numbers)
    )
