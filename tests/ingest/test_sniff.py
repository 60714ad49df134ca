"""Content sniffing: magic bytes win over the file name."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from ingest.sniff import (
    CSV,
    DOCX,
    HTML,
    MARKDOWN,
    ODT,
    PDF,
    SUPPORTED_FORMATS,
    TEXT,
    XLSX,
    sniff_media_type,
)
from rag.errors import EmptyDocument, EncryptedDocument, ParseError, UnsupportedFileType
from tests.conftest import shared_path

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def test_png_named_pdf_is_unsupported() -> None:
    with pytest.raises(UnsupportedFileType) as info:
        sniff_media_type(PNG, "report.pdf")
    assert str(info.value) == f"unsupported file type PNG image: upload {SUPPORTED_FORMATS}"
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
        (_zip({"some/file.txt": "hello"}), "ZIP archive"),
        (_zip({"mimetype": "application/vnd.oasis.opendocument.spreadsheet"}), "OpenDocument spr"),
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


def test_office_files_are_recognised_by_their_members_not_their_names() -> None:
    data = shared_path("office", "en_odt_table_fake.odt").read_bytes()
    assert sniff_media_type(data, "fake.zip") == ODT
    data = shared_path("office", "en_docx_tables_word_tables.docx").read_bytes()
    assert sniff_media_type(data, "tables.xlsx") == DOCX
    word = _zip({"[Content_Types].xml": "<Types/>", "word/document.xml": "<w/>"})
    assert sniff_media_type(word, None) == DOCX


def test_encrypted_office_file_with_its_password_is_the_format_inside() -> None:
    name = "encrypted_xlsx_testEXCEL_protected_passtika.xlsx"
    data = shared_path("office", name).read_bytes()
    assert sniff_media_type(data, name, password="tika") == XLSX
    with pytest.raises(EncryptedDocument, match="password is wrong"):
        sniff_media_type(data, name, password="wrong")


@pytest.mark.parametrize(
    ("data", "filename", "media_type"),
    [
        (b"name,age\nann,3\nbob,4\n", "people.csv", CSV),
        (b"a\tb\tc\n1\t2\t3\n4\t5\t6\n7\t8\t9\n1\t1\t1\n2\t2\t2\n", None, CSV),
        ("交易时间,金额\n2023-01-01,5\n2023-01-02,6\n".encode("gbk"), "bill.csv", CSV),
        (b"Dear Ann, thanks.\nSee you soon, Bob.\nThis line has no comma\n", "note.csv", TEXT),
        (b"a,b\n1,2\n", "notes.txt", TEXT),
    ],
)
def test_csv_by_consistent_delimiters(data: bytes, filename: str | None, media_type: str) -> None:
    assert sniff_media_type(data, filename) == media_type
