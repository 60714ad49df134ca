"""HTML parser: visible text with the block structure kept as blank lines."""

from __future__ import annotations

import logging
import re

from ingest.parsers.text import decode_text
from ingest.sniff import HTML
from rag.errors import EmptyDocument
from rag.types import Page, ParsedDocument

logger = logging.getLogger(__name__)

# Elements whose text is never content a reader sees or asks about.
_DROPPED = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "head")
# Elements that start a new block; each becomes its own paragraph so the
# cleaner does not glue a heading to the paragraph below it.
_BLOCKS = (
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
)
_CELLS = ("td", "th")
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_\-]+)", re.IGNORECASE)
_BLOCK_MARK = "\n\n"


def _decode_html(data: bytes) -> str:
    """Decode with the charset the page declares, else detect it like text."""
    declared = _META_CHARSET.search(data[:4096])
    if declared:
        encoding = declared.group(1).decode("ascii").lower()
        try:
            return data.decode(encoding).lstrip("\ufeff")
        except (LookupError, UnicodeDecodeError):
            logger.debug("declared charset=%s does not decode the page; detecting", encoding)
    return decode_text(data).text


def html_to_text(markup: str) -> str:
    """Visible text of an HTML page: title first, then one paragraph per block.

    Scripts, styles, navigation and comments are dropped; whitespace inside a
    block is collapsed as a browser would, except inside ``<pre>``.
    """
    from bs4 import BeautifulSoup, NavigableString

    soup = BeautifulSoup(markup, "html.parser")
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    for element in soup.find_all(_DROPPED):
        element.decompose()
    for string in soup.find_all(string=True):
        # Comments, the doctype, CDATA and processing instructions are
        # NavigableString subclasses; none of them is visible text.
        if type(string) is not NavigableString:
            string.extract()
        elif string.find_parent("pre") is None:
            string.replace_with(re.sub(r"\s+", " ", str(string)))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for cell in soup.find_all(_CELLS):
        cell.insert_after(" ")
    for block in soup.find_all(_BLOCKS):
        block.insert_before(_BLOCK_MARK)
        block.insert_after(_BLOCK_MARK)

    lines = [line.strip() for line in soup.get_text().split("\n")]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if title and not body.startswith(title):
        return f"{title}\n\n{body}".strip()
    return body


class HtmlParser:
    """HTML pages: one page holding the visible text."""

    media_type = HTML

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Extract the visible text of ``data``; ``password`` is ignored.

        Raises:
            EmptyDocument: the page has no visible text.
        """
        if not data:
            raise EmptyDocument("file is empty")
        text = html_to_text(_decode_html(data))
        if not text:
            raise EmptyDocument("HTML page has no visible text: upload a page with content")
        logger.debug("parsed media_type=%s chars=%d", self.media_type, len(text))
        return ParsedDocument(media_type=self.media_type, pages=(Page(1, text),))
