"""HTML (and EPUB) tables as Markdown: spans, layout tables, shared files, chunking."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from ingest.chunking import SentenceChunker
from ingest.cleaning import clean_pages
from ingest.parsers import parse_bytes
from ingest.parsers.html import HtmlParser, html_to_text
from rag.types import Page

pytestmark = pytest.mark.unit

OFFICE = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "office"
RULE = re.compile(r"^\|( --- \|)+$", re.MULTILINE)


def _page(body: str) -> str:
    return f"<html><head><title>T</title></head><body><h1>T</h1>{body}</body></html>"


def test_table_becomes_markdown_with_caption_and_header() -> None:
    text = html_to_text(
        _page(
            "<p>Before.</p><table><caption>Prices</caption>"
            "<thead><tr><th>Item</th><th>Price</th></tr></thead>"
            "<tbody><tr><td>Tea</td><td>3</td></tr><tr><td>A|B</td><td>4</td></tr></tbody>"
            "</table><p>After.</p>"
        )
    )
    assert text == (
        "T\n\nBefore.\n\nPrices\n\n"
        "| Item | Price |\n| --- | --- |\n| Tea | 3 |\n| A\\|B | 4 |\n\nAfter."
    )


def test_colspan_and_rowspan_fill_the_grid_once() -> None:
    text = html_to_text(
        _page(
            "<table><tr><th>Name</th><th colspan='2'>Score</th></tr>"
            "<tr><td rowspan='2'>Ann</td><td>1</td><td>2</td></tr>"
            "<tr><td>3</td><td>4</td></tr>"
            "<tr><td>Bob</td><td>5</td><td rowspan='9'>6</td></tr></table>"
        ),
        title=False,
    )
    assert text.splitlines()[2:] == [
        "| Name | Score |  |",
        "| --- | --- | --- |",
        "| Ann | 1 | 2 |",
        "|  | 3 | 4 |",
        "| Bob | 5 | 6 |",
    ]


def test_rowspan_past_the_row_end_keeps_columns_aligned() -> None:
    text = html_to_text(
        _page(
            "<table><tr><th>a</th><th>b</th><th>c</th></tr>"
            "<tr><td>1</td><td>2</td><td rowspan='2'>3</td></tr>"
            "<tr><td>4</td><td>5</td></tr>"
            "<tr><td>6</td><td>7</td><td>8</td></tr></table>"
        ),
        title=False,
    )
    assert "| 4 | 5 |  |" in text and "| 6 | 7 | 8 |" in text


def test_layout_tables_stay_paragraphs() -> None:
    article = "Long article text. " * 40
    text = html_to_text(
        _page(
            f"<table><tr><td>{article}</td><td>side</td></tr><tr><td>x</td><td>y</td></tr></table>"
            "<table><tr><td>one column</td></tr><tr><td>two</td></tr></table>"
            "<table role='presentation'><tr><td>p</td><td>q</td></tr><tr><td>r</td><td>s</td></tr>"
            "</table>"
        )
    )
    assert "|" not in text
    assert "one column\n\ntwo" in text


def test_nested_data_table_is_rendered_and_outer_layout_kept() -> None:
    inner = "<table><tr><th>k</th><th>v</th></tr><tr><td>rrf</td><td>60</td></tr></table>"
    text = html_to_text(_page(f"<table><tr><td>{inner}</td><td>note</td></tr></table>"))
    assert "| k | v |\n| --- | --- |\n| rrf | 60 |" in text


def test_empty_spacer_columns_are_dropped() -> None:
    text = html_to_text(
        _page(
            "<table><tr><td>Title</td><td>&#160;</td><td>Symbol</td></tr>"
            "<tr><td>Common stock</td><td></td><td>GLXZ</td></tr></table>"
        )
    )
    assert "| Title | Symbol |\n| --- | --- |\n| Common stock | GLXZ |" in text


@pytest.mark.skipif(not OFFICE.is_dir(), reason="shared office datasets not present")
def test_shared_10k_registered_securities_table() -> None:
    name = "en_html_tables_example-10k-1p.html"
    text = HtmlParser().parse((OFFICE / name).read_bytes()).pages[0].text
    assert (
        "| Title of each class | Trading symbol | Name of exchange on which registered |\n"
        "| --- | --- | --- |\n"
        "| Common stock | GLXZ | OTCQB marketplace |"
    ) in text


@pytest.mark.skipif(not OFFICE.is_dir(), reason="shared office datasets not present")
def test_shared_epub_contents_table() -> None:
    name = "en_epub_book_winter-sports.epub"
    parsed = parse_bytes((OFFICE / name).read_bytes(), name)
    text = "\n\n".join(page.text for page in parsed.pages)
    assert "| II. | Rinks and Skaters | 23 |" in text
    assert len(RULE.findall(text)) >= 10


class _WordCounter:
    """Each word or mark is one token."""

    _TOKEN = re.compile(r"\w+|[^\s\w]")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._TOKEN.findall(text)) for text in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._TOKEN.finditer(text)]


def test_long_html_table_chunks_repeat_the_header() -> None:
    rows = "".join(f"<tr><td>row {i}</td><td>value {i}</td></tr>" for i in range(200))
    text = html_to_text(_page(f"<table><tr><th>Key</th><th>Amount</th></tr>{rows}</table>"))
    chunks = SentenceChunker(_WordCounter(), chunk_tokens=128, overlap_tokens=0).chunk(
        clean_pages([Page(1, text)])
    )
    table_chunks = [c for c in chunks if "| row " in c.text]
    assert len(table_chunks) > 1
    for chunk in table_chunks:
        assert "| Key | Amount |\n| --- | --- |" in chunk.text
