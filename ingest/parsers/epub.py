"""EPUB (2 and 3) parser: the chapters in spine order through the HTML parser.

An EPUB is a ZIP archive: ``META-INF/container.xml`` names the package
document (OPF), whose manifest lists the files and whose spine gives the
reading order. Each spine document becomes one page (a chapter, or a part of
one, as the book splits them); EPUB 3 navigation documents (``nav``) and the
EPUB 2 NCX are tables of contents, not text, and are skipped. The book's
title, authors and description from the OPF metadata open page 1.

With an OCR engine, the pictures a chapter shows (HTML ``<img>``, SVG
``<image>``, as covers and scanned pages often are) are read from the archive
and their text placed where the picture stands, as its own paragraph, with
the page's confidence the lowest of its pictures' (see
``ingest.parsers.images``). Linked pictures (``http:``, ``data:``, absolute
paths) are not fetched.
"""

from __future__ import annotations

import io
import logging
import posixpath
import zipfile
import zlib
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

from ingest.parsers.html import PictureText, decode_html, html_to_text
from ingest.parsers.images import PictureOcrParser, PictureReader
from ingest.sniff import EPUB, corrupt_archive
from rag.errors import EmptyDocument, ParseError
from rag.types import Page, ParsedDocument

if TYPE_CHECKING:
    from bs4 import Tag


logger = logging.getLogger(__name__)

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_HTML_TYPES = frozenset({"application/xhtml+xml", "text/html", "application/xml"})
# The OPF metadata shown at the start of the book, in this order.
_METADATA = ("title", "creator", "description", "subject")
# A chapter larger than this is not a chapter; never inflate more.
_MEMBER_LIMIT = 64 * 1024 * 1024
# A picture file larger than this is not inflated for OCR (as for ODT).
_PICTURE_LIMIT = 64 * 1024 * 1024


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


def picture_path(document: str, link: str) -> str | None:
    """Archive path of the picture ``link`` in ``document`` points at; None when not in the book.

    The link is relative to the document's folder, its ``#fragment`` dropped
    and then percent-decoded; links with a scheme (``http:``, ``data:``),
    absolute paths and paths climbing out of the archive are not in the book.
    """
    link = link.strip().split("#", 1)[0]
    if not link or link.startswith("/") or urlsplit(link).scheme:
        return None
    path = posixpath.normpath(posixpath.join(posixpath.dirname(document), unquote(link)))
    if path == ".." or path.startswith(("../", "/")):
        return None
    return path


def archive_pictures(
    archive: zipfile.ZipFile, document: str, reader: PictureReader, confidences: list[float]
) -> PictureText:
    """OCR text of the pictures ``document`` shows, for ``html_to_text``.

    Args:
        archive: The book.
        document: The spine document's archive path (links are relative to it).
        reader: Reads the pictures within the book's budget.
        confidences: Receives the confidence of each picture read.
    """

    def read(picture: Tag) -> str | None:
        if picture.name == "img":
            link = picture.get("src")
        else:  # SVG <image>: SVG 2's href, or SVG 1.1's xlink:href
            link = picture.get("href") or picture.get("xlink:href")
        name = picture_path(document, str(link)) if isinstance(link, str) else None
        if name is None:
            return None
        try:
            if archive.getinfo(name).file_size > _PICTURE_LIMIT:
                logger.debug("picture skipped key=%s reason=too_large", name)
                return None
            data = archive.read(name)
        except (KeyError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError, zlib.error):
            logger.debug("picture skipped key=%s reason=unreadable_member", name)
            return None
        block = reader.read(data, key=name)
        if block is None:
            return None
        if block.confidence is not None:
            confidences.append(block.confidence)
        return block.text

    return read


class EpubParser(PictureOcrParser):
    """EPUB e-books: one page per spine document.

    Args:
        ocr: Reads the text of the pictures in the book; None (the default)
            leaves pictures out.
        max_pictures: Most pictures read by OCR in one book.
    """

    media_type = EPUB

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Text of the book's documents in reading order; ``password`` is ignored.

        Raises:
            ParseError: the archive or its package document is damaged.
            EmptyDocument: no document holds text (an image-only book without
                OCR, or whose pictures OCR finds no text in).
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
            reader = PictureReader(self.ocr, self.max_pictures) if self.ocr is not None else None
            texts: list[str] = []
            confidences: list[float | None] = []
            for name in documents:
                try:
                    markup = decode_html(_read(archive, name))
                except ParseError:
                    logger.debug("epub spine document missing name=%s", name)
                    texts.append("")
                    confidences.append(None)
                    continue
                sure: list[float] = []
                pictures = None if reader is None else archive_pictures(archive, name, reader, sure)
                texts.append(html_to_text(markup, title=False, pictures=pictures))
                confidences.append(min(sure) if sure else None)
        front = "\n\n".join(metadata_lines(package))
        if front and texts:
            texts[0] = f"{front}\n\n{texts[0]}"
        elif front:
            texts, confidences = [front], [None]
        pages = tuple(
            Page(i, text, ocr_confidence=confidence)
            for i, (text, confidence) in enumerate(zip(texts, confidences, strict=True), start=1)
        )
        if not any(page.text.strip() for page in pages):
            raise EmptyDocument("the EPUB's documents hold no text: upload a book with text")
        logger.debug(
            "parsed media_type=%s documents=%d pictures_read=%d",
            self.media_type,
            len(pages),
            reader.read_count if reader is not None else 0,
        )
        warnings = reader.all_warnings() if reader is not None else ()
        return ParsedDocument(media_type=self.media_type, pages=pages, warnings=warnings)
