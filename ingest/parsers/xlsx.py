"""Excel (.xlsx) parser built on openpyxl in read-only mode: one page per sheet.

Each page starts with the sheet's name as a heading, then its tables: runs
of rows between empty rows, each with its header row found below any title
or summary lines (see ``ingest.parsers.tables``), rendered as Markdown
tables (the chunker repeats the header in every chunk). Cached formula results are
read, not formulas. A merged range holds its value in its first cell only,
so its text appears once; merged title rows above a table become plain text.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import zipfile

from ingest.parsers.blocks import heading
from ingest.parsers.crypto import office_package
from ingest.parsers.tables import render_grid
from ingest.sniff import XLSX, corrupt_archive
from rag.errors import EmptyDocument, ParseError
from rag.types import Page, ParsedDocument

logger = logging.getLogger(__name__)

# A sheet with more cells than this is read up to it, with a warning: the
# rest would be numbers nobody asks a knowledge base about.
MAX_CELLS_PER_SHEET = 2_000_000

CellValue = str | int | float | bool | dt.datetime | dt.date | dt.time | dt.timedelta | None


def cell_string(value: CellValue) -> str:
    """A cell value as the text a reader sees: 12553 not 12553.0, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


class XlsxParser:
    """Excel workbooks (.xlsx, .xlsm), encrypted ones with their password."""

    media_type = XLSX

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """One page per sheet (hidden sheets too), in workbook order.

        Raises:
            EncryptedDocument: encrypted and no (right) password.
            ParseError: not a readable workbook.
            EmptyDocument: no sheet holds a value.
        """
        if not data:
            raise EmptyDocument("file is empty")
        from openpyxl import load_workbook

        package = office_package(data, password)
        try:
            workbook = load_workbook(io.BytesIO(package), read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, EOFError) as exc:
            raise corrupt_archive(None, str(exc) or type(exc).__name__) from exc
        except Exception as exc:  # openpyxl raises many types on damaged parts
            raise ParseError(
                f"could not read the workbook ({type(exc).__name__}: {exc}): it is damaged; "
                "open and re-save it, or upload an intact copy"
            ) from exc
        warnings: list[str] = []
        pages: list[Page] = []
        try:
            for number, sheet in enumerate(workbook.worksheets, start=1):
                rows: list[list[str]] = []
                cells = 0
                for values in sheet.iter_rows(values_only=True):
                    rows.append([cell_string(value) for value in values])
                    cells += len(values)
                    if cells > MAX_CELLS_PER_SHEET:
                        warnings.append(
                            f"sheet {sheet.title!r} has over {MAX_CELLS_PER_SHEET} cells; "
                            f"only its first {len(rows)} rows were read"
                        )
                        break
                body = render_grid(rows)
                pages.append(Page(number, f"{heading(1, sheet.title)}\n\n{body}".strip()))
        finally:
            workbook.close()
        if not any(page.text.count("\n") for page in pages):
            raise EmptyDocument("the workbook's sheets hold no values: upload a filled workbook")
        logger.debug("parsed media_type=%s sheets=%d", self.media_type, len(pages))
        return ParsedDocument(
            media_type=self.media_type, pages=tuple(pages), warnings=tuple(warnings)
        )
