"""EPUB (2 and 3) parser: the chapters in spine order through the HTML parser.

An EPUB is a ZIP archive: ``META-INF/container.xml`` names the package
document (OPF), whose manifest lists the files and whose spine gives the
reading order. Each spine document becomes one page (a chapter, or a part of
one, as the book splits them); EPUB 3 navigation documents (``nav``) and the
EPUB 2 NCX are tables of contents, not text, and are skipped. The book's
title, authors and description from the OPF metadata open page 1.
"""

from __future__ import annotations

import io
import logging
import posixpath
import zipfile
from urllib.parse import unquote
from xml.etree import ElementTree

from ingest.parsers.html import decode_html, html_to_text
from ingest.sniff import EPUB, corrupt_archive
from rag.errors import EmptyDocument, ParseError
from rag.types import Page, ParsedDocument

logger = logging.getLogger(__name__)

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html", "application/xml"})
# The OPF metadata shown at the start of the book, in this order.
_METADATA = ("title", "creator", "description", "subject")
# A chapter larger than this is not a chapter; never inflate more.
_MEMBER_LIMIT = 64 * 1024 * 1024


def _xml(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(_read(archive, name))
    except ElementTree.ParseError as exc:
        raise ParseError(
            f"the EPUB's {name} is not well-formed XML ({exc}): the book is damaged; "
            "re-export or re-download it"
        ) from exc


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        if archive.getinfo(name).file_size > _MEMBER_LIMIT:
            raise ParseError(f"the EPUB member {name} is over {_MEMBER_LIMIT // 2**20} MiB")
        return archive.read(name)
    except KeyError as exc:
        raise ParseError(
            f"the EPUB lacks {name}, which its package names: the book is damaged; "
            "re-export or re-download it"
        ) from exc


def package_path(archive: zipfile.ZipFile) -> str:
    """Path of the OPF package document (from container.xml, else the first .opf)."""
    if "META-INF/container.xml" in archive.namelist():
        rootfile = _xml(archive, "META-INF/container.xml").find(f".//{_CONTAINER}rootfile")
        if rootfile is not None and rootfile.get("full-path"):
            return str(rootfile.get("full-path"))
    opf = next((name for name in archive.namelist() if name.endswith(".opf")), None)
    if opf is None:
        raise ParseError("the EPUB has no package document (.opf): the book is damaged")
    return opf


def spine_documents(package: ElementTree.Element, base: str) -> list[str]:
    """Archive paths of the spine's HTML documents in reading order, navigation skipped."""
    manifest = {
        item.get("id"): item for item in package.iter(f"{_OPF}item") if item.get("id") is not None
    }
    paths = []
    for itemref in package.iter(f"{_OPF}itemref"):
        item = manifest.get(itemref.get("idref"))
        if item is None or item.get("media-type") not in _HTML_TYPES:
            continue
        if "nav" in (item.get("properties") or "").split():
            continue
        href = unquote(item.get("href") or "").split("#", 1)[0]
        paths.append(posixpath.normpath(posixpath.join(base, href)))
    return paths


def metadata_lines(package: ElementTree.Element) -> list[str]:
    """Title, authors, description and subjects from the OPF metadata."""
    lines = []
    for field in _METADATA:
        for element in package.iter(f"{_DC}{field}"):
            text = " ".join("".join(element.itertext()).split())
            if text:
                lines.append(html_to_text(text) if "<" in text else text)
    return lines


class EpubParser:
    """EPUB e-books: one page per spine document."""

    media_type = EPUB

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Text of the book's documents in reading order; ``password`` is ignored.

        Raises:
            ParseError: the archive or its package document is damaged.
            EmptyDocument: no document holds text (an image-only book).
        """
        if not data:
            raise EmptyDocument("file is empty")
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, EOFError, ValueError) as exc:
            raise corrupt_archive(None, str(exc) or type(exc).__name__) from exc
        with archive:
            opf = package_path(archive)
            package = _xml(archive, opf)
            documents = spine_documents(package, posixpath.dirname(opf))
            texts = []
            for name in documents:
                try:
                    texts.append(html_to_text(decode_html(_read(archive, name)), title=False))
                except ParseError:
                    logger.debug("epub spine document missing name=%s", name)
                    texts.append("")
        front = "\n\n".join(metadata_lines(package))
        if front:
            texts = [f"{front}\n\n{texts[0]}" if texts else front, *texts[1:]]
        pages = tuple(Page(i, text) for i, text in enumerate(texts, start=1))
        if not any(page.text.strip() for page in pages):
            raise EmptyDocument("the EPUB's documents hold no text: upload a book with text")
        logger.debug("parsed media_type=%s documents=%d", self.media_type, len(pages))
        return ParsedDocument(media_type=self.media_type, pages=pages)
