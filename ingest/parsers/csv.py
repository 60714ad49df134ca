"""CSV/TSV parser: encoding and delimiter detected, rows as Markdown tables.

Bill exports and Excel "Save as CSV" files are often GBK/GB18030 without a
byte-order mark and start with lines of prose above the header; the text is
decoded like any text file (BOM, UTF-8, GB18030, then a guess) and rendered
by ``ingest.parsers.tables``: preamble lines as text, then the table as
Markdown, which the chunker cuts between rows with the header repeated, so
every chunk of a long table carries its column names.
"""

from __future__ import annotations

import csv
import io
import logging
import sys

from ingest.parsers.tables import render_grid
from ingest.parsers.text import decode_text
from ingest.sniff import CSV, csv_delimiter
from rag.errors import EmptyDocument, ParseError
from rag.types import Page, ParsedDocument

logger = logging.getLogger(__name__)

# How much of the text the delimiter is chosen from.
_SNIFF_CHARS = 64 * 1024


class CsvParser:
    """Delimited text (comma, tab, semicolon or pipe): one page holding the tables."""

    media_type = CSV

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Decode ``data``, split it into rows and render them; ``password`` is ignored.

        Raises:
            EmptyDocument: the file holds no cell with text.
            ParseError: the bytes cannot be decoded or split.
        """
        if not data:
            raise EmptyDocument("file is empty")
        decoded = decode_text(data)
        delimiter, _ = csv_delimiter(decoded.text[:_SNIFF_CHARS])
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # one long cell is still text
        try:
            rows = list(csv.reader(io.StringIO(decoded.text, newline=""), delimiter=delimiter))
        except csv.Error as exc:
            raise ParseError(
                f"could not split the CSV file into rows ({exc}): check its quoting, or save "
                "it again from the spreadsheet"
            ) from exc
        text = render_grid(rows)
        if not text.strip():
            raise EmptyDocument("CSV file holds no values: upload a file with content")
        warnings: tuple[str, ...] = ()
        if decoded.guessed:
            warnings = (
                f"encoding guessed as {decoded.encoding}; save the file as UTF-8 to be sure",
            )
        logger.debug(
            "parsed media_type=%s encoding=%s delimiter=%r rows=%d",
            self.media_type,
            decoded.encoding,
            delimiter,
            len(rows),
        )
        return ParsedDocument(media_type=self.media_type, pages=(Page(1, text),), warnings=warnings)
