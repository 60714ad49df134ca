"""Pictures inside Word and PowerPoint files read by OCR, on the page or slide that shows them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ingest.ocr import OcrLine, OcrResult, RapidOcrEngine
from ingest.parsers import DocxParser, PptxParser, get_parser
from ingest.parsers.images import MIN_IMAGE_BYTES, MIN_IMAGE_SIDE_PX, PictureReader
from ingest.sniff import DOCX, PPTX

OFFICE = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "office"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
ENGLISH = "Quarterly revenue 48213"
# The shared zh file's picture: its only copy of these words (no CJK font here to render them).
CHINESE_SOURCE = OFFICE / "zh_docx_table_ocr_test.docx"
CHINESE_WORDS = ("横向文本框", "竖向文本框")


def text_png(text: str, size: tuple[int, int] = (900, 160)) -> bytes:
    """``text`` in black on white, 48 px high, as PNG bytes."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    font = ImageFont.truetype(str(FONT), 48) if FONT.exists() else ImageFont.load_default(48)
    ImageDraw.Draw(image).text((30, 50), text, fill="black", font=font)
    # A little noise, as in a screenshot, also keeps the PNG over MIN_IMAGE_BYTES.
    pixels = np.asarray(image).copy()
    rng = np.random.default_rng(0)
    pixels[rng.random(pixels.shape[:2]) < 0.002] = 200
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def icon_png(side: int = 32) -> bytes:
    """A small noisy square: over MIN_IMAGE_BYTES but under MIN_IMAGE_SIDE_PX on a side."""
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 255, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


class ImageOcr:
    """An engine that 'reads' a fixed text per image width, recording what it was shown."""

    name = "by-width"

    def __init__(self, texts: dict[int, str], confidence: float = 0.8) -> None:
        self.texts = texts
        self.confidence = confidence
        self.shapes: list[tuple[int, ...]] = []

    def read(self, image: np.ndarray) -> OcrResult:
        self.shapes.append(image.shape)
        text = self.texts.get(image.shape[1], "")
        return OcrResult((OcrLine(text, self.confidence),) if text else ())


