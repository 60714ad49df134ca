"""OpenDocument text (.odt) parser: ``content.xml`` read with the standard library.

The body is walked in order: headings (``text:h``, by outline level) become
Markdown headings, list items bullets, tables Markdown tables (repeated and
covered cells handled), paragraphs
plain text. With an OCR engine, pictures (``draw:image`` in ``Pictures/``) are
read and their text placed after the paragraph, list item or table that holds
them (see ``ingest.parsers.images``). A page is every ``BLOCKS_PER_PAGE`` blocks (ODF keeps page
breaks in styles, not in the text; see ``ingest.parsers.blocks``).
Password-protected files are refused by the sniffer before they get here.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import unquote
from xml.etree import ElementTree

from ingest.parsers.blocks import heading, pages_from_blocks
from ingest.parsers.images import OcrBlock, PictureOcrParser, PictureReader
from ingest.parsers.tables import markdown_table
from ingest.sniff import ODT, corrupt_archive
from rag.errors import EmptyDocument, ParseError
from rag.types import ParsedDocument

# Reads the OCR text of the pictures inside an element.
Pictures = Callable[[ElementTree.Element], list[OcrBlock]]

logger = logging.getLogger(__name__)

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
_SVG = "{urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0}"
_XLINK = "{http://www.w3.org/1999/xlink}"
# A picture file larger than this is not inflated for OCR.
_PICTURE_LIMIT = 64 * 1024 * 1024
# Elements whose text is not part of the running text (notes are kept inline).
_SKIPPED = frozenset({f"{_TEXT}tracked-changes", f"{_OFFICE}annotation", f"{_TEXT}sequence-decls"})
# A repeated column/row count above this is layout filler, not content.
_MAX_REPEAT = 256
_CONTENT_LIMIT = 256 * 1024 * 1024


def inline_text(element: ElementTree.Element) -> str:
    """The text of a paragraph or heading: spaces, tabs and line breaks as written."""
    parts: list[str] = [element.text or ""]
    for child in element:
        if child.tag == f"{_TEXT}s":
            parts.append(" " * int(child.get(f"{_TEXT}c", "1")))
        elif child.tag == f"{_TEXT}tab":
            parts.append("\t")
        elif child.tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif child.tag in _SKIPPED:
            pass
        elif child.tag == f"{_DRAW}frame":
            parts.extend(f" [image: {t}] " for t in _frame_descriptions(child))
        else:
            parts.append(inline_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _frame_descriptions(frame: ElementTree.Element) -> list[str]:
    texts = []
    for tag in (f"{_SVG}title", f"{_SVG}desc"):
        for element in frame.iter(tag):
            text = " ".join("".join(element.itertext()).split())
            if text:
                texts.append(text)
    return texts


def table_grid(table: ElementTree.Element) -> list[list[str]]:
    """Cell texts row by row; covered (merged-over) cells are empty, repeats expanded."""
    grid: list[list[str]] = []
    for row in table.iter(f"{_TABLE}table-row"):
        cells: list[str] = []
        for cell in row:
            if cell.tag not in (f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell"):
                continue
            repeat = min(int(cell.get(f"{_TABLE}number-columns-repeated", "1")), _MAX_REPEAT)
            text = ""
            if cell.tag == f"{_TABLE}table-cell":
                text = " ".join(
                    " ".join(inline_text(p).split())
                    for p in cell
                    if p.tag in (f"{_TEXT}p", f"{_TEXT}h")
                ).strip()
            cells.extend([text] + [""] * (repeat - 1) if text else [""] * repeat)
        repeat_rows = min(int(row.get(f"{_TABLE}number-rows-repeated", "1")), _MAX_REPEAT)
        if any(cells):
            grid.extend([cells] * repeat_rows)
    return grid


def _list_blocks(
    element: ElementTree.Element, depth: int, pictures: Pictures | None
) -> Iterator[str | OcrBlock]:
    """A list's items as bullets indented by nesting depth."""
    for item in element:
        for child in item:
            if child.tag == f"{_TEXT}list":
                yield from _list_blocks(child, depth + 1, pictures)
            else:
                for block in body_blocks([child], depth, pictures):
                    if isinstance(block, OcrBlock):
                        yield block
                    elif block.strip():
                        yield "  " * depth + "- " + block


