"""OCR: the scanned shared PDF becomes searchable, page by page, with its confidence recorded."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from ingest.ocr import (
    MAX_SIDE_PX,
    OcrEngine,
    OcrLine,
    OcrResult,
    RapidOcrEngine,
    image_from_bytes,
    ocr_image_bytes,
    render_pdf_page,
    render_scale,
)
from ingest.service import IngestProgress, build_ingest_service
from rag.errors import ConfigError, ParseError
from rag.services import build_services
from tests.conftest import fast_settings

SCANNED = "scanned_image-only_mineru-small-ocr.pdf"
# Read by eye from the rendered page images (pypdfium2, then viewed as PNG), four
# pages of the eight: Marx, Capital vol. 1, Chinese edition pp. 12, 15, 17, 19,
# body text and footnotes. Chosen before comparing with any OCR output.
HAND_CHECKED_WORDS = {
    1: [
        "第一篇", "商品和货币", "使用价值", "交换价值", "商品体", "金钢石", "一吨铁", "商品学",
        "承担者", "巴尔本", "磁石吸铁", "1696", "洛克", "日耳曼语源", "罗马语源", "推托",
        "百科全书", "重农学派", "1846",
    ],
    4: [
        "升华物", "无差别的劳动", "人类劳动力", "社会实体", "劳动时间", "越懒", "不熟练",
        "社会平均", "必要劳动时间", "蒸汽织布机", "手工织布工人", "以前价值的一半",
    ],
    6: [
        "金刚石", "劳动生产力", "成正比", "成反比", "价值实体", "天然草地", "处女地", "有用物",
        "二重性", "马克思", "政治经济学批判", "1859",
    ],
    8: [
        "社会分工", "裁缝", "上衣", "麻布", "顾客", "几千年", "物质循环", "自然力", "宇宙",
        "谷物", "金属原子", "维里", "1773", "意大利",
    ],
}  # fmt: skip
MIN_RECALL = 0.9


class FixedOcr:
    """An OCR engine that reads the same lines from any image (for the parser's wiring)."""

    name = "fixed"

    def __init__(self, lines: tuple[OcrLine, ...]) -> None:
        self.lines = lines
        self.images: list[tuple[int, ...]] = []

    def read(self, image: np.ndarray) -> OcrResult:
        self.images.append(image.shape)
        return OcrResult(self.lines)


@pytest.mark.unit
def test_confidence_is_weighted_by_characters() -> None:
    result = OcrResult((OcrLine("12", 0.5), OcrLine("a long line of body text", 1.0)))
    assert result.text == "12\na long line of body text"
    assert result.confidence == pytest.approx((2 * 0.5 + 24 * 1.0) / 26)
    assert OcrResult(()).confidence is None
    assert isinstance(FixedOcr(()), OcrEngine)


@pytest.mark.unit
def test_render_scale_is_150_dpi_capped_on_the_long_side() -> None:
    assert render_scale(612, 792) == pytest.approx(150 / 72)  # US Letter: 1275 x 1650 px
    assert render_scale(1225.5, 1800) * 1800 == pytest.approx(MAX_SIDE_PX)  # a 25-inch scan


@pytest.mark.unit
def test_engine_settings_and_bad_images_fail_clearly() -> None:
    with pytest.raises(ConfigError, match="threads must be >= 0"):
        RapidOcrEngine(threads=-1)
    with pytest.raises(ParseError, match="could not decode the image"):
        image_from_bytes(b"not an image")
    with pytest.raises(ParseError, match="RGB uint8"):
        RapidOcrEngine().read(np.zeros((4, 4), dtype=np.uint8))


@pytest.mark.integration
def test_ocr_of_image_bytes_reads_rendered_text() -> None:
    import pypdfium2
    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=28)
    pdf.cell(text="Invoice number 48213")
    pdf.ln(20)
    pdf.cell(text="Total due: 1,250 EUR")
    document = pypdfium2.PdfDocument(bytes(pdf.output()))
    png = io.BytesIO()
    Image.fromarray(render_pdf_page(document, 0)).save(png, format="PNG")
    document.close()
    result = ocr_image_bytes(png.getvalue(), RapidOcrEngine())
    assert "Invoice number 48213" in result.text and "1,250 EUR" in result.text
    assert result.confidence is not None and result.confidence > 0.9


@pytest.mark.integration
def test_scanned_pages_go_to_the_engine_with_their_numbers(pdfs_dir: Path) -> None:
    from ingest.parsers.pdf import PdfParser

    engine = FixedOcr((OcrLine("第一章 商品", 0.9),))
    seen: list[tuple[int, int]] = []
    document = PdfParser(ocr=engine, tables=False).parse(
        (pdfs_dir / SCANNED).read_bytes(), on_page=lambda done, total: seen.append((done, total))
    )
    assert [page.number for page in document.pages] == list(range(1, 9))
    assert all(page.ocr_confidence == pytest.approx(0.9) for page in document.pages)
    assert len(engine.images) == 8 and max(engine.images[0][:2]) == MAX_SIDE_PX
    assert seen == [(n, 8) for n in range(1, 9)]  # progress after each OCR'd page


@pytest.mark.slow
def test_scanned_pdf_becomes_searchable_with_its_words_pages_and_confidence(
    tmp_path: Path, pdfs_dir: Path
) -> None:
    services = build_services(fast_settings(tmp_path / "kb"))
    try:
        service = build_ingest_service(services)
        progress: list[IngestProgress] = []
        outcome = service.ingest_path(pdfs_dir / SCANNED, progress=progress.append)
        assert outcome.ok and outcome.pages == 8, outcome
        parsed = [p.pages_parsed for p in progress if p.stage == "parsing" and p.pages_parsed]
        assert parsed == list(range(1, 9))
        chunks = services.kb.document_chunks(outcome.document_id)
        assert {c.page_start for c in chunks} == set(range(1, 9))
        assert all(c.ocr_confidence is not None and 0.8 < c.ocr_confidence <= 1 for c in chunks)
        text_by_page: dict[int, str] = {}
        for chunk in chunks:
            for page in range(chunk.page_start, chunk.page_end + 1):
                text_by_page[page] = text_by_page.get(page, "") + chunk.text
        found = [
            word for page, words in HAND_CHECKED_WORDS.items() for word in words
            if word in text_by_page[page]
        ]  # fmt: skip
        total = sum(len(words) for words in HAND_CHECKED_WORDS.values())
        recall = len(found) / total
        missing = [w for ws in HAND_CHECKED_WORDS.values() for w in ws if w not in found]
        assert recall >= MIN_RECALL, (recall, missing)
        hits = services.retriever().retrieve("蒸汽织布机", top_k=3, mode="sparse").hits
        assert hits and hits[0].page_start <= 4 <= hits[0].page_end
    finally:
        services.close()
