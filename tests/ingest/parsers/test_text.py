"""Text and Markdown parsing: encoding detection and light Markdown stripping."""

from __future__ import annotations

import pytest

from ingest.parsers.text import MarkdownParser, TextParser, decode_text, strip_markdown
from rag.errors import EmptyDocument

pytestmark = pytest.mark.unit

CHINESE = "数字交互时代，数字拟人品兼具了拟人产品互动性。研究发现：第一，数字拟人品依托于数字技术。"


def test_utf8() -> None:
    decoded = decode_text("héllo wörld — 中文".encode())
    assert (decoded.text, decoded.encoding, decoded.guessed) == (
        "héllo wörld — 中文",
        "utf-8",
        False,
    )


def test_utf8_bom_is_stripped() -> None:
    decoded = decode_text(b"\xef\xbb\xbf" + "first line\n中文".encode())
    assert decoded.text == "first line\n中文"
    assert decoded.encoding == "utf-8"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom(codec: str) -> None:
    bom = {"utf-16": b"", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}[codec]
    data = bom + f"UTF-16 text {CHINESE}".encode(codec)
    decoded = decode_text(data)
    assert decoded.text == f"UTF-16 text {CHINESE}"
    assert decoded.encoding.startswith("utf-16")


def test_utf32_with_bom() -> None:
    assert decode_text("UTF-32 中文".encode("utf-32")).text == "UTF-32 中文"


def test_gbk() -> None:
    decoded = decode_text(CHINESE.encode("gbk"))
    assert decoded.text == CHINESE
    assert decoded.encoding == "gb18030"
    assert not decoded.guessed


def test_gb18030_beyond_gbk() -> None:
    # U+20BB7 is outside GBK; GB18030 encodes it in four bytes.
    text = CHINESE + "𠮷野家"
    data = text.encode("gb18030")
    with pytest.raises(UnicodeEncodeError):
        text.encode("gbk")
    assert decode_text(data).text == text


def test_other_encodings_are_guessed_by_charset_normalizer() -> None:
    text = "Привет, как дела? Это проверка определения кодировки текста. " * 3
    decoded = decode_text(text.encode("cp1251"))
    assert decoded.text == text
    assert decoded.guessed


def test_crlf_and_cr_become_lf() -> None:
    assert decode_text(b"a\r\nb\rc\n").text == "a\nb\nc\n"


def test_text_parser_returns_one_page() -> None:
    document = TextParser().parse(CHINESE.encode("gb18030"))
    assert document.media_type == "text/plain"
    assert document.page_count == 1
    assert document.pages[0].number == 1
    assert document.pages[0].text == CHINESE
    assert document.warnings == ()


def test_guessed_encoding_is_reported_as_a_warning() -> None:
    text = "Привет, как дела? Это проверка определения кодировки текста. " * 3
    document = TextParser().parse(text.encode("cp1251"))
    assert document.warnings and "save the file as UTF-8" in document.warnings[0]


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n"])
def test_empty_or_blank_text_is_an_empty_document(data: bytes) -> None:
    with pytest.raises(EmptyDocument):
        TextParser().parse(data)


def test_markdown_markup_is_stripped_lightly() -> None:
    source = (
        "# Getting *started* #\n"
        "Some **bold**, _emphasis_, ~~struck~~ and `code` with my_var_name kept.\n"
        "See [the docs](https://example.com/docs) and ![a diagram](img/d.png).\n"
        "> A quoted line\n"
        "\n"
        "| col a | col b |\n"
        "|-------|:-----:|\n"
        "| 1 | 2 |\n"
        "```python\n"
        "x = 1\n"
        "```\n"
        "Title\n"
        "=====\n"
        "[ref]: https://example.com\n"
        "- a list item\n"
    )
    assert strip_markdown(source) == (
        "Getting started\n"
        "Some bold, emphasis, struck and code with my_var_name kept.\n"
        "See the docs and a diagram.\n"
        "A quoted line\n"
        "\n"
        "col a | col b\n"
        "1 | 2\n"
        "x = 1\n"
        "Title\n"
        "- a list item\n"
    )


def test_markdown_parser() -> None:
    document = MarkdownParser().parse("## 第一章\n数字**拟人品**。".encode())
    assert document.media_type == "text/markdown"
    assert document.pages[0].text == "第一章\n数字拟人品。"


def test_markdown_with_only_markup_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        MarkdownParser().parse(b"---\n\n```\n```\n")
