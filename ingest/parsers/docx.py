"""Word (.docx) parser built on python-docx.

The body is read in order: headings become Markdown headings by outline
level, list items bullets indented by list level, tables Markdown tables
(a merged cell's text once) and picture alt text a line of its own. With an
OCR engine, the text of pictures (``word/media/*``) is read and placed after
the paragraph or table that holds them (see ``ingest.parsers.images``). Headers,
footers and comments are left out: they repeat on every page and answer
nothing. Pages follow the page breaks stored in the file, else every
``BLOCKS_PER_PAGE`` blocks (see ``ingest.parsers.blocks``).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ingest.parsers.blocks import PAGE_BREAK, heading, pages_from_blocks
from ingest.parsers.crypto import office_package
from ingest.parsers.images import OcrBlock, PictureOcrParser, PictureReader
from ingest.parsers.tables import markdown_table
from ingest.sniff import DOCX, corrupt_archive
from rag.errors import EmptyDocument, ParseError
from rag.types import ParsedDocument

if TYPE_CHECKING:  # python-docx is imported when a .docx is parsed
    from docx.document import Document as DocxDocument
    from docx.opc.part import Part
    from docx.styles.style import BaseStyle
    from docx.table import Table
    from docx.text.paragraph import Paragraph


logger = logging.getLogger(__name__)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
# Where a picture's bytes are named: DrawingML's blip, and VML's imagedata
# (pictures in files from Word 2003 and older, converted).
_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_VML_IMAGE = "{urn:schemas-microsoft-com:vml}imagedata"
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
# Styles that head the document although Word gives them no outline level.
_TITLE_LEVELS = {"title": 1, "subtitle": 2}


def _style_outline_level(style: BaseStyle | None) -> int | None:
    """The outline level (1-based) a paragraph style or its base styles set."""
    while style is not None:
        ppr = style.element.find(f"{_W}pPr")
        level = ppr.find(f"{_W}outlineLvl") if ppr is not None else None
        if level is not None:
            return int(level.get(f"{_W}val", "9")) + 1
        match = _HEADING_STYLE.match(style.name or "")
        if match:
            return int(match.group(1))
        if (style.name or "").lower() in _TITLE_LEVELS:
            return _TITLE_LEVELS[(style.name or "").lower()]
        style = getattr(style, "base_style", None)  # character styles have none
    return None


def heading_level(paragraph: Paragraph) -> int | None:
    """1-6 for a heading (outline level 1-9 clamps to 6), None for body text."""
    ppr = paragraph._p.pPr
    direct = ppr.find(f"{_W}outlineLvl") if ppr is not None else None
    level = (
        int(direct.get(f"{_W}val", "9")) + 1
        if direct is not None
        else _style_outline_level(paragraph.style)
    )
    # Outline level 10 ("body text") is how Word says "not a heading".
    return None if level is None or level > 9 else min(level, 6)


def _list_level(paragraph: Paragraph) -> int | None:
    """0-based list level of a numbered or bulleted paragraph, None otherwise."""
    ppr = paragraph._p.pPr
    num = ppr.find(f"{_W}numPr") if ppr is not None else None
    if num is None:
        style = paragraph.style
        if style is None or not (style.name or "").lower().startswith("list"):
            return None
        return 0
    level = num.find(f"{_W}ilvl")
    return int(level.get(f"{_W}val", "0")) if level is not None else 0


def _alt_texts(paragraph: Paragraph) -> list[str]:
    """Descriptions (alt text) of the pictures anchored in the paragraph."""
    return [
        " ".join(descr.split())
        for element in paragraph._p.iter(
            "{http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing}docPr"
        )
        if (descr := element.get("descr"))
    ]


def picture_texts(element: object, part: Part, reader: PictureReader) -> list[OcrBlock]:
    """OCR text of the pictures inside a paragraph or table element, in order.

    Args:
        element: The ``w:p`` or ``w:tbl`` element.
        part: The part whose relationships name the pictures (the document's).
        reader: Reads the pictures within the document's budget.
    """
    blocks = []
    for image in element.iter(_BLIP, _VML_IMAGE):  # type: ignore[attr-defined]
        rid = image.get(f"{_R}embed") or image.get(f"{_R}id")
        target = part.related_parts.get(rid) if rid else None
        blob = getattr(target, "blob", None)
        if not blob:  # a linked (external) picture has no bytes here
            continue
        block = reader.read(blob, str(target.partname))  # type: ignore[union-attr]
        if block is not None:
            blocks.append(block)
    return blocks


def _breaks_page(paragraph: Paragraph) -> bool:
    """True when the paragraph holds a hard page break or one Word recorded."""
    for element in paragraph._p.iter(f"{_W}br", f"{_W}lastRenderedPageBreak"):
        if element.tag == f"{_W}lastRenderedPageBreak" or element.get(f"{_W}type") == "page":
            return True
    return False


def paragraph_block(paragraph: Paragraph) -> str:
    """The paragraph as Markdown: heading, list item or plain text (may be empty)."""
    text = " ".join(paragraph.text.split())
    alt = [f"[image: {descr}]" for descr in _alt_texts(paragraph)]
    if text:
        level = heading_level(paragraph)
        if level is not None:
            text = heading(level, text)
        else:
            depth = _list_level(paragraph)
            if depth is not None:
                text = "  " * depth + "- " + text
    return "\n".join(part for part in (text, *alt) if part)


def table_grid(table: Table) -> list[list[str]]:
    """The table's cell texts, row by row; a merged cell's text only in its first cell.

    python-docx repeats a merged cell in every grid position it covers
    (horizontally and vertically); repeating its text would make one cell
    look like several and duplicate it in search.
    """
    seen: dict[int, object] = {}  # id -> element, held so that ids are not reused
    grid: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            key = id(cell._tc)
            cells.append("" if key in seen else " ".join(cell.text.split()))
            seen[key] = cell._tc
        grid.append(cells)
    return grid


def _table_block(table: Table) -> str:
    grid = [row for row in table_grid(table) if any(cell for cell in row)]
    if not grid:
        return ""
    return markdown_table(grid[0], grid[1:])


class DocxParser(PictureOcrParser):
    """Word documents (.docx), encrypted ones with their password.

    Args:
        ocr: Reads the text of the pictures in the document; None (the
            default) leaves pictures to their alt text.
        max_pictures: Most pictures read by OCR in one document.
    """

    media_type = DOCX

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Extract the body of ``data`` as Markdown-like text, page by page.

        Raises:
            EncryptedDocument: encrypted and no (right) password.
            ParseError: not a readable .docx (truncated, damaged).
            EmptyDocument: the body holds no text.
        """
        if not data:
            raise EmptyDocument("file is empty")
        package = office_package(data, password)
        document = _open(package)
        reader = PictureReader(self.ocr, self.max_pictures) if self.ocr is not None else None
        pages = pages_from_blocks(self._blocks(document, reader), "Word document")
        warnings = reader.all_warnings() if reader is not None else ()
        logger.debug(
            "parsed media_type=%s pages=%d pictures_read=%d",
            self.media_type,
            len(pages),
            reader.read_count if reader is not None else 0,
        )
        return ParsedDocument(media_type=self.media_type, pages=pages, warnings=warnings)

    @staticmethod
    def _blocks(document: DocxDocument, reader: PictureReader | None) -> Iterator[str | OcrBlock]:
        from docx.table import Table

        part = document.part
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                yield _table_block(item)
                if reader is not None:
                    yield from picture_texts(item._tbl, part, reader)
                continue
            breaks = _breaks_page(item)
            if breaks and not item.text.strip():
                yield PAGE_BREAK
            yield paragraph_block(item)
            if reader is not None:
                yield from picture_texts(item._p, part, reader)
            if breaks and item.text.strip():
                yield PAGE_BREAK


def _open(package: bytes) -> DocxDocument:
    """A python-docx Document; ParseError when the package cannot be read."""
    import zipfile

    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError

    try:
        return Document(io.BytesIO(package))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise corrupt_archive(None, str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # lxml and python-docx raise many types on damaged XML
        raise ParseError(
            f"could not read the Word document ({type(exc).__name__}: {exc}): it is damaged; "
            "open and re-save it, or upload an intact copy"
        ) from exc
