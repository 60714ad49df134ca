"""Content sniffing: magic bytes win over the file name."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from ingest.sniff import HTML, MARKDOWN, PDF, TEXT, sniff_media_type
from rag.errors import EmptyDocument, EncryptedDocument, ParseError, UnsupportedFileType
from tests.conftest import shared_path

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def test_png_named_pdf_is_unsupported() -> None:
    with pytest.raises(UnsupportedFileType) as info:
        sniff_media_type(PNG, "report.pdf")
    assert str(info.value) == (
        "unsupported file type PNG image: upload PDF, text, Markdown or HTML"
    )
    assert info.value.details["filename"] == "report.pdf"


def test_pdf_named_txt_is_a_pdf(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "multilang_en-ar-ru-zh-th-ja.pdf").read_bytes()
    assert sniff_media_type(data, "notes.txt") == PDF
    assert sniff_media_type(data, None) == PDF


def test_pdf_header_after_leading_junk_is_a_pdf() -> None:
    assert sniff_media_type(b"\r\n\xef\xbb\xbf%PDF-1.4\n...", "x") == PDF


def test_empty_bytes_are_an_empty_document() -> None:
    with pytest.raises(EmptyDocument, match="file is empty"):
        sniff_media_type(b"", "empty.txt")


def _zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (_zip({"[Content_Types].xml": "<Types/>", "word/document.xml": "<w/>"}), "Word document"),
        (_zip({"some/file.txt": "hello"}), "ZIP archive"),
        (_zip({"mimetype": "application/vnd.oasis.opendocument.text"}), "OpenDocument text"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
        (b"GIF89a\x01\x00", "GIF image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "legacy Office document"),
        (b"\x1f\x8b\x08\x00", "gzip archive"),
        (b"\x00\x01\x02\x03\x04\x05binary\x00\x00", "binary data"),
    ],
)
def test_binary_formats_are_unsupported_with_their_name(data: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedFileType, match=f"unsupported file type {kind}"):
        sniff_media_type(data, "upload.txt")


def test_binary_named_pdf_hints_at_a_corrupt_pdf() -> None:
    with pytest.raises(UnsupportedFileType, match="without a PDF header"):
        sniff_media_type(b"\x00\x01\x02garbage\x00", "broken.pdf")


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", None),
        (b"  <html lang='en'><head><title>T</title></head></html>", "page.txt"),
        (b"<?xml version='1.0'?>\n<!-- c --><html><body>x</body></html>", None),
        (b"<div><p>Fragment saved as .html</p></div>", "fragment.html"),
        ("\ufeff<!doctype html><p>中文</p>".encode("utf-16"), None),
    ],
)
def test_html_is_recognised_by_content(data: bytes, filename: str | None) -> None:
    assert sniff_media_type(data, filename) == HTML


def test_markdown_by_suffix() -> None:
    assert sniff_media_type(b"just words", "README.md") == MARKDOWN
    assert sniff_media_type(b"just words", "notes.markdown") == MARKDOWN


def test_markdown_by_content_when_the_name_does_not_say() -> None:
    data = b"# Title\n\nSome text with a [link](https://example.com).\n\n- item\n"
    assert sniff_media_type(data, None) == MARKDOWN
    assert sniff_media_type(data, "upload") == MARKDOWN


def test_txt_suffix_keeps_markdown_looking_text_plain() -> None:
    data = b"# Title\n\n- item\n- item\n"
    assert sniff_media_type(data, "notes.txt") == TEXT


@pytest.mark.parametrize(
    "data",
    [
        b"plain words, nothing else.\n",
        "数字交互时代，数字拟人品兼具了拟人产品互动性。".encode("gbk"),
        "中文文本".encode("utf-16"),
        "\ufeffBOM text".encode(),
        b"tabs\tand\r\nCRLF lines\x0c form feed",
    ],
)
def test_plain_text(data: bytes) -> None:
    assert sniff_media_type(data, "a.txt") == TEXT
    assert sniff_media_type(data, None) == TEXT


@pytest.mark.parametrize(
    "name",
    [
        "encrypted_docx_testWORD_protected_passtika.docx",
        "encrypted_xlsx_testEXCEL_protected_passtika.xlsx",
        "encrypted_odt_testODTEncrypted.odt",
    ],
)
def test_encrypted_office_files_are_diagnosed_as_encrypted(name: str) -> None:
    data = shared_path("office", name).read_bytes()
    with pytest.raises(EncryptedDocument, match="encrypted") as info:
        sniff_media_type(data, name)
    assert "password" in info.value.message


def test_truncated_docx_is_corrupt_not_a_zip_archive() -> None:
    name = "malformed_docx_testWORD_truncated.docx"
    with pytest.raises(ParseError, match="corrupt") as info:
        sniff_media_type(shared_path("office", name).read_bytes(), name)
    assert not isinstance(info.value, EncryptedDocument)


def test_intact_office_files_keep_their_names() -> None:
    data = shared_path("office", "en_odt_table_fake.odt").read_bytes()
    with pytest.raises(UnsupportedFileType, match="OpenDocument text"):
        sniff_media_type(data, "fake.odt")
    data = shared_path("office", "en_docx_tables_word_tables.docx").read_bytes()
    with pytest.raises(UnsupportedFileType, match="Word document"):
        sniff_media_type(data, "tables.docx")
