"""parse_bytes and get_parser: size limit, sniffing and parser choice together."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.parsers import (
    HtmlParser,
    MarkdownParser,
    PdfParser,
    TextParser,
    get_parser,
    parse_bytes,
)
from rag.errors import EncryptedDocument, FileTooLarge, InvalidInput, UnsupportedFileType
from rag.protocols import Parser

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("media_type", "parser_class"),
    [
        ("application/pdf", PdfParser),
        ("text/plain", TextParser),
        ("text/markdown", MarkdownParser),
        ("text/html", HtmlParser),
    ],
)
def test_get_parser_returns_a_parser_for_each_supported_type(
    media_type: str, parser_class: type
) -> None:
    parser = get_parser(media_type)
    assert isinstance(parser, parser_class)
    assert isinstance(parser, Parser)
    assert parser.media_type == media_type


def test_get_parser_rejects_other_types() -> None:
    with pytest.raises(UnsupportedFileType, match="upload PDF, Word"):
        get_parser("image/png")


def test_too_large_names_sizes_and_the_setting() -> None:
    data = b"x" * (3 * 1024 * 1024)
    with pytest.raises(FileTooLarge) as info:
        parse_bytes(data, "big.txt", max_bytes=2 * 1024 * 1024)
    message = str(info.value)
    assert "3.0 MiB" in message and "2.0 MiB" in message
    assert "RAG_INGEST__MAX_FILE_MB" in message


def test_max_bytes_must_be_positive() -> None:
    with pytest.raises(InvalidInput, match="max_bytes must be > 0, got 0"):
        parse_bytes(b"x", "a.txt", max_bytes=0)


def test_pdf_named_txt_is_parsed_as_pdf(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "multilang_en-ar-ru-zh-th-ja.pdf").read_bytes()
    document = parse_bytes(data, "misnamed.txt", max_bytes=len(data))
    assert document.media_type == "application/pdf"
    assert "Hello World" in document.pages[0].text


def test_password_reaches_the_pdf_parser(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "encrypted_libreoffice-writer-password.pdf").read_bytes()
    with pytest.raises(EncryptedDocument):
        parse_bytes(data, "locked.pdf")
    assert parse_bytes(data, "locked.pdf", password="openpassword").page_count == 1


def test_text_markdown_and_html_route_to_their_parsers() -> None:
    assert parse_bytes(b"hello", "a.txt").media_type == "text/plain"
    assert parse_bytes(b"# Hi\n**there**", "a.md").pages[0].text == "Hi\nthere"
    assert parse_bytes(b"<html><body><p>hi</p></body></html>", "a").media_type == "text/html"
