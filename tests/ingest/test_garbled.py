"""Garbled text detection: broken font maps are caught, real text in any script passes."""

from __future__ import annotations

import pytest

from ingest.garbled import judge_text
from ingest.ocr import RapidOcrEngine
from ingest.parsers.pdf import PdfParser
from rag.errors import ParseError

REAL_TEXTS = {
    "english": "Trace-based compilation records the hot loops of a program and compiles them.",
    "chinese": "商品首先是一个外界的对象，一个靠自己的属性来满足人的某种需要的物。",
    "chinese with english": "在十七世纪，英国著作家用worth表示使用价值，用value表示交换价值。",
    "japanese": "東京は日本の首都であり、多くの人々がここで働いています。",
    "russian": "Пример текста на русском языке для проверки детектора.",
    "table": "| State | Permit | Handgun |\n|-|-|-|\n| Alabama | 18,870 | 23,022 |",
    "numbers": "Totals 804,006 671,330 636,903 26,597 23,015 1,281 218 249 13",
}
GARBLED_TEXTS = {
    "replacement characters": "\ufffd\ufffd\ufffd \ufffd\ufffd\ufffd\ufffd \ufffd\ufffd rev"
    + "\ufffd" * 12,
    "private use": "".join(chr(0xE000 + ord(c)) for c in "Quarterly revenue grew by eleven"),
    "unmapped cids": "(cid:12)(cid:45)(cid:7) (cid:88)(cid:3)(cid:19)(cid:21) (cid:4)(cid:9)",
    "control characters": "\x03\x11\x05\x0f\x12 \x07\x10\x04\x13\x0e \x06\x15\x08\x14 " * 2,
    "mixed scripts": "Ꭺбγ ДλԱ ժΣк ψЖԲ λдՎ ЯωԳ ξЙՄ Щσ ΦыՂ",
}


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(REAL_TEXTS))
def test_real_text_in_any_script_is_not_garbled(name: str) -> None:
    verdict = judge_text(REAL_TEXTS[name])
    assert not verdict.garbled, verdict


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(GARBLED_TEXTS))
def test_broken_font_maps_are_garbled_with_a_reason(name: str) -> None:
    verdict = judge_text(GARBLED_TEXTS[name])
    assert verdict.garbled, verdict
    assert "font map" in verdict.reason or "characters" in verdict.reason


@pytest.mark.unit
def test_a_few_symbol_font_bullets_in_real_text_are_fine() -> None:
    text = "\uf0b7 First point of the list.\n\uf0b7 Second point, a little longer than the first."
    assert not judge_text(text).garbled


@pytest.mark.unit
def test_too_little_text_is_never_judged() -> None:
    assert not judge_text("\ufffd\ufffd 3").garbled


def broken_font_map_pdf(lines: list[str]) -> bytes:
    """A one-page PDF in Helvetica whose ToUnicode map sends every glyph to the private-use area.

    It renders as normal text but its text layer extracts as U+E0xx code
    points: what a PDF with a broken font map gives text extraction.
    """
    content = "BT /F1 28 Tf 40 220 Td " + " 0 -44 Td ".join(f"({line}) Tj" for line in lines)
    content += " ET"
    cmap = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        "/CMapName /Broken def /CMapType 2 def\n"
        "1 begincodespacerange <00> <FF> endcodespacerange\n"
        "1 beginbfrange <20> <7E> <E000> endbfrange\n"
        "endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 300] "
        "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        f"<< /Length {len(cmap)} >>\nstream\n{cmap}\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


LINES = ["Quarterly revenue grew", "by eleven percent in Ohio"]


@pytest.mark.integration
def test_a_pdf_with_a_broken_font_map_fails_with_the_reason_when_ocr_is_off() -> None:
    data = broken_font_map_pdf(LINES)
    with pytest.raises(ParseError, match="text layer of page\\(s\\) 1 is garbage") as info:
        PdfParser().parse(data)
    assert "RAG_INGEST__OCR=true" in info.value.message
    assert info.value.details == {"pages": [1]}


@pytest.mark.integration
def test_a_pdf_with_a_broken_font_map_is_re_read_by_ocr() -> None:
    document = PdfParser(ocr=RapidOcrEngine()).parse(broken_font_map_pdf(LINES))
    (page,) = document.pages
    assert "Quarterly revenue grew" in page.text and "eleven percent in Ohio" in page.text
    assert page.ocr_confidence is not None and page.ocr_confidence > 0.8
    assert not any("\ue000" <= char <= "\uf8ff" for char in page.text)
    assert any("garbled" in warning and "read by OCR" in warning for warning in document.warnings)
