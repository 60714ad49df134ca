"""What the viewer shows for a cited page: the PDF page as an image, the text, the highlight.

A citation points at a document, a page and a chunk. For a PDF the page is
rendered to PNG by pypdfium2 and the cited text is located on it, as boxes
in page fractions the browser lays over the image; for every format (and
for scanned pages, whose text came from OCR) the page's indexed text is
returned with the cited chunk's span marked, rebuilt from the stored chunks
(which tile the document's clean text).
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.sniff import PDF
from rag.errors import InvalidInput, PageNotFound, ParseError
from rag.records import ChunkInfo

# Page images are rendered at this many pixels per PDF point (1.5 = 108 dpi):
# sharp on a laptop screen, ~150-300 kB of PNG for a text page.
DEFAULT_SCALE = 1.5
MAX_SCALE = 4.0
# Characters of squashed text (letters and digits only) matched from each end
# of the cited text to find it on the PDF page: long enough to be unique on a
# page, short enough to survive a line break the cleaner re-joined differently.
_ANCHOR_CHARS = 40
_SQUASH = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class PageText:
    """A page's indexed text and where the cited chunk lies in it (``[start, end)``)."""

    text: str
    highlight_start: int | None
    highlight_end: int | None


def _open_pdf(data: bytes) -> object:
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(data)
    except Exception as exc:  # PdfiumError on damage or a password
        raise ParseError(
            f"the PDF cannot be rendered ({exc}): an encrypted or damaged file has no page "
            "images; its text is still shown"
        ) from exc


def _check_page(page: int, count: int) -> None:
    if not 1 <= page <= count:
        raise PageNotFound(f"the document has pages 1 to {count}; there is no page {page}")


def render_page_png(data: bytes, page: int, *, scale: float = DEFAULT_SCALE) -> bytes:
    """PNG bytes of page ``page`` (1-based) of a PDF.

    Raises:
        InvalidInput: the scale is out of range.
        PageNotFound: the page is out of range.
        ParseError: the PDF cannot be opened by pdfium (encrypted, damaged).
    """
    if not 0.25 <= scale <= MAX_SCALE:
        raise InvalidInput(f"scale must be between 0.25 and {MAX_SCALE}, got {scale}")
    document = _open_pdf(data)
    try:
        _check_page(page, len(document))  # type: ignore[arg-type]
        handle = document[page - 1]  # type: ignore[index]
        try:
            image = handle.render(scale=scale).to_pil()
        finally:
            handle.close()
    finally:
        document.close()  # type: ignore[attr-defined]
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _squashed(text: str) -> tuple[str, list[int]]:
    """``text`` case-folded with only letters and digits, and each kept char's index."""
    kept: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        folded = unicodedata.normalize("NFKC", char).casefold()
        for piece in folded:
            if not _SQUASH.fullmatch(piece):
                kept.append(piece)
                where.append(index)
    return "".join(kept), where


