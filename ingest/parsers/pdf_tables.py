"""Ruled tables in PDF pages, found by pdfplumber and written as Markdown.

Plain text extraction reads a table row by row with its cells run together
("HandgunLong Gun*Other"), so a cell can no longer be told from its
neighbours or matched to its column. pdfplumber finds tables from the lines a
page draws; each one found is written as a Markdown table (header row, then
one line per row) in place of its text, and the rest of the page keeps
pypdf's text (pypdf follows the content stream, so two-column pages stay in
column order where pdfplumber would interleave the columns).

pdfplumber is slow (0.3-1 s a page here against ~5 ms for pypdf), so it only
reads pages that draw at least MIN_PATH_OBJECTS path objects (counted by
pdfium in ~3 ms a page): a ruled table needs lines or rectangles.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.types import Page

logger = logging.getLogger(__name__)

# A ruled table of 2 rows x 2 columns draws at least 3 horizontal and 3
# vertical rules, as separate paths or as cell rectangles; fewer paths than
# this cannot make one.
MIN_PATH_OBJECTS = 6
# A table must have at least this many rows (header included) and columns.
MIN_ROWS = 2
MIN_COLUMNS = 2
# Share of its cells that must hold text: figures and boxed diagrams read as
# "tables" of mostly empty cells.
MIN_FILLED_SHARE = 0.5
# A cell longer than this is running text inside a box (a figure caption, a
# framed paragraph), not a table cell; such a "table" is left as text.
MAX_CELL_CHARS = 300


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first is the header) as a Markdown table, one line per row.

    Cells are single-line: newlines become spaces and ``|`` is escaped, so a
    row is always exactly one line (the chunker splits tables between lines).
    """
    width = max(len(row) for row in rows)
    lines = []
    for position, row in enumerate(rows):
        cells = [_cell(value) for value in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if position == 0:
            # One hyphen per cell is valid GFM and costs half the tokens of "---"
            # (a 25-column header's delimiter: 51 MiniLM tokens instead of 101).
            lines.append("|" + "|".join(["-"] * width) + "|")
    return "\n".join(lines)


def _cell(value: str | None) -> str:
    """One cell's text on one line, with ``|`` escaped."""
    return " ".join((value or "").split()).replace("|", "\\|")


def split_stacked_rows(rows: Sequence[Sequence[str | None]]) -> list[list[str]]:
    """Undo rows that pdfplumber merged because no rule separates them.

    A table that rules only every few rows comes back with one "row" whose
    cells each hold several lines ("Alabama" over "Alaska", "18,870" over "209"). When
    every filled cell of a row has the same number of lines, those lines are
    the real rows; other multi-line cells (a header wrapped over two lines)
    are kept as one cell.
    """
    result: list[list[str]] = []
    for row in rows:
        cells = [value or "" for value in row]
        heights = {len(value.split("\n")) for value in cells if value.strip()}
        filled = sum(1 for value in cells if value.strip())
        if len(heights) == 1 and filled >= 2 and (height := heights.pop()) > 1:
            split = [value.split("\n") if value.strip() else [""] * height for value in cells]
            result.extend([column[i] for column in split] for i in range(height))
        else:
            result.append(cells)
    return result


def _single_cell(row: Sequence[str | None]) -> str | None:
    """The text of a row with exactly one filled cell (a title or a note), else None."""
    filled = [value for value in row if value and value.strip()]
    return " ".join(filled[0].split()) if len(filled) == 1 else None


def table_rows(raw: Sequence[Sequence[str | None]]) -> TableText | None:
    """A pdfplumber table as its caption, rows (header first) and notes, or None.

    Leading rows with a single filled cell spanning the table are its title
    ("NICS Firearm Background Checks / November - 2015") and trailing ones its
    notes ("*Refers to ..."); they become text above and below it. None when
    what is left does not look like a table (too small, mostly empty cells,
    paragraphs in boxes).
    """
    rows = [list(row) for row in raw if any(value and value.strip() for value in row)]
    captions: list[str] = []
    notes: list[str] = []
    while rows and (text := _single_cell(rows[0])) is not None:
        captions.append(text)
        rows.pop(0)
    while rows and (text := _single_cell(rows[-1])) is not None:
        notes.insert(0, text)
        rows.pop()
    if len(rows) < MIN_ROWS:
        return None
    width = max(len(row) for row in rows)
    filled = sum(1 for row in rows for value in row if value and value.strip())
    if width < MIN_COLUMNS or filled < MIN_FILLED_SHARE * len(rows) * width:
        return None
    header, body = rows[0], split_stacked_rows(rows[1:])
    table = [[_cell(value) for value in header], *([_cell(value) for value in row] for row in body)]
    if max(len(value) for row in table for value in row) > MAX_CELL_CHARS:
        return None
    return TableText("\n".join(captions), table, "\n".join(notes))


@dataclass(frozen=True)
class TableText:
    """One table found on a page: caption above, rows (header first), notes below."""

    caption: str
    rows: list[list[str]]
    notes: str


class PageTables:
    """Reads the tables of a PDF's pages, opening the file in pdfplumber only if needed.

    Args:
        data: The PDF's bytes.
        password: Its open password, if any.
        reader: The same PDF opened by pypdf (its text is kept around the tables).
        pdfium_doc: The same PDF opened by pypdfium2 (to count drawings).
    """

    def __init__(self, data: bytes, password: str | None, reader: Any, pdfium_doc: Any) -> None:
        self.data = data
        self.password = password
        self.reader = reader
        self.pdfium_doc = pdfium_doc
        self._plumber: Any = None
        self._failed = False

    def close(self) -> None:
        """Close pdfplumber's copy of the file, if it was opened."""
        if self._plumber is not None:
            self._plumber.close()
            self._plumber = None

    def _drawings(self, index: int) -> int:
        """Number of path objects page ``index`` draws (pdfium, fast)."""
        import pypdfium2.raw as pdfium_c

        page = self.pdfium_doc[index]
        try:
            return sum(1 for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_PATH]))
        finally:
            page.close()

    def _open(self) -> Any:
        if self._plumber is None and not self._failed:
            import pdfplumber

            try:
                self._plumber = pdfplumber.open(io.BytesIO(self.data), password=self.password or "")
            except Exception as exc:  # pdfminer raises many types on damage
                self._failed = True
                logger.debug("pdfplumber open failed: %s", exc)
        return self._plumber

    def page_with_tables(self, index: int, page: Page, problems: list[str]) -> Page:
        """``page`` with its ruled tables as Markdown; unchanged when it has none.

        A failure here keeps the plain text of the page and adds a warning.
        """
        try:
            if self._drawings(index) < MIN_PATH_OBJECTS:
                return page
            plumber = self._open()
            if plumber is None:
                return page
            found = _tables(plumber.pages[index])
            if not found:
                return page
            text = _text_around_tables(self.reader.pages[index], found)
        except Exception as exc:  # a table pass must never lose the page's text
            problems.append(
                f"page {page.number}: table detection failed ({type(exc).__name__}: {exc}); "
                "kept as plain text"
            )
            logger.warning("pdf page=%d table detection failed: %s", page.number, exc)
            return page
        logger.debug("pdf page=%d tables=%d", page.number, len(found))
        return Page(number=page.number, text=text, ocr_confidence=page.ocr_confidence)


