"""OCR of the pictures inside office documents (screenshots, scanned figures, slides).

A Word file or a deck often carries its most searchable text in pictures: a
pasted screenshot, a scanned form, a diagram with labels. With OCR on, each
picture large enough to hold text is read by the OCR engine (``ingest.ocr``)
and its text placed where the picture appears, as its own block, with the
engine's confidence; the page then carries the lowest confidence of its
pictures, as a scanned PDF page carries its own.

Bounds, so that a 500-picture deck cannot take an hour (each picture costs
0.2-2 s of OCR on two cores): pictures under MIN_IMAGE_SIDE_PX on a side or
under MIN_IMAGE_BYTES are icons, bullets or rules and are skipped; at most
MAX_IMAGES_PER_DOCUMENT pictures are read per document (the first ones in
reading order; a warning names how many were left out); a picture used more
than once (a logo on every slide) is read and placed once.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ingest.ocr import MAX_SIDE_PX
from rag.errors import ConfigError

if TYPE_CHECKING:
    from ingest.ocr import OcrEngine

logger = logging.getLogger(__name__)

# Most pictures OCR'd in one document. 30 pictures at up to ~2 s each keeps
# the worst case near a minute on two cores. (A setting would be
# RAG_INGEST__OCR_MAX_IMAGES; until it exists this constant is the limit.)
MAX_IMAGES_PER_DOCUMENT = 30
# Text needs at least one line of ~20 px glyphs (PP-OCRv4's detector works on
# 20-40 px text): a picture narrower or lower than this is an icon or a rule.
MIN_IMAGE_SIDE_PX = 64
# Under this a PNG or JPEG is a flat icon or a bullet; skipped before decoding.
MIN_IMAGE_BYTES = 2048


class PictureOcrParser:
    """What the parsers that read a document's pictures by OCR share (DOCX, PPTX, ODT, EPUB).

    Args:
        ocr: Reads the text of the pictures; None leaves pictures to their
            descriptions (alt text), as with OCR off.
        max_pictures: Most pictures read by OCR in one document.

    Raises:
        ConfigError: ``max_pictures`` is negative.
    """

    def __init__(
        self, ocr: OcrEngine | None = None, *, max_pictures: int = MAX_IMAGES_PER_DOCUMENT
    ) -> None:
        if max_pictures < 0:
            raise ConfigError(f"max_pictures must be >= 0, got {max_pictures}")
        self.ocr = ocr
        self.max_pictures = max_pictures


@dataclass(frozen=True)
class OcrBlock:
    """Text read by OCR from one picture, and the engine's confidence (0-1)."""

    text: str
    confidence: float | None


@dataclass
class PictureReader:
    """Reads the pictures of one document within the budget; one per parse.

    Args:
        engine: The OCR engine.
        limit: Most pictures read (MAX_IMAGES_PER_DOCUMENT by default).
    """

    engine: OcrEngine
    limit: int = MAX_IMAGES_PER_DOCUMENT
    read_count: int = 0
    left_out: int = 0
    warnings: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def read(self, data: bytes, key: str) -> OcrBlock | None:
        """The text of one picture, None when it is skipped or holds no text.

        Args:
            data: The picture file's bytes (PNG, JPEG, GIF, BMP, TIFF...).
            key: Names the picture within the document (its part name), so a
                picture shown twice is read once.
        """
        if key in self._seen or len(data) < MIN_IMAGE_BYTES:
            return None
        self._seen.add(key)
        image = _decode(data)
        if image is None:
            logger.debug("picture skipped key=%s reason=undecodable", key)
            return None
        height, width = image.shape[:2]
        if min(height, width) < MIN_IMAGE_SIDE_PX:
            return None
        if self.read_count >= self.limit:
            self.left_out += 1
            return None
        self.read_count += 1
        try:
            result = self.engine.read(image)
        except Exception as exc:  # noqa: BLE001 - one bad picture must not fail the document
            self.warnings.append(f"picture {key}: OCR failed ({type(exc).__name__}: {exc})")
            logger.warning("picture ocr failed key=%s: %s", key, exc)
            return None
        text = result.text.strip()
        logger.debug(
            "picture ocr key=%s lines=%d confidence=%s", key, len(result.lines), result.confidence
        )
        return OcrBlock(text, result.confidence) if text else None

    def all_warnings(self) -> tuple[str, ...]:
        """Warnings for the parse result: failures, and pictures over the limit."""
        extra = []
        if self.left_out:
            extra.append(
                f"{self.left_out} picture(s) not read by OCR: the limit is "
                f"{self.limit} pictures per document"
            )
        return (*self.warnings, *extra)


def _decode(data: bytes) -> np.ndarray | None:
    """RGB pixels of a picture, long side capped at MAX_SIDE_PX; None if Pillow cannot read it.

    Vector pictures (EMF, WMF, SVG) are not read: Pillow cannot rasterise them.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (MAX_SIDE_PX, MAX_SIDE_PX))  # JPEG: decode at reduced size
            picture = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    longest = max(picture.size)
    if longest > MAX_SIDE_PX:
        scale = MAX_SIDE_PX / longest
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(picture)
