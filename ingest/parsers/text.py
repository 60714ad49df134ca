"""Plain-text and Markdown parsers, with encoding detection.

Chinese users often upload files saved by Windows tools in GBK/GB18030, and
Windows editors add byte-order marks, so decoding tries the likely encodings
strictly before asking charset-normalizer to guess.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ingest.sniff import BOMS, MARKDOWN, TEXT
from rag.errors import EmptyDocument, ParseError
from rag.types import Page, ParsedDocument

logger = logging.getLogger(__name__)


_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True)
class DecodedText:
    """Text decoded from bytes and the encoding that decoded it."""

    text: str
    encoding: str
    guessed: bool = False


def decode_text(data: bytes) -> DecodedText:
    """Decode ``data`` as text: BOM, then UTF-8, then GB18030, then a guess.

    GB18030 is a superset of GBK and GB2312, so one strict attempt covers the
    Chinese legacy encodings. A file that is neither is handed to
    charset-normalizer.

    Returns:
        The text (BOM removed, newlines normalised to LF) and its encoding.

    Raises:
        ParseError: no encoding decodes the bytes.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return DecodedText(_newlines(data[len(bom) :].decode(encoding)), encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(
                    f"file starts with a {encoding} byte-order mark but is not valid "
                    f"{encoding} ({exc.reason} at byte {exc.start}): re-save it as UTF-8"
                ) from exc
    try:
        return DecodedText(_newlines(data.decode("utf-8")), "utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        pass
    else:
        # Big5 and other legacy bytes often decode as GB18030 too, landing in
        # its user-defined (private use) areas, which real Chinese text avoids.
        if not _PRIVATE_USE.search(text):
            return DecodedText(_newlines(text), "gb18030")
    return _guess(data)


def _guess(data: bytes) -> DecodedText:
    """Ask charset-normalizer; fall back to UTF-8 with replacement characters."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and best.encoding:
        logger.debug("guessed encoding=%s", best.encoding)
        return DecodedText(_newlines(str(best)), best.encoding, guessed=True)
    logger.warning("could not detect the encoding; decoding as UTF-8 with replacements")
    return DecodedText(_newlines(data.decode("utf-8", errors="replace")), "utf-8", guessed=True)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Markdown constructs removed or unwrapped by strip_markdown, in order.
_FENCE = re.compile(r"^[ \t]*(```|~~~).*$\n?", re.MULTILINE)
_SETEXT_OR_RULE = re.compile(r"^[ \t]*(?:={3,}|-{3,}|\*{3,}|_{3,})[ \t]*$\n?", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_REF_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]+\S+.*$\n?", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_BLOCKQUOTE = re.compile(r"^[ \t]{0,3}>[ \t]?", re.MULTILINE)
_TABLE_RULE = re.compile(
    r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$\n?", re.MULTILINE
)
_TABLE_EDGE = re.compile(r"^[ \t]*\|[ \t]?|[ \t]?\|[ \t]*$", re.MULTILINE)
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_CODE = re.compile(r"`([^`\n]+)`")


def strip_markdown(text: str) -> str:
    """Remove Markdown markup that carries no meaning for retrieval.

    Headings lose their ``#``, emphasis and code markers go, links and images
    keep their text and drop the URL, fences, rules and table separator rows
    are removed. The words themselves are never changed.
    """
    text = _FENCE.sub("", text)
    text = _TABLE_RULE.sub("", text)
    text = _SETEXT_OR_RULE.sub("", text)
    text = _HEADING.sub(r"\1", text)
    text = _REF_DEFINITION.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _BLOCKQUOTE.sub("", text)
    text = _TABLE_EDGE.sub("", text)
    text = _STRONG.sub(r"\2", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _STRIKE.sub(r"\1", text)
    return _CODE.sub(r"\1", text)


def _single_page(media_type: str, text: str, decoded: DecodedText) -> ParsedDocument:
    if not text.strip():
        raise EmptyDocument("file holds no text (only whitespace): upload a file with content")
    warnings: tuple[str, ...] = ()
    if decoded.guessed:
        warnings = (f"encoding guessed as {decoded.encoding}; save the file as UTF-8 to be sure",)
    logger.debug(
        "parsed media_type=%s encoding=%s chars=%d", media_type, decoded.encoding, len(text)
    )
    return ParsedDocument(media_type=media_type, pages=(Page(1, text),), warnings=warnings)


class TextParser:
    """Plain text: one page holding the decoded text."""

    media_type = TEXT

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Decode ``data``; ``password`` is ignored (text files are never encrypted).

        Raises:
            EmptyDocument: the file is empty or whitespace only.
            ParseError: the bytes cannot be decoded.
        """
        if not data:
            raise EmptyDocument("file is empty")
        decoded = decode_text(data)
        return _single_page(self.media_type, decoded.text, decoded)


class MarkdownParser:
    """Markdown: one page holding the text with markup noise stripped."""

    media_type = MARKDOWN

    def parse(self, data: bytes, *, password: str | None = None) -> ParsedDocument:
        """Decode ``data`` and strip Markdown markup; ``password`` is ignored.

        Raises:
            EmptyDocument: the file is empty or holds only markup.
            ParseError: the bytes cannot be decoded.
        """
        if not data:
            raise EmptyDocument("file is empty")
        decoded = decode_text(data)
        return _single_page(self.media_type, strip_markdown(decoded.text), decoded)