# (x0, top, x1, bottom) in PDF points from the page's top-left corner, as pdfplumber gives.
BBox = tuple[float, float, float, float]
# Text whose baseline is this close outside a table's box still belongs to it.
_BOX_MARGIN = 2.0


def _tables(plumber_page: Any) -> list[tuple[BBox, TableText]]:
    """The tables pdfplumber finds on a page that pass :func:`table_rows`, top to bottom."""
    found = []
    for table in plumber_page.find_tables():
        parsed = table_rows(table.extract())
        if parsed is not None:
            found.append((tuple(table.bbox), parsed))
    return sorted(found, key=lambda item: item[0][1])


def _text_around_tables(pypdf_page: Any, tables: Sequence[tuple[BBox, TableText]]) -> str:
    """The page's pypdf text, each table's text replaced by its Markdown.

    pypdf keeps the reading order of the content stream (columns stay
    columns), so its text is kept; each piece it extracts comes with its
    position, and the pieces inside a table's box are dropped, the table's
    Markdown standing where its first piece was.
    """
    box = pypdf_page.mediabox
    left, page_top = float(box.left), float(box.top)
    pieces: list[tuple[str, float, float]] = []

    def visit(text: str, cm: Sequence[float], tm: Sequence[float], *_: Any) -> None:
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        pieces.append((text, x - left, page_top - y))

    pypdf_page.extract_text(visitor_text=visit)
    out: list[str] = []
    pending: list[str] = []  # whitespace seen since the last piece with text
    emitted: set[int] = set()
    for text, x, top in pieces:
        if not text.strip():
            pending.append(text)
            continue
        inside = next(
            (
                k
                for k, ((x0, t0, x1, b0), _) in enumerate(tables)
                if x0 - _BOX_MARGIN <= x <= x1 + _BOX_MARGIN
                and t0 - _BOX_MARGIN <= top <= b0 + _BOX_MARGIN
            ),
            None,
        )
        if inside is None:
            out += pending
            out.append(text)
        elif inside not in emitted:
            emitted.add(inside)
            out.append("\n\n" + _table_block(tables[inside][1]) + "\n\n")
        pending = []
    out += pending
    for k, (_, table) in enumerate(tables):  # a table pypdf saw no text of (drawn as paths)
        if k not in emitted:
            out.append("\n\n" + _table_block(table) + "\n\n")
    return "".join(out)


def _table_block(table: TableText) -> str:
    """A table's caption, Markdown rows and notes, separated by blank lines."""
    return "\n\n".join(
        part for part in (table.caption, markdown_table(table.rows), table.notes) if part
    )