def locate(haystack: str, needle: str) -> tuple[int, int] | None:
    """Where ``needle`` lies in ``haystack`` ignoring case, spacing, punctuation, hyphenation.

    The needle's two ends are matched separately, each by the first window of
    ``_ANCHOR_CHARS`` that is found (stepping inwards), so text that
    extraction and cleaning broke differently (a re-joined line, a dropped
    header, a table written as Markdown) is still found. Returns ``[start,
    end)`` in ``haystack``, or None.
    """
    hay, where = _squashed(haystack)
    pin, _ = _squashed(needle)
    if not pin or not hay:
        return None
    size = min(_ANCHOR_CHARS, len(pin))
    step = max(size // 2, 1)
    offsets = range(0, max(len(pin) - size, 0) + 1, step)
    start = next((at for o in offsets if (at := hay.find(pin[o : o + size])) >= 0), -1)
    if start < 0:
        return None
    stop = start + size
    for offset in range(len(pin) - size, -1, -step):
        at = hay.rfind(pin[offset : offset + size], start)
        if at >= 0:
            stop = max(stop, at + size)
            break
    return where[start], where[stop - 1] + 1


def highlight_boxes(data: bytes, page: int, cited: str) -> list[tuple[float, float, float, float]]:
    """Boxes of the cited text on a PDF page, as (left, top, right, bottom) page fractions.

    One box per line the text runs over. Empty when the page has no text
    layer (a scan: its text came from OCR) or the text is not found.

    Raises:
        PageNotFound: the page is out of range.
        ParseError: the PDF cannot be opened by pdfium.
    """
    document = _open_pdf(data)
    try:
        _check_page(page, len(document))  # type: ignore[arg-type]
        handle = document[page - 1]  # type: ignore[index]
        textpage = handle.get_textpage()
        try:
            width, height = handle.get_size()
            count = textpage.count_chars()
            found = locate(textpage.get_text_range(0, count), cited) if count else None
            if found is None:
                return []
            boxes = [textpage.get_charbox(i) for i in range(found[0], found[1])]
        finally:
            textpage.close()
            handle.close()
    finally:
        document.close()  # type: ignore[attr-defined]
    return [
        (left / width, 1 - top / height, right / width, 1 - bottom / height)
        for left, bottom, right, top in _line_boxes(boxes)
    ]


def _line_boxes(
    boxes: Sequence[tuple[float, float, float, float]],
) -> list[tuple[float, float, float, float]]:
    """Character boxes (left, bottom, right, top in PDF points) merged line by line.

    A character that overlaps the current line's band vertically (a
    superscript included) and lies to its right joins it; any other starts a
    new line. Empty boxes (spaces, line breaks) are skipped.
    """
    lines: list[list[float]] = []
    for left, bottom, right, top in boxes:
        if right - left <= 0 or top - bottom <= 0:
            continue
        line = lines[-1] if lines else None
        if line is not None and bottom < line[3] and top > line[1] and left >= line[0] - 1:
            line[0], line[1] = min(line[0], left), min(line[1], bottom)
            line[2], line[3] = max(line[2], right), max(line[3], top)
        else:
            lines.append([left, bottom, right, top])
    return [(a, b, c, d) for a, b, c, d in lines]


def text_on_page(chunk: ChunkInfo, page: int) -> str:
    """The part of a chunk's text that lies on ``page`` (all of it for a one-page chunk)."""
    bounds = [(0, chunk.page_start), *chunk.page_breaks, (len(chunk.text), page + 1)]
    for (start, number), (end, _) in zip(bounds, bounds[1:], strict=False):
        if number == page:
            return chunk.text[start:end]
    return chunk.text


def page_text(chunks: Sequence[ChunkInfo], page: int, cited_chunk_id: int | None) -> PageText:
    """The indexed text around page ``page``, rebuilt from the chunks that touch it.

    Chunks tile the document's clean text once their overlaps are removed;
    their spans (``char_start``/``char_end``) say where each lies, so the text
    is stitched without repeating overlaps or table headers. The highlight is
    the cited chunk's span, when that chunk is among them.
    """
    touching = sorted(
        (chunk for chunk in chunks if chunk.page_start <= page <= chunk.page_end),
        key=lambda chunk: chunk.char_start,
    )
    parts: list[str] = []
    position: int | None = None
    origin = touching[0].char_start if touching else 0
    highlight: tuple[int, int] | None = None
    for chunk in touching:
        start = chunk.char_start if position is None else max(chunk.char_start, position)
        if start < chunk.char_end:
            parts.append(chunk.text[len(chunk.text) - (chunk.char_end - start) :])
            position = chunk.char_end
        if chunk.id == cited_chunk_id:
            highlight = (chunk.char_start - origin, chunk.char_end - origin)
    text = "".join(parts)
    if highlight is None:
        return PageText(text, None, None)
    return PageText(text, max(highlight[0], 0), min(highlight[1], len(text)))


def renders_as_image(media_type: str) -> bool:
    """True for the formats whose pages are rendered as images (PDF)."""
    return media_type == PDF
