"""OCR of page images with RapidOCR (PP-OCRv4 Chinese + English, on ONNX Runtime).

Scanned PDF pages have no text layer, and some PDFs carry a text layer that
is garbage (broken font maps); both are read from their rendered image
instead. The models ship inside the ``rapidocr-onnxruntime`` wheel, so OCR
needs no download.

ONNX Runtime's worker threads spin while they wait for work; in a process
that also runs torch (the embedder) that slowed torch about 4x (see
``rag/onnx_encoder.py``). Every session here is rebuilt with spin-waiting off
and a fixed number of intra-op threads.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError, ParseError

if TYPE_CHECKING:  # imported when OCR runs, not at import time
    from rag.settings import IngestSettings

logger = logging.getLogger(__name__)

# Scanned pages are rendered at this resolution. PP-OCRv4's detector works
# best with text 20-40 px high; body text (10-12 pt) at 150 dpi is ~25-30 px,
# and 150 dpi keeps an A4 page at 1240 x 1754 px (the detector's time grows
# with the pixel count).
RENDER_DPI = 150
# PDF user space has 72 units per inch: pypdfium2's scale 1.0 is 72 dpi.
_PDF_UNITS_PER_INCH = 72
# Pages are capped at this many pixels on the long side, whatever their size
# in points (a 17-inch scan page would otherwise be 2,550 px tall at 150 dpi).
MAX_SIDE_PX = 2000

_INSTALL_HINT = "pip install rapidocr-onnxruntime (or turn OCR off: RAG_INGEST__OCR=false)"


@dataclass(frozen=True)
class OcrLine:
    """One detected line of text: what was read, how sure the model is, where it is.

    ``box`` is the line's quadrilateral in image pixels, clockwise from top-left.
    """

    text: str
    confidence: float
    box: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class OcrResult:
    """The lines read from one image, in reading order (top to bottom)."""

    lines: tuple[OcrLine, ...]

    @property
    def text(self) -> str:
        """The lines joined by newlines (the cleaner rebuilds paragraphs)."""
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float | None:
        """Mean line confidence weighted by characters; None when nothing was read.

        Weighting by length keeps a misread page number from counting as much
        as a long line of body text.
        """
        total = sum(len(line.text) for line in self.lines)
        if total == 0:
            return None
        return sum(line.confidence * len(line.text) for line in self.lines) / total


@runtime_checkable
class OcrEngine(Protocol):
    """Reads text from an image.

    Contract: ``read`` takes an RGB image as a ``uint8`` array of shape
    (height, width, 3) and returns its lines top to bottom; an image without
    text gives an empty result, never an error.
    """

    name: str

    def read(self, image: np.ndarray) -> OcrResult:
        """The text lines of ``image``."""
        ...


class RapidOcrEngine:
    """RapidOCR's PP-OCRv4 detection, orientation and recognition models.

    The models are loaded on first use (about a second), once per engine;
    calls are serialised, since two OCR runs on two cores are no faster than
    one after the other.

    Args:
        threads: ONNX Runtime intra-op threads per model (0: all cores).
        min_confidence: Lines read with less confidence are dropped (RapidOCR's
            own default is 0.5).
    """

    name = "rapidocr-ppocrv4"

    def __init__(self, threads: int = 0, min_confidence: float = 0.5) -> None:
        if threads < 0:
            raise ConfigError(f"OCR threads must be >= 0 (0 = all cores), got {threads}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ConfigError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        self.threads = threads or (os.cpu_count() or 1)
        self.min_confidence = min_confidence
        self._ocr: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        """The RapidOCR pipeline with its sessions rebuilt without spin-waiting."""
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ConfigError(f"OCR is unavailable ({exc}): {_INSTALL_HINT}") from exc
        ocr = RapidOCR(
            intra_op_num_threads=self.threads,
            inter_op_num_threads=1,
            text_score=self.min_confidence,
        )
        for model in (ocr.text_det.infer, ocr.text_cls.infer, ocr.text_rec.session):
            model.session = self._quiet_session(model.session)
        logger.debug("ocr loaded engine=%s threads=%d", self.name, self.threads)
        return ocr

    def _quiet_session(self, session: Any) -> Any:
        """The same model in a session with fixed threads and no spin-waiting."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        return ort.InferenceSession(
            session._model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )

    def read(self, image: np.ndarray) -> OcrResult:
        """The text lines of an RGB ``uint8`` image, top to bottom."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ParseError(
                f"OCR needs an RGB uint8 image of shape (h, w, 3), got {image.dtype} "
                f"{image.shape}: convert the image to RGB first"
            )
        with self._lock:
            if self._ocr is None:
                self._ocr = self._load()
            # RapidOCR expects OpenCV's channel order (BGR).
            found, _ = self._ocr(np.ascontiguousarray(image[:, :, ::-1]))
        return OcrResult(tuple(_line(item) for item in found or ()))


def _line(item: Sequence[Any]) -> OcrLine:
    """One RapidOCR result ``[box, text, score]`` as an :class:`OcrLine`."""
    box, text, score = item
    points = tuple((float(x), float(y)) for x, y in box)
    return OcrLine(text=str(text).strip(), confidence=float(score), box=points)


def build_ocr_engine(settings: IngestSettings) -> OcrEngine | None:
    """The OCR engine the settings ask for; None when OCR is turned off."""
    if not settings.ocr:
        return None
    return RapidOcrEngine(threads=settings.ocr_threads)


def image_from_bytes(data: bytes) -> np.ndarray:
    """Decode PNG, JPEG, TIFF, BMP... bytes to an RGB ``uint8`` array.

    Raises:
        ParseError: the bytes are not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ParseError(
            f"could not decode the image for OCR ({type(exc).__name__}: {exc}): "
            "the image is corrupt or in a format Pillow cannot read"
        ) from exc


def ocr_image_bytes(data: bytes, engine: OcrEngine) -> OcrResult:
    """OCR an image file's bytes (for parsers that meet images inside documents).

    Raises:
        ParseError: the bytes are not a readable image.
    """
    return engine.read(image_from_bytes(data))


def render_scale(width_pt: float, height_pt: float) -> float:
    """pypdfium2 scale that renders a page at RENDER_DPI, long side capped at MAX_SIDE_PX."""
    scale = RENDER_DPI / _PDF_UNITS_PER_INCH
    longest = max(width_pt, height_pt, 1.0)
    return min(scale, MAX_SIDE_PX / longest)


def render_pdf_page(document: Any, index: int, *, scale: float | None = None) -> np.ndarray:
    """Render page ``index`` (0-based) of a ``pypdfium2.PdfDocument`` to RGB pixels.

    Args:
        document: An open ``pypdfium2.PdfDocument``.
        index: The page, from 0.
        scale: Pixels per PDF unit; default: :func:`render_scale` of the page.
    """
    page = document[index]
    try:
        if scale is None:
            scale = render_scale(*page.get_size())
        bitmap = page.render(scale=scale)
        return np.asarray(bitmap.to_pil().convert("RGB"))
    finally:
        page.close()
