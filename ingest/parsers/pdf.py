"""PDF parser: text page by page with 1-based page numbers, tables, and OCR.

- Text comes from pypdf, which is lenient (``strict=False``) so slightly
  damaged files still yield their text; what it complains about goes to this
  module's log at DEBUG level instead of the user's terminal.
- Tables: a page that draws enough ruling lines to hold one is read again by
  pdfplumber; each table it finds becomes a Markdown table (the chunker keeps
  it in chunks of its own, header repeated) and the rest of the page flows as
  text around it (``ingest/parsers/pdf_tables.py``).
- OCR: a page without a text layer (a scan), or whose text is garbage from a
  broken font map (``ingest/garbled.py``), is rendered by pypdfium2 and read by
  the OCR engine (``ingest/ocr.py``); the page keeps its number and records the
  OCR confidence. Without an engine such pages fail with a clear reason.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ingest.garbled import judge_text
from ingest.sniff import PDF
from rag.errors import EmptyDocument, EncryptedDocument, ParseError
from rag.types import Page, ParsedDocument

if TYPE_CHECKING:  # pypdf is imported when a PDF is parsed, not at import time
    from pypdf import PdfReader
    from pypdfium2 import PdfDocument

    from ingest.ocr import OcrEngine
    from ingest.parsers.pdf_tables import PageTables

logger = logging.getLogger(__name__)

# Where pypdf looks for the end-of-file marker, and the trailer that stands in
# for a missing one (startxref 0 is invalid, so pypdf rebuilds the xref table).
_EOF_WINDOW = 1024
_STAND_IN_TRAILER = b"\nstartxref\n0\n%%EOF\n"

_ROUTE_LOCK = threading.Lock()
_routed = False

_PASSWORD_REQUIRED = (
    "PDF is encrypted, password required: pass --password or the 'password' form field"
)
_PASSWORD_WRONG = (
    "PDF is encrypted and the password is wrong: check it and pass the document's open "
    "(user) password with --password or the 'password' form field"
)
_NO_TEXT = (
    "no extractable text and OCR is off: the PDF holds only images (a scan?). Turn OCR "
    "on (RAG_INGEST__OCR=true) or run OCR on it first (e.g. ocrmypdf) and upload the result"
)
_NO_OCR_TEXT = (
    "no extractable text: the PDF holds only images and OCR found no text on any of its "
    "pages; check that the scan is legible (not blank, not a photo without text)"
)
_GARBLED = (
    "the text layer of page(s) {pages} is garbage ({reason}) and OCR is off: turn OCR on "
    "(RAG_INGEST__OCR=true) to read those pages from their image, or re-export the PDF "
    "with its fonts embedded"
)
# Pages whose text layer has fewer visible characters than this are treated as
# having none: scans often carry a stray page number or a scanner's stamp.
MIN_TEXT_LAYER_CHARS = 3


class _PypdfToDebug(logging.Handler):
    """Re-log pypdf's records at DEBUG on this module's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("pypdf %s: %s", record.levelname.lower(), record.getMessage())


def route_pypdf_logging() -> None:
    """Send the 'pypdf' logger's records to this module's log at DEBUG level.

    pypdf reports recoverable damage as WARNING records, which Python's
    last-resort handler prints to stderr when the application has configured
    no logging. They are diagnostics for us, not messages for the user, so
    they are re-logged at DEBUG and not propagated. Idempotent.
    """
    global _routed
    with _ROUTE_LOCK:
        if _routed:
            return
        pypdf_logger = logging.getLogger("pypdf")
        pypdf_logger.addHandler(_PypdfToDebug())
        pypdf_logger.propagate = False
        _routed = True


