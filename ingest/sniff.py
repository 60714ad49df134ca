"""Decide what a file is from its bytes, using the name only as a hint.

Uploads are often misnamed (a PDF saved as ``.txt``, a screenshot renamed to
``.pdf``), so magic bytes win over the suffix; the suffix only separates
Markdown from plain text and breaks ties for HTML.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from pathlib import PurePath

from rag.errors import EmptyDocument, EncryptedDocument, ParseError, UnsupportedFileType

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


# OLE2 / Compound File Binary: legacy Office files, and the wrapper that
# password-protected .docx/.xlsx/.pptx are stored in (an "EncryptedPackage"
# stream beside "EncryptionInfo"; directory entry names are UTF-16-LE).
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OLE_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
# OpenDocument manifests name the cipher of each encrypted member.
_ODF_ENCRYPTION = b"encryption-data"
# A manifest larger than this is not a real one; never inflate more.
_MANIFEST_LIMIT = 1024 * 1024
_PASSWORD_HINT = (
    "passwords are only supported for PDFs: open it, remove the password "
    "(save an unprotected copy) and upload that"
)


def encrypted_office(kind: str, filename: str | None) -> EncryptedDocument:
    """The error for a password-protected Office or OpenDocument file."""
    return EncryptedDocument(
        f"{filename or 'the file'} is an encrypted (password-protected) {kind}; " + _PASSWORD_HINT,
        details={"filename": filename, "detected": f"encrypted {kind}"},
    )


def corrupt_archive(filename: str | None, reason: str) -> ParseError:
    """The error for a ZIP-based file (Office, OpenDocument, EPUB) that cannot be opened."""
    return ParseError(
        f"{filename or 'the file'} is a corrupt or truncated ZIP-based file (Office document or "
        f"archive) and cannot be opened ({reason}); upload an intact copy",
        details={"filename": filename, "detected": "corrupt ZIP archive"},
    )


def unsupported(kind: str, filename: str | None) -> UnsupportedFileType:
    """The error for a file that is not PDF, text, Markdown or HTML."""
    return UnsupportedFileType(
        f"unsupported file type {kind}: upload PDF, text, Markdown or HTML",
        details={"filename": filename, "detected": kind},
    )


def _suffix(filename: str | None) -> str:
    return PurePath(filename).suffix.lower() if filename else ""


_ODF_KINDS = {
    "application/vnd.oasis.opendocument.text": "OpenDocument text (.odt)",
    "application/vnd.oasis.opendocument.spreadsheet": "OpenDocument spreadsheet (.ods)",
    "application/vnd.oasis.opendocument.presentation": "OpenDocument presentation (.odp)",
    "application/epub+zip": "EPUB book",
}


def _zip_kind(data: bytes, filename: str | None) -> str:
    """Name the ZIP-based format (Office files are ZIP archives) from its member names.

    Raises:
        ParseError: The archive cannot be opened (truncated, no central directory).
        EncryptedDocument: An OpenDocument file whose members are encrypted.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        mimetype = ""
        if "mimetype" in names and archive.getinfo("mimetype").file_size < 256:
            mimetype = archive.read("mimetype").decode("ascii", errors="replace").strip()
        manifest = b""
        if "META-INF/manifest.xml" in names:
            if archive.getinfo("META-INF/manifest.xml").file_size <= _MANIFEST_LIMIT:
                manifest = archive.read("META-INF/manifest.xml")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise corrupt_archive(filename, str(exc) or type(exc).__name__) from exc
    except NotImplementedError as exc:  # a compression method zipfile lacks
        raise unsupported("ZIP archive", filename) from exc
    if mimetype in _ODF_KINDS:
        kind = _ODF_KINDS[mimetype]
        if _ODF_ENCRYPTION in manifest:
            raise encrypted_office(kind, filename)
        return kind
    prefixes = {name.split("/", 1)[0] for name in names}
    if "word" in prefixes:
        return "Word document (.docx)"
    if "xl" in prefixes:
        return "Excel workbook (.xlsx)"
    if "ppt" in prefixes:
        return "PowerPoint presentation (.pptx)"
    return "ZIP archive"


def _ole_kind(data: bytes, filename: str | None) -> str:
    """Name an OLE2 file; password-protected .docx/.xlsx/.pptx live in one.

    Raises:
        EncryptedDocument: The file is an encrypted Office document.
    """
    if _OLE_ENCRYPTED_PACKAGE in data:
        raise encrypted_office("Office document (Word, Excel or PowerPoint)", filename)
    return "legacy Office document (.doc/.xls/.ppt)"


def _binary_kind(data: bytes, filename: str | None) -> str | None:
    """A name for a known binary format, or None when no magic bytes match."""
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data, filename)
    if data.startswith(_OLE_MAGIC):
        return _ole_kind(data, filename)
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
        EncryptedDocument: a password-protected Office or OpenDocument file.
        ParseError: a corrupt or truncated ZIP-based file (e.g. a cut-off .docx).
    """
    if not data:
        raise EmptyDocument("file is empty", details={"filename": filename})
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return PDF
    kind = _binary_kind(data, filename)
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