def build_docx(pictures: list[list[bytes]]) -> bytes:
    """A Word file with one page per entry: a paragraph, then that page's pictures."""
    from docx import Document
    from docx.enum.text import WD_BREAK
    from docx.shared import Inches

    document = Document()
    for number, page in enumerate(pictures, start=1):
        document.add_paragraph(f"Body text of page {number}.")
        for picture in page:
            document.add_picture(io.BytesIO(picture), width=Inches(4))
        if number < len(pictures):
            document.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def build_pptx(pictures: list[list[bytes]]) -> bytes:
    """A deck with one titled slide per entry holding that entry's pictures."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for number, slide_pictures in enumerate(pictures, start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
        slide.shapes.title.text = f"Slide {number}"
        for i, picture in enumerate(slide_pictures):
            slide.shapes.add_picture(io.BytesIO(picture), Inches(1), Inches(2 + 2 * i), Inches(6))
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def chinese_picture() -> bytes:
    with zipfile.ZipFile(CHINESE_SOURCE) as archive:
        return archive.read("word/media/image1.jpeg")


# --- wiring, with an engine that reads by image width (fast) ---------------------


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["docx", "pptx"])
def test_picture_text_lands_on_its_page_with_confidence(kind: str) -> None:
    build, parser_class = (build_docx, DocxParser) if kind == "docx" else (build_pptx, PptxParser)
    data = build([[], [text_png(ENGLISH, (900, 160))]])
    engine = ImageOcr({900: "READ FROM PICTURE"}, confidence=0.75)
    parsed = parser_class(ocr=engine).parse(data)
    first, second = parsed.pages[0], parsed.pages[-1]
    assert "READ FROM PICTURE" not in first.text and first.ocr_confidence is None
    assert "READ FROM PICTURE" in second.text
    assert second.ocr_confidence == pytest.approx(0.75)
    assert second.text.index("READ FROM PICTURE") > second.text.index("2")  # after the text


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["docx", "pptx"])
def test_ocr_off_leaves_pictures_out(kind: str) -> None:
    build, parser_class = (build_docx, DocxParser) if kind == "docx" else (build_pptx, PptxParser)
    parsed = parser_class().parse(build([[text_png(ENGLISH)]]))
    assert all(page.ocr_confidence is None for page in parsed.pages)
    assert ENGLISH not in parsed.pages[0].text


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["docx", "pptx"])
def test_icons_are_skipped_and_pictures_are_bounded(kind: str) -> None:
    build, parser_class = (build_docx, DocxParser) if kind == "docx" else (build_pptx, PptxParser)
    pictures = [text_png(f"picture {i}", (600 + 10 * i, 120)) for i in range(4)]
    tiny = icon_png()
    assert len(tiny) >= MIN_IMAGE_BYTES and MIN_IMAGE_SIDE_PX > 32
    engine = ImageOcr({600 + 10 * i: f"text {i}" for i in range(4)})
    parsed = parser_class(ocr=engine, max_pictures=2).parse(build([[tiny, *pictures]]))
    text = parsed.pages[0].text
    assert "text 0" in text and "text 1" in text and "text 2" not in text
    assert all(shape[1] != 32 for shape in engine.shapes)  # the icon never reached OCR
    assert len(engine.shapes) == 2
    assert any("2 picture(s) not read" in warning for warning in parsed.warnings)


@pytest.mark.unit
def test_reader_skips_small_files_repeats_and_non_images() -> None:
    engine = ImageOcr({900: "once"})
    reader = PictureReader(engine)
    picture = text_png(ENGLISH)
    assert reader.read(b"\x89PNG" + b"\0" * 100, "small") is None
    assert reader.read(b"not an image" * 400, "junk") is None
    first = reader.read(picture, "/word/media/image1.png")
    assert first is not None and first.text == "once"
    assert reader.read(picture, "/word/media/image1.png") is None  # shown twice, placed once
    assert len(engine.shapes) == 1


@pytest.mark.unit
def test_large_pictures_are_scaled_down_for_ocr() -> None:
    from ingest.ocr import MAX_SIDE_PX

    engine = ImageOcr({})
    PictureReader(engine).read(text_png("big", (4000, 300)), "big")
    assert max(engine.shapes[0][:2]) == MAX_SIDE_PX


@pytest.mark.unit
def test_get_parser_hands_the_engine_to_office_parsers() -> None:
    engine = ImageOcr({})
    assert get_parser(DOCX, ocr=engine).ocr is engine  # type: ignore[attr-defined]
    assert get_parser(PPTX, ocr=engine).ocr is engine  # type: ignore[attr-defined]
    assert get_parser(DOCX).ocr is None  # type: ignore[attr-defined]


@pytest.mark.unit
def test_max_pictures_setting_reaches_the_parser_and_zero_reads_none() -> None:
    engine = ImageOcr({900: "READ FROM PICTURE"})
    data = build_docx([[text_png(ENGLISH, (900, 160))]])
    none = get_parser(DOCX, ocr=engine, max_pictures=0)
    assert none.max_pictures == 0  # type: ignore[attr-defined]
    assert "READ FROM PICTURE" not in none.parse(data).pages[0].text
    assert "READ FROM PICTURE" in get_parser(DOCX, ocr=engine).parse(data).pages[0].text


# --- the real engine (RapidOCR) ---------------------------------------------------


@pytest.fixture(scope="module")
def rapidocr() -> RapidOcrEngine:
    pytest.importorskip("rapidocr_onnxruntime")
    return RapidOcrEngine(threads=2)


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["docx", "pptx"])
def test_english_and_chinese_words_in_pictures_are_found(
    kind: str, rapidocr: RapidOcrEngine
) -> None:
    if not CHINESE_SOURCE.exists():
        pytest.skip("shared office datasets not present")
    build, parser_class = (build_docx, DocxParser) if kind == "docx" else (build_pptx, PptxParser)
    data = build([[text_png(ENGLISH)], [chinese_picture()]])
    parsed = parser_class(ocr=rapidocr).parse(data)
    first, second = parsed.pages[0].text, parsed.pages[-1].text
    assert "48213" in first and "revenue" in first.lower()
    assert all(word in second for word in CHINESE_WORDS)
    assert not any(word in first for word in CHINESE_WORDS) and "48213" not in second
    for page in (parsed.pages[0], parsed.pages[-1]):
        assert page.ocr_confidence is not None and page.ocr_confidence > 0.8
    off = parser_class().parse(data)
    assert "48213" not in off.pages[0].text
    assert not any(word in off.pages[-1].text for word in CHINESE_WORDS)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["zh_docx_table_ocr_test.docx", "zh_pptx_table_ocr_test.pptx"])
def test_shared_files_pictures_are_read(name: str, rapidocr: RapidOcrEngine) -> None:
    path = OFFICE / name
    if not path.exists():
        pytest.skip("shared office datasets not present")
    parser = DocxParser(ocr=rapidocr) if name.endswith(".docx") else PptxParser(ocr=rapidocr)
    text = parser.parse(path.read_bytes()).pages[0].text
    assert all(word in text for word in CHINESE_WORDS)
    assert "我是表格1" in text  # the document's own text is still there


# --- through the ingest service ---------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("ocr", [True, False])
def test_ingested_deck_finds_picture_words_with_confidence(tmp_path: Path, ocr: bool) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    from ingest.service import build_ingest_service
    from rag.services import build_services
    from tests.conftest import fast_settings

    services = build_services(fast_settings(tmp_path / "kb", ingest={"ocr": ocr, "ocr_threads": 2}))
    try:
        deck = build_pptx([[], [text_png(ENGLISH)]])
        outcome = build_ingest_service(services).ingest_bytes(deck, "deck.pptx")
        assert outcome.ok, outcome
        chunks = services.kb.document_chunks(outcome.document_id)
        with_words = [c for c in chunks if "48213" in c.text]
        if ocr:
            assert with_words
            for (
                chunk
            ) in with_words:  # a small deck is one chunk: the words are past slide 2's start
                start = dict((n, o) for o, n in chunk.page_breaks).get(2, 0)
                assert chunk.page_end == 2 and chunk.text.index("48213") >= start
                assert chunk.ocr_confidence is not None and chunk.ocr_confidence > 0.8
            hits = services.retriever().retrieve("48213", top_k=3, mode="sparse").hits
            assert hits and hits[0].page_end == 2
        else:
            assert not with_words and all(c.ocr_confidence is None for c in chunks)
    finally:
        services.close()


def build_odt(picture: bytes) -> bytes:
    """A minimal OpenDocument text: a paragraph, then a paragraph holding a framed picture."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
        ' xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"'
        ' xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.2">'
        "<office:body><office:text><text:p>Opening paragraph.</text:p>"
        '<text:list><text:list-item><text:p>Item with a picture<draw:frame draw:name="f1">'
        '<draw:image xlink:href="Pictures/scan.png" xlink:type="simple"/></draw:frame>'
        "</text:p></text:list-item></text:list>"
        "</office:text></office:body></office:document-content>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
        archive.writestr("Pictures/scan.png", picture)
    return out.getvalue()


@pytest.mark.unit
def test_odt_pictures_are_read_after_their_paragraph() -> None:
    from ingest.parsers import OdtParser

    data = build_odt(text_png(ENGLISH))
    engine = ImageOcr({900: "READ FROM PICTURE"}, confidence=0.7)
    page = OdtParser(ocr=engine).parse(data).pages[0]
    assert "- Item with a picture\n\nREAD FROM PICTURE" in page.text
    assert page.ocr_confidence == pytest.approx(0.7)
    off = OdtParser().parse(data).pages[0]
    assert "READ FROM PICTURE" not in off.text and off.ocr_confidence is None
    assert get_parser("application/vnd.oasis.opendocument.text", ocr=engine).ocr is engine  # type: ignore[attr-defined]
