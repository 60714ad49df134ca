"""PdfParser on the real third-party PDFs in ../shared/datasets/pdfs."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from ingest.cleaning import clean_pages
from ingest.parsers import parse_bytes
from ingest.parsers.pdf import PdfParser
from rag.errors import EmptyDocument, EncryptedDocument, ParseError
from rag.text.normalize import CJK_CHAR
from rag.types import ParsedDocument
from tests.conftest import PROJECT_ROOT, shared_path

pytestmark = pytest.mark.unit

_CJK_SPACE_CJK = re.compile(rf"{CJK_CHAR}[ \t]+{CJK_CHAR}")


@cache
def _parsed(name: str) -> ParsedDocument:
    """Parse each PDF once per test session (the big ones take a second)."""
    return PdfParser().parse(shared_path("pdfs", name).read_bytes())


def _clean_text(name: str) -> str:
    return clean_pages(_parsed(name).pages).text


@pytest.mark.parametrize(
    ("name", "pages", "phrases"),
    [
        (
            "en_academic_two-column_tracemonkey-pldi09.pdf",
            14,
            [
                "Trace-based Just-in-Time Type Specialization for Dynamic Languages",
                "Dynamic languages such as JavaScript are more difficult to compile than "
                "statically typed ones.",
                "TraceMonkey",
            ],
        ),
        (
            "en_academic_tables_tableformer-arxiv2203.00274.pdf",
            10,
            [
                "TABLEFORMER: Robust Transformer Modeling for Table-Text Encoding",
                "Understanding tables is an important aspect of natural language understanding.",
            ],
        ),
        (
            "en_multicolumn_federal-register-2020-17221.pdf",
            15,
            ["Airworthiness Directives; The Boeing Company Airplanes", "Federal Aviation"],
        ),
        ("en_multicolumn_latex-lorem.pdf", 3, ["Two-Column Document with Lorem Ipsum"]),
        ("en_table_nics-background-checks-2015-11.pdf", 1, ["Alabama", "DISCLAIMERS"]),
        ("multilang_en-ar-ru-zh-th-ja.pdf", 1, ["Hello World", "Привет, мир", "你好世界"]),
    ],
)
def test_english_and_multilingual_pdfs_extract_known_text(
    name: str, pages: int, phrases: list[str]
) -> None:
    document = _parsed(name)
    assert document.media_type == "application/pdf"
    assert document.page_count == pages
    assert [page.number for page in document.pages] == list(range(1, pages + 1))
    assert document.warnings == ()
    text = _clean_text(name)
    for phrase in phrases:
        assert phrase in text


def test_cleaning_rejoins_hyphenated_words_in_a_real_paper() -> None:
    raw = _parsed("en_academic_two-column_tracemonkey-pldi09.pdf").pages[0].text
    assert "difﬁcult to com-\npile" in raw  # what pypdf gives: ligature, hyphenation
    assert "difficult to compile" in _clean_text("en_academic_two-column_tracemonkey-pldi09.pdf")


def test_federal_register_running_headers_and_footers_are_removed() -> None:
    name = "en_multicolumn_federal-register-2020-17221.pdf"
    raw = "\n".join(page.text for page in _parsed(name).pages)
    assert raw.count("VerDate Sep<11>2014") == 15
    assert raw.count("Federal Register / Vol. 85, No. 152") == 14
    text = _clean_text(name)
    assert "VerDate" not in text
    assert "jbell on DSKJLSW7X2PROD" not in text
    assert "Federal Register / Vol. 85" not in text


@pytest.mark.parametrize(
    ("name", "phrases"),
    [
        (
            "zh_academic_paper-page.pdf",
            [
                "数字拟人品",
                "数字交互时代",
                "表现出跃迁式成长特征",
                "本文以虚拟偶像“洛天依”为案例研究对象",
            ],
        ),
        (
            "zh_tables_bond-prospectus-page.pdf",
            ["企业资信状况", "发行人历史信用评级情况", "受不利经济环境的影响不大"],
        ),
    ],
)
def test_chinese_pdfs_clean_without_spaces_between_cjk(name: str, phrases: list[str]) -> None:
    document = _parsed(name)
    assert document.page_count == 1
    text = _clean_text(name)
    assert _CJK_SPACE_CJK.search(text) is None
    for phrase in phrases:
        assert phrase in text
    # Lines broken mid-sentence are joined: "表现出\n跃迁式" in the raw text.
    assert "\n跃迁式" not in text


def test_bond_prospectus_page_number_is_dropped() -> None:
    raw_lines = _parsed("zh_tables_bond-prospectus-page.pdf").pages[0].text.splitlines()
    assert raw_lines[1] == "251"
    assert "\n251\n" not in _clean_text("zh_tables_bond-prospectus-page.pdf")


def test_encrypted_pdf_needs_the_password(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "encrypted_libreoffice-writer-password.pdf").read_bytes()
    with pytest.raises(EncryptedDocument, match="password required: pass --password"):
        PdfParser().parse(data)
    with pytest.raises(EncryptedDocument, match="password is wrong"):
        PdfParser().parse(data, password="not-the-password")
    document = PdfParser().parse(data, password="openpassword")
    assert document.page_count == 1
    assert "Lorem ipsum dolor sit amet" in document.pages[0].text


def test_zero_byte_pdf_is_an_empty_document(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "malformed_empty-0-bytes.pdf").read_bytes()
    with pytest.raises(EmptyDocument, match="file is empty"):
        PdfParser().parse(data)
    with pytest.raises(EmptyDocument, match="file is empty"):
        parse_bytes(data, "malformed_empty-0-bytes.pdf")


def test_corrupted_stream_is_recovered() -> None:
    document = _parsed("malformed_zen-of-python-corrupted-stream.pdf")
    text = document.pages[0].text
    assert "Beautiful is better than ugly." in text
    assert "Namespaces are one honking great idea" in text


def test_scanned_image_only_pdf_without_ocr_says_ocr_is_off(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "scanned_image-only_mineru-small-ocr.pdf").read_bytes()
    with pytest.raises(EmptyDocument, match="no extractable text and OCR is off") as info:
        PdfParser().parse(data)
    assert info.value.details == {"pages": 8}


def test_truncated_pdf_is_recovered_or_fails_with_a_parse_error(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "en_multicolumn_latex-lorem.pdf").read_bytes()
    with pytest.raises(ParseError, match="corrupt or truncated; re-export or re-download it"):
        PdfParser().parse(data[: len(data) // 2])
    with pytest.raises(ParseError, match="corrupt or truncated"):
        PdfParser().parse(b"%PDF-1.7\n" + b"garbage " * 50)


def test_truncated_pdf_with_its_catalog_recovers_the_pages(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "en_multicolumn_federal-register-2020-17221.pdf").read_bytes()
    # Cut inside the last object: the trailer and %%EOF are gone.
    cut = data[: data.rindex(b"startxref") - 40]
    assert b"%%EOF" not in cut[-1024:]
    document = PdfParser().parse(cut)
    assert document.page_count == 15
    assert "Airworthiness Directives" in document.pages[0].text


def test_a_page_that_fails_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, pdfs_dir: Path
) -> None:
    from pypdf import PageObject

    real_extract = PageObject.extract_text
    calls = {"n": 0}

    def flaky(self: PageObject, *args: object, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("broken content stream")
        return real_extract(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", flaky)
    data = (pdfs_dir / "en_multicolumn_latex-lorem.pdf").read_bytes()
    document = PdfParser().parse(data)
    assert document.page_count == 3
    assert document.pages[1].text == ""
    assert document.pages[0].text and document.pages[2].text
    assert len(document.warnings) == 1
    assert document.warnings[0].startswith("page 2: text extraction failed (ValueError")


def test_every_page_failing_is_a_parse_error(
    monkeypatch: pytest.MonkeyPatch, pdfs_dir: Path
) -> None:
    from pypdf import PageObject

    def broken(self: PageObject, *args: object, **kwargs: object) -> str:
        raise KeyError("/Contents")

    monkeypatch.setattr(PageObject, "extract_text", broken)
    data = (pdfs_dir / "en_multicolumn_latex-lorem.pdf").read_bytes()
    with pytest.raises(ParseError, match="could not extract text from any of the 3 pages"):
        PdfParser().parse(data)


def test_pypdf_complaints_go_to_the_debug_log(
    pdfs_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = (pdfs_dir / "en_multicolumn_latex-lorem.pdf").read_bytes()
    with caplog.at_level(logging.DEBUG, logger="ingest.parsers.pdf"):
        with pytest.raises(ParseError):
            PdfParser().parse(data[: len(data) // 2])
    ours = [r for r in caplog.records if r.name == "ingest.parsers.pdf"]
    assert any("EOF marker not found" in r.getMessage() for r in ours)
    assert all(r.levelno == logging.DEBUG for r in ours)


def test_pypdf_complaints_are_not_printed_to_the_terminal(pdfs_dir: Path) -> None:
    # pytest attaches its own handlers to every logger, so the end-user case
    # (no logging configured: Python prints WARNING records to stderr) needs
    # a fresh interpreter.
    script = (
        "import sys\n"
        "from ingest.parsers.pdf import PdfParser\n"
        "from rag.errors import ParseError\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "try:\n"
        "    PdfParser().parse(data[: len(data) // 2])\n"
        "except ParseError:\n"
        "    pass\n"
        "PdfParser().parse(open(sys.argv[2], 'rb').read())\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(pdfs_dir / "en_multicolumn_latex-lorem.pdf"),
            str(pdfs_dir / "malformed_zen-of-python-corrupted-stream.pdf"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""
