"""Decide what a file is from its bytes, using the name only as a hint.

Uploads are often misnamed (a PDF saved as ``.txt``, a screenshot renamed to
``.pdf``, a workbook saved as ``.zip``), so magic bytes and archive members
win over the suffix; the suffix only separates Markdown from plain text and
breaks ties for HTML and CSV.
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
CSV = "text/csv"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
EPUB = "application/epub+zip"
SUPPORTED_MEDIA_TYPES = (PDF, TEXT, MARKDOWN, HTML, CSV, DOCX, PPTX, XLSX, ODT, EPUB)
SUPPORTED_FORMATS = (
    "PDF, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), CSV, EPUB, ODT, HTML, Markdown or text"
)

_MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_TEXT_SUFFIXES = {".txt", ".text", ".log"}
_CSV_SUFFIXES = {".csv", ".tsv"}
_CSV_DELIMITERS = (",", "\t", ";", "|")
# Content alone makes a file CSV when this share of its first lines (and at
# least _CSV_MIN_LINES of them) split into the same number (>= 2) of fields.
_CSV_CONSISTENT_SHARE = 0.8
_CSV_MIN_LINES = 5

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
_PASSWORD_HINT = "pass the password with --password or the 'password' form field"
_ODF_PASSWORD_HINT = (
    "password-protected OpenDocument files cannot be decrypted here: open it, save an "
    "unprotected copy and upload that"
)


def encrypted_office(
    kind: str, filename: str | None, hint: str = _PASSWORD_HINT
) -> EncryptedDocument:
    """The error for a password-protected Office or OpenDocument file."""
    return EncryptedDocument(
        f"{filename or 'the file'} is an encrypted (password-protected) {kind}; " + hint,
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
    """The error for a file in none of the supported formats."""
    return UnsupportedFileType(
        f"unsupported file type {kind}: upload {SUPPORTED_FORMATS}",
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


_ZIP_MEDIA_TYPES = {ODT: ODT, EPUB: EPUB}


def _zip_kind(data: bytes, filename: str | None) -> str:
    """The ZIP-based format (Office files are ZIP archives) from its member names.

    Returns:
        A supported media type (DOCX, PPTX, XLSX, ODT, EPUB), or the name of an
        unsupported ZIP-based format.

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
            raise encrypted_office(kind, filename, _ODF_PASSWORD_HINT)
        return _ZIP_MEDIA_TYPES.get(mimetype, kind)
    if "META-INF/container.xml" in names and any(n.endswith(".opf") for n in names):
        return EPUB  # an EPUB without its "mimetype" member (many tools drop it)
    prefixes = {name.split("/", 1)[0] for name in names}
    if "[Content_Types].xml" in names:
        for prefix, media_type in (("word", DOCX), ("xl", XLSX), ("ppt", PPTX)):
            if prefix in prefixes:
                return media_type
    return "ZIP archive"


def is_encrypted_ooxml(data: bytes) -> bool:
    """True for a password-protected .docx/.xlsx/.pptx (an OLE2 file holding the package)."""
    return data.startswith(_OLE_MAGIC) and _OLE_ENCRYPTED_PACKAGE in data


def _ole_kind(data: bytes, filename: str | None, password: str | None) -> str:
    """The format of an OLE2 file; password-protected .docx/.xlsx/.pptx live in one.

    With a password the package is decrypted to see what is inside.

    Raises:
        EncryptedDocument: An encrypted Office document and no (right) password.
        ParseError: The encrypted package is damaged.
    """
    if not is_encrypted_ooxml(data):
        return "legacy Office document (.doc/.xls/.ppt)"
    if not password:
        raise encrypted_office("Office document (Word, Excel or PowerPoint)", filename)
    from ingest.parsers.crypto import decrypt_ooxml

    inner = decrypt_ooxml(data, password, filename)
    if not inner.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "encrypted legacy Office document (.doc/.xls/.ppt)"
    return _zip_kind(inner, filename)


def _binary_kind(data: bytes, filename: str | None, password: str | None = None) -> str | None:
    """A supported media type or a name for a known binary format; None when no magic matches."""
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data, filename)
    if data.startswith(_OLE_MAGIC):
        return _ole_kind(data, filename, password)
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


def sniff_media_type(data: bytes, filename: str | None = None, password: str | None = None) -> str:
    """The media type of ``data``: one of :data:`SUPPORTED_MEDIA_TYPES`.

    Args:
        data: The file's bytes.
        filename: The original name, used to tell Markdown from plain text,
            as a tie-breaker for HTML and CSV; never trusted over the content.
        password: For an encrypted .docx/.xlsx/.pptx: decrypts it to tell
            which one it is (and to check the password before any work).

    Returns:
        One of :data:`SUPPORTED_MEDIA_TYPES`; for an encrypted Office file,
        the type of the document inside.

    Raises:
        EmptyDocument: ``data`` is empty.
        UnsupportedFileType: the bytes are an image, archive, legacy Office
            file or other binary data.
        EncryptedDocument: a password-protected Office file and no (right)
            password, or a password-protected OpenDocument file.
        ParseError: a corrupt or truncated ZIP-based file (e.g. a cut-off .docx).
    """
    if not data:
        raise EmptyDocument("file is empty", details={"filename": filename})
    if b"%PDF-" in data[:_PDF_HEADER_WINDOW]:
        return PDF
    kind = _binary_kind(data, filename, password)
    if kind in SUPPORTED_MEDIA_TYPES:
        return kind
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
    text = _decode_sample(sample)
    _, csv_lines = csv_delimiter(text)
    if csv_lines >= 2 and (suffix in _CSV_SUFFIXES or csv_lines >= _CSV_MIN_LINES):
        return CSV
    if suffix in _TEXT_SUFFIXES or suffix in _CSV_SUFFIXES:
        return TEXT
    if _looks_markdown(text):
        return MARKDOWN
    return TEXT


def _decode_sample(sample: bytes) -> str:
    """The sample as text for the content guesses: UTF-8, else GB18030 (lossy)."""
    try:
        return sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4:  # the sample cut a character in two
            return sample[: exc.start].decode("utf-8", errors="ignore")
    return sample.decode("gb18030", errors="ignore")


def csv_delimiter(text: str) -> tuple[str, int]:
    """The delimiter that splits the text's first lines most consistently.

    For each usual delimiter, the rows (quoted fields may span lines) after
    any preamble (bill exports start with lines of prose) are split, and the
    rows having the most common field count (>= 2) are counted; a delimiter
    counts only when at least 80% of those rows agree, which prose that
    merely holds commas does not.

    Returns:
        (delimiter, agreeing rows); (",", 0) when none is consistent.
    """
    import csv
    from collections import Counter

    if "\n" in text.rstrip("\n") and not text.endswith("\n"):
        text = text[: text.rindex("\n") + 1]  # the sample may end mid-line
    best = (",", 0)
    for delimiter in _CSV_DELIMITERS:
        try:
            rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            widths = [len(row) for row, _ in zip(rows, range(200), strict=False) if any(row)]
        except csv.Error:
            continue
        counts = Counter(width for width in widths if width >= 2)
        if not counts:
            continue
        width, agreeing = counts.most_common(1)[0]
        first = next(i for i, w in enumerate(widths) if w == width)
        if agreeing >= 2 and agreeing >= _CSV_CONSISTENT_SHARE * len(widths[first:]):
            if agreeing > best[1]:
                best = (delimiter, agreeing)
    return best