def body_blocks(
    children: Iterable[ElementTree.Element], depth: int = 0, pictures: Pictures | None = None
) -> Iterator[str | OcrBlock]:
    """Markdown-like blocks of ``children`` (an element is its children) in document order.

    Args:
        children: The elements to walk.
        depth: List nesting depth.
        pictures: Reads the pictures of a paragraph or table by OCR; None skips them.
    """
    for child in children:
        tag = child.tag
        if tag == f"{_TEXT}h":
            text = " ".join(inline_text(child).split())
            if text:
                yield heading(int(child.get(f"{_TEXT}outline-level", "1")), text)
            if pictures is not None:
                yield from pictures(child)
        elif tag == f"{_TEXT}p":
            yield "\n".join(" ".join(line.split()) for line in inline_text(child).split("\n"))
            if pictures is not None:
                yield from pictures(child)
        elif tag == f"{_TEXT}list":
            yield from _list_blocks(child, depth, pictures)
        elif tag == f"{_TABLE}table":
            grid = table_grid(child)
            if grid:
                yield markdown_table(grid[0], grid[1:])
            if pictures is not None:
                yield from pictures(child)
        elif tag in (f"{_TEXT}section", f"{_TEXT}list-item", f"{_TEXT}list-header"):
            yield from body_blocks(child, depth, pictures)
        elif tag not in _SKIPPED:
            yield from body_blocks(child, depth, pictures)


def archive_pictures(archive: zipfile.ZipFile, reader: PictureReader) -> Pictures:
    """OCR of the pictures an element shows, read from the package (linked ones skipped)."""

    def read(element: ElementTree.Element) -> list[OcrBlock]:
        blocks = []
        for image in element.iter(f"{_DRAW}image"):
            href = unquote(image.get(f"{_XLINK}href") or "").removeprefix("./")
            if not href or "://" in href or href.startswith("/"):
                continue
            try:
                if archive.getinfo(href).file_size > _PICTURE_LIMIT:
                    continue
                data = archive.read(href)
            except (KeyError, zipfile.BadZipFile, EOFError, ValueError):
                continue
            block = reader.read(data, href)
            if block is not None:
                blocks.append(block)
        return blocks

    return read


class OdtParser(PictureOcrParser):
    """OpenDocument text files (.odt).

    Args:
        ocr: Reads the text of the pictures in the document; None (the
            default) leaves pictures to their descriptions.
        max_pictures: Most pictures read by OCR in one document.
    """

    media_type = ODT

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Text of the document body; ``password`` is ignored (encrypted files are refused).

        Raises:
            ParseError: the archive or its content.xml is damaged.
            EmptyDocument: the body holds no text.
        """
        if not data:
            raise EmptyDocument("file is empty")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if archive.getinfo("content.xml").file_size > _CONTENT_LIMIT:
                    raise ParseError("the document's content.xml is over 256 MiB")
                content = archive.read("content.xml")
        except KeyError as exc:
            raise ParseError("the OpenDocument file has no content.xml: it is damaged") from exc
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:
            raise corrupt_archive(None, str(exc) or type(exc).__name__) from exc
        try:
            root = ElementTree.fromstring(content)
        except ElementTree.ParseError as exc:
            raise ParseError(
                f"the document's content.xml is not readable XML ({exc}): it is damaged or "
                "encrypted; save an unprotected copy and upload that"
            ) from exc
        body = root.find(f"{_OFFICE}body/{_OFFICE}text")
        if body is None:
            raise EmptyDocument("the OpenDocument file has no text body: upload a text document")
        if self.ocr is None:
            pages = pages_from_blocks(body_blocks(body), "OpenDocument text")
            logger.debug("parsed media_type=%s pages=%d", self.media_type, len(pages))
            return ParsedDocument(media_type=self.media_type, pages=pages)
        reader = PictureReader(self.ocr, self.max_pictures)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            blocks = body_blocks(body, pictures=archive_pictures(archive, reader))
            pages = pages_from_blocks(blocks, "OpenDocument text")
        logger.debug(
            "parsed media_type=%s pages=%d pictures_read=%d",
            self.media_type,
            len(pages),
            reader.read_count,
        )
        return ParsedDocument(
            media_type=self.media_type, pages=pages, warnings=reader.all_warnings()
        )
