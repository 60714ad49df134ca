"""Decide what a file is from its bytes, using the name only as a hint.

Uploads are often misnamed (a PDF saved as ``.txt``, a screenshot renamed to
``.pdf``), so magic bytes win over the suffix; the suffix only separates
Markdown from plain text and breaks ties for HTML.
"""

from __future__ import annotations

import logging
import re
from pathlib import PurePath

from rag.errors import EmptyDocument, UnsupportedFileType

logger = logging.getLogger(__name__)

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
SUPPORTED_MEDIA_TYPES = (PDF, TEXT, MARKDOWN, HTML)

_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_TEXT_SUFFIXES = {".txt", ".text", ".log", ".csv", ".tsv"}

# PDF readers accept junk before the header, and so do we (within 1 KiB).
_PDF_HEADER_WINDOW = 1024
# How much of the file the text/HTML/Markdown guesses look at.
_SAMPLE_BYTES = 64 * 1024

# (magic prefix, human name) of common formats people try to upload.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document (.doc/.xls/.ppt)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"\x7fELF", "executable"),
    (b"{\\rtf", "RTF document"),
    (b"%!PS", "PostScript file"),
    (b"OggS", "Ogg media"),
    (b"fLaC", "FLAC audio"),
    (b"ID3", "MP3 audio"),
    (b"SQLite format 3\x00", "SQLite database"),
)
# Byte-order marks, longest first (UTF-32-LE starts with the UTF-16-LE mark).
BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)
_HTML_START = re.compile(
    rb"^\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b",
    re.IGNORECASE | re.DOTALL,
)
_HTML_TAG = re.compile(
    rb"<(?:html|head|body|title|meta|p|div|h[1-6]|table|ul|ol|a\s)[\s>]", re.IGNORECASE
)
_MARKDOWN_FEATURES = (
    re.compile(r"^#{1,6}\s+\S", re.MULTILINE),  # ATX heading
    re.compile(r"^```", re.MULTILINE),  # fenced code
    re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"),  # inline link
    re.compile(r"^\s*[-*+]\s+\S", re.MULTILINE),  # bullet list
    re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),  # strong emphasis
    re.compile(r"^\s*>\s", re.MULTILINE),  # block quote
    re.compile(r"^\|.*\|\s*$\n^\|?\s*:?-{3,}", re.MULTILINE),  # table
)


def unsupported(kind: str, filename: str | None) -> UnsupportedFileType:
    """The error for a file that is not PDF, text, Markdown or HTML."""
    return UnsupportedFileType(
        f"unsupported file type {kind}: upload PDF, text, Markdown or HTML",
        details={"filename": filename, "detected": kind},
    )


def _suffix(filename: str | None) -> str:
    return PurePath(filename).suffix.lower() if filename else ""


def _zip_kind(data: bytes) -> str:
    """Name the ZIP-based format (Office files are ZIP archives)."""
    head = data[:4096]
    if b"word/" in head:
        return "Word document (.docx)"
    if b"xl/" in head:
        return "Excel workbook (.xlsx)"
    if b"ppt/" in head:
        return "PowerPoint presentation (.pptx)"
    if b"application/epub" in head:
        return "EPUB book"
    return "ZIP archive"


def _binary_kind(data: bytes) -> str | None:
    """A name for a known binary format, or None when no magic bytes match."""
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data)
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}[data[8:12]]
    if data[4:8] == b"ftyp":
        return "MP4/QuickTime media"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def _looks_binary(sample: bytes) -> bool:
    """True when the bytes are not text in any encoding we decode.

    Text never holds NUL bytes (UTF-16/32 with a BOM are handled before), and
    holds few C0 control characters besides tab, newline, carriage return and
    form feed.
    """
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls > max(1, len(sample) // 100)


def _looks_markdown(text: str) -> bool:
    """At least two different Markdown constructs appear."""
    return sum(1 for pattern in _MARKDOWN_FEATURES if pattern.search(text)) >= 2


def sniff_media_type(data: bytes, filename: str | None = None) -> str:
    """The media type of ``data``: one of :data:`SUPPORTED_MEDIA_TYPES`.

    Args:
        data: The file's bytes.
        filename: The original name, used to tell Markdown from plain text
            and as a tie-breaker for HTML; never trusted over the content.

    Returns:
        'application/pdf', 'text/plain', 'text/markdown' or 'text/html'.

    Raises:
        EmptyDocument: ``data`` is empty.
        UnsupportedFileType: the bytes are an image, archive, Office file or
            other binary data.
    """
    if not data:
        raise EmptyDocument("file is empty", details={"filename": filename})
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return PDF
    kind = _binary_kind(data)
    if kind is not None:
        raise unsupported(kind, filename)

    sample = data[:_SAMPLE_BYTES]
    bom = next(((bom, enc) for bom, enc in BOMS if sample.startswith(bom)), None)
    if bom is not None:
        decoded = sample[len(bom[0]) :].decode(bom[1], errors="ignore")
        sample = decoded.lstrip("\ufeff").encode("utf-8")
    elif _looks_binary(sample):
        if _suffix(filename) == ".pdf":
            raise unsupported("binary data without a PDF header (corrupt PDF?)", filename)
        raise unsupported("binary data", filename)

    suffix = _suffix(filename)
    if _HTML_START.match(sample) or (suffix in _HTML_SUFFIXES and _HTML_TAG.search(sample)):
        return HTML
    if suffix in _MARKDOWN_SUFFIXES:
        return MARKDOWN
    if suffix in _TEXT_SUFFIXES:
        return TEXT
    if _looks_markdown(sample.decode("utf-8", errors="ignore")):
        return MARKDOWN
    return TEXT
