"""PDF parser built on pypdf: text page by page, with 1-based page numbers.

pypdf is lenient (``strict=False``) so slightly damaged files still yield
their text; what it complains about goes to this module's log at DEBUG level
instead of the user's terminal.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ingest.sniff import PDF
from rag.errors import EmptyDocument, EncryptedDocument, ParseError
from rag.types import Page, ParsedDocument

if TYPE_CHECKING:  # pypdf is imported when a PDF is parsed, not at import time
    from pypdf import PdfReader

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
    "no extractable text; OCR is not supported: the PDF holds only images (a scan?). "
    "Run OCR on it first (e.g. ocrmypdf) and upload the result"
)


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
    """PDF files via pypdf.

    Every page of the file appears in the result, in order and numbered from
    1; a page without text (or whose extraction failed) has empty text, so
    ``page_count`` is the PDF's page count and citations keep true numbers.
    """

    media_type = PDF

    def __init__(self) -> None:
        route_pypdf_logging()

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
            on_page: Called with (pages parsed, page count) after each page, so a
                long PDF reports progress while it is read.

        Raises:
            EmptyDocument: the file is empty, or no page has text (image-only).
            EncryptedDocument: encrypted and no password, or a wrong one.
            ParseError: the file is too damaged to read.
        """
        if not data:
            raise EmptyDocument("file is empty")
        problems: list[str] = []
        with _quiet_warnings():
            reader = self._open(data, problems)
            self._decrypt(reader, password)
            pages = self._extract(reader, problems, on_page)
        if not any(page.text.strip() for page in pages):
            failures = [problem for problem in problems if problem.startswith("page ")]
            if failures:
                raise ParseError(
                    f"could not extract text from any of the {len(pages)} pages "
                    f"({failures[0]}): the PDF is damaged; re-export or re-download it"
                )
            raise EmptyDocument(_NO_TEXT, details={"pages": len(pages)})
        logger.debug("parsed media_type=%s pages=%d skipped=%d", PDF, len(pages), len(problems))
        return ParsedDocument(media_type=PDF, pages=tuple(pages), warnings=tuple(problems))

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
    def _extract(
        reader: PdfReader,
        problems: list[str],
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[Page]:
        """Text of every page; a page that fails becomes empty plus a warning."""
        try:
            count = len(reader.pages)
        except Exception as exc:
            raise ParseError(
                f"could not read the PDF's page tree ({type(exc).__name__}: {exc}): the file "
                "is corrupt or truncated; re-export or re-download it"
            ) from exc
        pages: list[Page] = []
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
            pages.append(Page(number=number, text=text))
            if on_page is not None:
                on_page(number, count)
        return pages
