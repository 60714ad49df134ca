"""Parsers behind the ``Parser`` protocol, chosen by sniffing the file's bytes.

``parse_bytes`` is the one entry point ingestion needs: size check, sniffing,
parser choice and parsing, each failing with an error that says what to do.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ingest.parsers.csv import CsvParser
from ingest.parsers.docx import DocxParser
from ingest.parsers.epub import EpubParser
from ingest.parsers.html import HtmlParser
from ingest.parsers.odt import OdtParser
from ingest.parsers.pdf import PdfParser
from ingest.parsers.pptx import PptxParser
from ingest.parsers.text import MarkdownParser, TextParser
from ingest.parsers.xlsx import XlsxParser
from ingest.sniff import (
    CSV,
    DOCX,
    EPUB,
    HTML,
    MARKDOWN,
    ODT,
    PDF,
    PPTX,
    TEXT,
    XLSX,
    sniff_media_type,
    unsupported,
)
from rag.errors import FileTooLarge, InvalidInput
from rag.protocols import Parser
from rag.types import ParsedDocument

if TYPE_CHECKING:
    from ingest.ocr import OcrEngine

logger = logging.getLogger(__name__)

__all__ = [
    "CsvParser",
    "DocxParser",
    "EpubParser",
    "HtmlParser",
    "MarkdownParser",
    "OdtParser",
    "PdfParser",
    "PptxParser",
    "TextParser",
    "XlsxParser",
    "get_parser",
    "parse_bytes",
]

_MIB = 1024 * 1024
_PARSERS: dict[str, type[Parser]] = {
    PDF: PdfParser,
    TEXT: TextParser,
    MARKDOWN: MarkdownParser,
    HTML: HtmlParser,
    CSV: CsvParser,
    DOCX: DocxParser,
    PPTX: PptxParser,
    XLSX: XlsxParser,
    ODT: OdtParser,
    EPUB: EpubParser,
}
# Formats whose parser reads images by OCR when given an engine.
_OCR_PARSERS = frozenset({PDF, DOCX, PPTX, ODT, EPUB})
_PICTURE_PARSERS = frozenset({DOCX, PPTX, ODT, EPUB})


def get_parser(
    media_type: str, *, ocr: OcrEngine | None = None, max_pictures: int | None = None
) -> Parser:
    """A parser for ``media_type`` (as returned by ``sniff_media_type``).

    Args:
        media_type: The sniffed media type.
        ocr: The OCR engine for the formats that read images (PDF scans,
            pictures in Word, PowerPoint, OpenDocument and EPUB files); None turns that off.
        max_pictures: Most pictures OCR'd per Word/PowerPoint/OpenDocument/EPUB file
            (None: the parsers' default, ``MAX_IMAGES_PER_DOCUMENT``).

    Raises:
        UnsupportedFileType: no parser handles that media type.
    """
    try:
        parser_class = _PARSERS[media_type]
    except KeyError:
        raise unsupported(media_type, None) from None
    if media_type in _PICTURE_PARSERS and max_pictures is not None:
        return parser_class(ocr=ocr, max_pictures=max_pictures)  # type: ignore[call-arg]
    if media_type in _OCR_PARSERS:
        return parser_class(ocr=ocr)  # type: ignore[call-arg]
    return parser_class()


def parse_bytes(
    data: bytes,
    filename: str | None = None,
    password: str | None = None,
    max_bytes: int | None = None,
) -> ParsedDocument:
    """Sniff, choose a parser and parse one file.

    Args:
        data: The file's bytes.
        filename: The original name (a hint for Markdown vs text; in messages).
        password: The open password of an encrypted PDF or Office file, if given.
        max_bytes: Reject larger files; None for no limit.

    Returns:
        The parsed pages, numbered from 1.

    Raises:
        FileTooLarge: ``data`` is longer than ``max_bytes``.
        EmptyDocument: the file is empty or has no extractable text.
        UnsupportedFileType: the bytes are in none of the supported formats.
        EncryptedDocument: a password is needed or wrong.
        ParseError: the file is damaged.
    """
    if max_bytes is not None:
        if max_bytes <= 0:
            raise InvalidInput(f"max_bytes must be > 0, got {max_bytes}")
        if len(data) > max_bytes:
            raise FileTooLarge(
                f"file is {len(data) / _MIB:.1f} MiB, over the {max_bytes / _MIB:.1f} MiB limit: "
                "split it, or raise the limit with RAG_INGEST__MAX_FILE_MB",
                details={"filename": filename, "bytes": len(data), "max_bytes": max_bytes},
            )
    media_type = sniff_media_type(data, filename, password)
    document = get_parser(media_type).parse(data, password=password)
    logger.info(
        "parsed filename=%s media_type=%s pages=%d warnings=%d",
        filename,
        media_type,
        document.page_count,
        len(document.warnings),
    )
    return document
