"""PowerPoint (.pptx) parser built on python-pptx: one page per slide.

A slide's page holds its title (as a heading), the text of every text frame,
tables as Markdown (a merged cell's text once), the shapes inside groups,
chart titles, picture alt text and, last, the speaker notes: in decks the
notes often say what the bullets only hint at. With an OCR engine, the text
of each picture (``ppt/media/*``) is read and placed after its alt text, and
the slide carries the OCR confidence (see ``ingest.parsers.images``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ingest.parsers.blocks import heading
from ingest.parsers.crypto import office_package
from ingest.parsers.images import OcrBlock, PictureOcrParser, PictureReader
from ingest.parsers.tables import markdown_table
from ingest.sniff import PPTX, corrupt_archive
from rag.errors import EmptyDocument, ParseError
from rag.types import Page, ParsedDocument

if TYPE_CHECKING:  # python-pptx is imported when a .pptx is parsed
    from pptx.chart.chart import Chart
    from pptx.presentation import Presentation
    from pptx.shapes.base import BaseShape
    from pptx.slide import Slide
    from pptx.table import Table
    from pptx.text.text import TextFrame


logger = logging.getLogger(__name__)

_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def _alt_text(shape: BaseShape) -> str:
    """The shape's description (alt text), '' when it has none."""
    properties = shape._element.find(".//{*}cNvPr")
    descr = properties.get("descr", "") if properties is not None else ""
    return " ".join(descr.split())


def _text_frame(frame: TextFrame) -> str:
    """The paragraphs of a text frame, list levels indented."""
    lines = []
    for paragraph in frame.paragraphs:
        text = " ".join(paragraph.text.split())
        if text:
            lines.append("  " * paragraph.level + text if paragraph.level else text)
    return "\n".join(lines)


def _table(table: Table) -> str:
    """A slide table as Markdown; cells covered by a merge are empty."""
    grid = [
        ["" if cell.is_spanned else " ".join(cell.text.split()) for cell in row.cells]
        for row in table.rows
    ]
    grid = [row for row in grid if any(row)]
    return markdown_table(grid[0], grid[1:]) if grid else ""


def _chart(chart: Chart) -> str:
    """A chart's title, series names and categories (the data are not text)."""
    parts = []
    if chart.has_title and chart.chart_title.has_text_frame:
        parts.append(" ".join(chart.chart_title.text_frame.text.split()))
    try:
        plot = chart.plots[0]
        categories = [str(c) for c in plot.categories if str(c).strip()]
        series = [s.name for s in plot.series if s.name]
    except (IndexError, KeyError, ValueError):  # a chart without plots
        categories, series = [], []
    if series:
        parts.append("Series: " + ", ".join(series))
    if categories:
        parts.append("Categories: " + ", ".join(categories))
    return "\n".join(part for part in parts if part)


def _picture_text(shape: BaseShape, reader: PictureReader) -> OcrBlock | None:
    """OCR text of a picture shape; None for a linked picture or one without text."""
    try:
        image = shape.image  # type: ignore[attr-defined]
        blob = image.blob
    except (AttributeError, KeyError, ValueError):  # linked, not embedded
        return None
    blip = shape._element.find(".//{*}blip")
    rid = blip.get(f"{_R}embed") if blip is not None else None
    key = str(shape.part.related_part(rid).partname) if rid else f"sha1:{image.sha1}"
    return reader.read(blob, key)


def shape_texts(
    shapes: Iterable[BaseShape], title_id: int | None, reader: PictureReader | None = None
) -> Iterator[str | OcrBlock]:
    """Texts of the shapes in order, descending into groups; the title is skipped.

    Args:
        shapes: The slide's (or a group's) shapes.
        title_id: The title placeholder's shape id, left out (it heads the page).
        reader: Reads pictures by OCR; None leaves them to their alt text.
    """
    from pptx.shapes.autoshape import Shape
    from pptx.shapes.graphfrm import GraphicFrame
    from pptx.shapes.group import GroupShape
    from pptx.shapes.picture import Picture

    for shape in shapes:
        if title_id is not None and shape.shape_id == title_id:
            continue
        if isinstance(shape, GroupShape):
            yield from shape_texts(shape.shapes, title_id, reader)
        elif isinstance(shape, GraphicFrame):
            if shape.has_table:
                yield _table(shape.table)
            elif shape.has_chart:
                yield _chart(shape.chart)
        elif isinstance(shape, Shape) and shape.has_text_frame:
            yield _text_frame(shape.text_frame)
        elif isinstance(shape, Picture):
            if alt := _alt_text(shape):
                yield f"[image: {alt}]"
            if reader is not None and (block := _picture_text(shape, reader)) is not None:
                yield block


def slide_page(number: int, slide: Slide, reader: PictureReader | None = None) -> Page:
    """One slide as a page: title heading, shapes, then the speaker notes.

    The page's ``ocr_confidence`` is the lowest of its pictures' read by OCR.
    """
    title = slide.shapes.title
    parts: list[str | OcrBlock] = []
    if title is not None and title.has_text_frame and title.text_frame.text.strip():
        parts.append(heading(1, title.text_frame.text))
    parts.extend(shape_texts(slide.shapes, title.shape_id if title is not None else None, reader))
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        text = notes.text.strip() if notes is not None else ""
        if text:
            parts.append("Notes:\n" + text)
    texts = [part.text if isinstance(part, OcrBlock) else part for part in parts]
    sure = [p.confidence for p in parts if isinstance(p, OcrBlock) and p.confidence is not None]
    return Page(
        number,
        "\n\n".join(text for text in texts if text.strip()),
        min(sure) if sure else None,
    )


def slide_text(slide: Slide) -> str:
    """One slide as text (pictures by their alt text only)."""
    return slide_page(1, slide).text


class PptxParser(PictureOcrParser):
    """PowerPoint presentations (.pptx), encrypted ones with their password.

    Args:
        ocr: Reads the text of the pictures on the slides; None (the default)
            leaves pictures to their alt text.
        max_pictures: Most pictures read by OCR in one document.
    """

    media_type = PPTX

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """One page per slide, numbered as in the deck (empty slides keep their number).

        Raises:
            EncryptedDocument: encrypted and no (right) password.
            ParseError: not a readable .pptx.
            EmptyDocument: no slide holds text.
        """
        if not data:
            raise EmptyDocument("file is empty")
        presentation = _open(office_package(data, password))
        reader = PictureReader(self.ocr, self.max_pictures) if self.ocr is not None else None
        pages = tuple(
            slide_page(number, slide, reader)
            for number, slide in enumerate(presentation.slides, start=1)
        )
        if not any(page.text for page in pages):
            raise EmptyDocument(
                f"the presentation's {len(pages)} slides hold no text (images only?): "
                "upload a deck with text"
            )
        logger.debug(
            "parsed media_type=%s slides=%d pictures_read=%d",
            self.media_type,
            len(pages),
            reader.read_count if reader is not None else 0,
        )
        warnings = reader.all_warnings() if reader is not None else ()
        return ParsedDocument(media_type=self.media_type, pages=pages, warnings=warnings)


def _open(package: bytes) -> Presentation:
    import zipfile

    from pptx import Presentation as open_presentation
    from pptx.exc import PackageNotFoundError

    try:
        return open_presentation(io.BytesIO(package))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise corrupt_archive(None, str(exc) or type(exc).__name__) from exc
    except Exception as exc:  # lxml and python-pptx raise many types on damaged XML
        raise ParseError(
            f"could not read the presentation ({type(exc).__name__}: {exc}): it is damaged; "
            "open and re-save it, or upload an intact copy"
        ) from exc