@contextmanager
def _quiet_warnings() -> Iterator[None]:
    """Capture Python warnings raised by pypdf and log them at DEBUG."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        logger.debug("pypdf warning %s: %s", warning.category.__name__, warning.message)


class PdfParser:
    """PDF files via pypdf, with pdfplumber for tables and an OCR engine for scans.

    Every page of the file appears in the result, in order and numbered from
    1; a page without text (or whose extraction failed) has empty text, so
    ``page_count`` is the PDF's page count and citations keep true numbers.

    Args:
        ocr: Reads pages that have no text layer or a garbled one; None turns
            OCR off (such pages then make the document fail with the reason).
        tables: Detect ruled tables with pdfplumber and emit them as Markdown.
    """

    media_type = PDF

    def __init__(self, ocr: OcrEngine | None = None, *, tables: bool = True) -> None:
        route_pypdf_logging()
        self.ocr = ocr
        self.tables = tables

    def parse(
        self,
        data: bytes,
        *,
        password: str | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> ParsedDocument:
        """Extract the text of each page of ``data``.

        Args:
            data: The PDF's bytes.
            password: The open (user) password, tried after the empty one.
            on_page: Called with (pages parsed, page count) after each page
                (OCR included), so a long PDF reports progress while it is read.

        Raises:
            EmptyDocument: the file is empty, or no page has text (image-only
                and OCR off or finding nothing).
            EncryptedDocument: encrypted and no password, or a wrong one.
            ParseError: the file is too damaged to read, or a page's text layer
                is garbage and OCR is off.
        """
        if not data:
            raise EmptyDocument("file is empty")
        problems: list[str] = []
        with _quiet_warnings():
            reader = self._open(data, problems)
            self._decrypt(reader, password)
            raw = self._extract(reader, problems)
            pages = self._complete(data, password, reader, raw, problems, on_page)
        if not any(page.text.strip() for page in pages):
            failures = [problem for problem in problems if _is_page_failure(problem)]
            if failures:
                raise ParseError(
                    f"could not extract text from any of the {len(pages)} pages "
                    f"({failures[0]}): the PDF is damaged; re-export or re-download it"
                )
            message = _NO_TEXT if self.ocr is None else _NO_OCR_TEXT
            raise EmptyDocument(message, details={"pages": len(pages)})
        logger.debug("parsed media_type=%s pages=%d skipped=%d", PDF, len(pages), len(problems))
        return ParsedDocument(media_type=PDF, pages=tuple(pages), warnings=tuple(problems))

    def _complete(
        self,
        data: bytes,
        password: str | None,
        reader: PdfReader,
        raw: list[str | None],
        problems: list[str],
        on_page: Callable[[int, int], None] | None,
    ) -> list[Page]:
        """Pages from the text layer, with tables re-read and scans or garbage OCR'd.

        ``raw[i]`` is page i+1's text layer, or None when it has none.
        """
        count = len(raw)
        garbled: dict[int, str] = {}
        for index, text in enumerate(raw):
            if text is not None:
                verdict = judge_text(text)
                if verdict.garbled:
                    garbled[index] = verdict.reason
        if garbled and self.ocr is None:
            numbers = ", ".join(str(i + 1) for i in sorted(garbled)[:10])
            raise ParseError(
                _GARBLED.format(pages=numbers, reason=next(iter(garbled.values()))),
                details={"pages": [i + 1 for i in sorted(garbled)]},
            )
        needs_ocr = {i for i, text in enumerate(raw) if text is None} | set(garbled)
        pdfium_doc: PdfDocument | None = None
        if self.tables or (needs_ocr and self.ocr is not None):
            pdfium_doc = _open_pdfium(data, password, problems)
        tables: PageTables | None = None
        if self.tables and pdfium_doc is not None:
            from ingest.parsers.pdf_tables import PageTables

            tables = PageTables(data, password, reader, pdfium_doc)
        pages: list[Page] = []
        try:
            for index, text in enumerate(raw):
                number = index + 1
                if index in needs_ocr and self.ocr is not None and pdfium_doc is not None:
                    page = self._ocr_page(pdfium_doc, index, garbled.get(index), problems)
                elif index in garbled:
                    page = Page(number=number, text="")
                else:
                    page = Page(number=number, text=text or "")
                    if tables is not None and page.text.strip():
                        page = tables.page_with_tables(index, page, problems)
                pages.append(page)
                if on_page is not None:
                    on_page(number, count)
        finally:
            if tables is not None:
                tables.close()
            if pdfium_doc is not None:
                pdfium_doc.close()
        return pages

    def _ocr_page(
        self, pdfium_doc: PdfDocument, index: int, garbled: str | None, problems: list[str]
    ) -> Page:
        """Page ``index`` read by OCR from its rendered image."""
        from ingest.ocr import render_pdf_page

        assert self.ocr is not None
        number = index + 1
        try:
            result = self.ocr.read(render_pdf_page(pdfium_doc, index))
        except Exception as exc:  # one unreadable page must not lose the rest
            problems.append(f"page {number}: OCR failed ({type(exc).__name__}: {exc})")
            logger.warning("pdf page=%d ocr failed: %s", number, exc)
            return Page(number=number, text="")
        if garbled is not None:
            problems.append(f"page {number}: text layer garbled ({garbled}); read by OCR")
        logger.debug(
            "pdf page=%d ocr lines=%d confidence=%s", number, len(result.lines), result.confidence
        )
        return Page(number=number, text=result.text, ocr_confidence=result.confidence)

    @staticmethod
    def _open(data: bytes, problems: list[str]) -> PdfReader:
        """A lenient reader; a truncated file is retried with a stand-in trailer."""
        from pypdf import PdfReader
        from pypdf.errors import EmptyFileError

        try:
            return PdfReader(io.BytesIO(data), strict=False)
        except EmptyFileError as exc:
            raise EmptyDocument("file is empty") from exc
        except Exception as exc:  # pypdf raises many types on damaged input
            first_error = exc
        if b"%%EOF" not in data[-_EOF_WINDOW:]:
            # A download cut short loses the trailer. A bogus startxref makes
            # pypdf rebuild the cross-reference table by scanning the objects
            # that remain, which recovers every page whose catalog survived.
            try:
                reader = PdfReader(io.BytesIO(data + _STAND_IN_TRAILER), strict=False)
                _ = len(reader.pages)
            except Exception as exc:
                logger.debug("pdf truncated-file recovery failed: %s", exc)
            else:
                problems.append(
                    "the PDF is truncated (no end-of-file marker); text was recovered from "
                    "the objects that remain and may be incomplete"
                )
                return reader
        raise ParseError(
            f"could not read the PDF ({type(first_error).__name__}: {first_error}): the file "
            "is corrupt or truncated; re-export or re-download it"
        ) from first_error

    @staticmethod
    def _decrypt(reader: PdfReader, password: str | None) -> None:
        """Open an encrypted PDF with the empty password, else the given one."""
        from pypdf import PasswordType
        from pypdf.errors import DependencyError

        if not reader.is_encrypted:
            return
        try:
            # Many PDFs are encrypted only to restrict printing/copying; their
            # open password is empty and they read like any other file.
            if reader.decrypt("") != PasswordType.NOT_DECRYPTED:
                return
            if not password:
                raise EncryptedDocument(_PASSWORD_REQUIRED)
            if reader.decrypt(password) == PasswordType.NOT_DECRYPTED:
                raise EncryptedDocument(_PASSWORD_WRONG)
        except DependencyError as exc:
            raise ParseError(
                f"PDF uses AES encryption and pypdf cannot decrypt it here ({exc}): "
                "install the 'cryptography' package"
            ) from exc
        except EncryptedDocument:
            raise
        except Exception as exc:
            raise ParseError(
                f"could not decrypt the PDF ({type(exc).__name__}: {exc}): the encryption "
                "dictionary is damaged or unsupported; re-export the file without encryption"
            ) from exc

    @staticmethod
    def _extract(reader: PdfReader, problems: list[str]) -> list[str | None]:
        """Text layer of every page: None for a page without one (a scan).

        A page whose extraction fails counts as having no text layer, so OCR
        can still read it; a warning says what failed.
        """
        try:
            count = len(reader.pages)
        except Exception as exc:
            raise ParseError(
                f"could not read the PDF's page tree ({type(exc).__name__}: {exc}): the file "
                "is corrupt or truncated; re-export or re-download it"
            ) from exc
        texts: list[str | None] = []
        for index in range(count):
            number = index + 1
            try:
                text = reader.pages[index].extract_text() or ""
            except Exception as exc:  # one bad page must not lose the rest
                problems.append(
                    f"page {number}: text extraction failed ({type(exc).__name__}: {exc}); "
                    "page skipped"
                )
                logger.warning("pdf page=%d extraction failed: %s", number, exc)
                text = ""
            visible = sum(1 for char in text if not char.isspace())
            texts.append(text if visible >= MIN_TEXT_LAYER_CHARS else None)
        return texts


def _is_page_failure(problem: str) -> bool:
    """True for a warning that says a page could not be read at all."""
    return problem.startswith("page ") and (
        "extraction failed" in problem or "OCR failed" in problem
    )


def _open_pdfium(data: bytes, password: str | None, problems: list[str]) -> PdfDocument | None:
    """The PDF opened by pypdfium2 (for rendering and drawing counts), or None if it cannot be.

    pypdf already read the file, so a failure here (a damage pdfium does not
    forgive) costs only tables and OCR, with a warning.
    """
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(data, password=password or None)
    except Exception as exc:  # pdfium raises PdfiumError for any damage
        if password is None:
            try:
                return pypdfium2.PdfDocument(data, password="")
            except Exception:  # noqa: BLE001 - the first error is the one reported
                pass
        problems.append(f"pdfium could not open the PDF ({exc}); no table detection or OCR")
        logger.debug("pdfium open failed: %s", exc)
        return None
