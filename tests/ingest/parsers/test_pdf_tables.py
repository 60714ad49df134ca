"""Tables in PDFs: pdfplumber's tables as Markdown, chunked apart with the header repeated."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import SentenceChunker, markdown_tables
from ingest.cleaning import clean_pages
from ingest.parsers.pdf import PdfParser
from ingest.parsers.pdf_tables import markdown_table, split_stacked_rows, table_rows
from ingest.service import build_ingest_service
from rag.services import build_services
from rag.settings import load_settings
from rag.types import CleanText, Page
from tests.ingest.test_chunking import WordCounter

NICS = "en_table_nics-background-checks-2015-11.pdf"
BOND = "zh_tables_bond-prospectus-page.pdf"
NICS_HEADER = "| State / Territory | Permit Handgun Long Gun *Other **Multiple Admin |"
BOND_HEADER = "| 序号 | 金融机构名称 | 授信总额 | 已使用情况 | 剩余额度 |"


def _page_text(name: str, pdfs_dir: Path) -> str:
    return PdfParser().parse((pdfs_dir / name).read_bytes()).pages[0].text


# -- pure functions ---------------------------------------------------------------


@pytest.mark.unit
def test_markdown_table_is_one_line_per_row_with_escaped_pipes() -> None:
    table = markdown_table([["name", "note"], ["a|b", "two\nlines"], ["short"]])
    assert table.split("\n") == [
        "| name | note |",
        "|-|-|",
        "| a\\|b | two lines |",
        "| short |  |",
    ]


@pytest.mark.unit
def test_stacked_rows_are_split_when_every_filled_cell_has_as_many_lines() -> None:
    rows = [["Alabama\nAlaska", "18,870\n209", ""], ["Pre-Pawn\nHandgun", "Totals", "x"]]
    assert split_stacked_rows(rows) == [
        ["Alabama", "18,870", ""],
        ["Alaska", "209", ""],
        ["Pre-Pawn\nHandgun", "Totals", "x"],  # unequal line counts: one wrapped cell
    ]


@pytest.mark.unit
def test_table_rows_moves_title_and_notes_out_and_rejects_non_tables() -> None:
    raw = [
        ["Checks, November", None, None],
        ["State", "Permit", "Handgun"],
        ["Alabama", "18,870", "23,022"],
        ["*Refers to frames", "", None],
    ]
    table = table_rows(raw)
    assert table is not None
    assert table.caption == "Checks, November" and table.notes == "*Refers to frames"
    assert table.rows == [["State", "Permit", "Handgun"], ["Alabama", "18,870", "23,022"]]
    assert table_rows([["only", "one row"]]) is None
    assert table_rows([["a", None, None, None], [None, "b", None, None]]) is None  # mostly empty
    assert table_rows([["x" * 400, "y"], ["1", "2"]]) is None  # a boxed paragraph


# -- the chunker's table blocks ---------------------------------------------------


INTRO = (
    "A paragraph of prose comes first, long enough that it is not taken for a caption. "
    "It goes on for a while, with several sentences, so it has well over forty tokens. "
    "Then it ends.\n"
)
CAPTION = "Table 1: checks by state\n\n"
HEADER = "| State | Permit | Handgun |\n|---|---|---|\n"


def _table_text(rows: int) -> str:
    body = "".join(f"| State{i} | {i},001 | {i},002 |\n" for i in range(rows))
    return INTRO + CAPTION + HEADER + body + "\nA closing sentence."


@pytest.mark.unit
def test_markdown_tables_are_found_with_their_header() -> None:
    text = _table_text(3)
    (span,) = markdown_tables(text)
    assert text[span.start : span.body] == HEADER
    assert text[span.end - 1] == "|" and text[span.end :].startswith("\n\nA closing")
    assert markdown_tables("| not | a table |\n| no delimiter |") == []


@pytest.mark.unit
def test_table_chunks_repeat_the_header_and_never_split_a_row() -> None:
    text = _table_text(12)
    clean = CleanText(text=text, page_starts=(0,), page_numbers=(1,))
    counter = WordCounter()
    chunks = SentenceChunker(counter, chunk_tokens=64, overlap_tokens=8).chunk(clean)
    table_chunks = [c for c in chunks if "| State" in c.text]
    assert len(table_chunks) >= 3
    assert not any("prose" in c.text or "closing" in c.text for c in table_chunks)
    assert not any(c.text.strip() == CAPTION.strip() for c in chunks)  # never alone
    for chunk in table_chunks:
        assert chunk.text.startswith(CAPTION + HEADER)  # the caption travels with the header
        assert chunk.text[chunk.overlap_chars :] == text[chunk.char_start : chunk.char_end]
        lines = chunk.text.strip().split("\n")[2:]
        assert all(line.startswith("|") and line.endswith("|") for line in lines)
        assert counter.count_tokens([chunk.text])[0] <= 64
    assert "".join(c.text[c.overlap_chars :] for c in chunks) == text
    rows = [line for c in table_chunks for line in c.text.strip().split("\n")[4:]]
    assert rows == [f"| State{i} | {i},001 | {i},002 |" for i in range(12)]


@pytest.mark.unit
def test_cleaning_keeps_table_rows_on_their_own_lines() -> None:
    page = "Revenue by year\n| year | revenue |\n|---|---|\n| 2023 | 5 |\n| 2024 | 7 |"
    clean = clean_pages([Page(1, page)])
    assert "| year | revenue |\n|---|---|\n| 2023 | 5 |\n| 2024 | 7 |" in clean.text


# -- real PDFs ------------------------------------------------------------------


@pytest.mark.integration
def test_nics_table_becomes_markdown_rows_with_the_header(pdfs_dir: Path) -> None:
    text = _page_text(NICS, pdfs_dir)
    assert NICS_HEADER in text
    assert "| Alabama | 18,870 | 23,022 | 22,650 | 859 | 1,178 |" in text
    assert "| Wyoming | 383 | 1,745 | 2,372 |" in text
    assert text.index("NICS Firearm Background Checks") < text.index(NICS_HEADER)
    assert "HandgunLong Gun" not in text  # the glued header of plain extraction is gone


@pytest.mark.integration
def test_chinese_tables_and_the_text_between_them_keep_their_order(pdfs_dir: Path) -> None:
    text = _page_text(BOND, pdfs_dir)
    assert BOND_HEADER in text
    assert "| 1 | 工商银行 | 330,435.30 | 234,850.00 | 95,585.30 |" in text
    first_table = text.index("| 年份 |")
    between = text.index("本次发行不引用主体评级")
    assert first_table < between < text.index(BOND_HEADER)
    assert text.count("工商银行") == 1  # the table's text is not also left as plain text


@pytest.mark.integration
def test_pages_without_tables_keep_their_plain_text(pdfs_dir: Path) -> None:
    data = (pdfs_dir / "en_multicolumn_latex-lorem.pdf").read_bytes()
    with_tables = PdfParser().parse(data)
    without = PdfParser(tables=False).parse(data)
    assert with_tables.pages == without.pages


@pytest.mark.slow
def test_a_question_about_a_cell_is_answered_from_a_chunk_with_the_header(
    tmp_path: Path, pdfs_dir: Path, real_embedder
) -> None:
    settings = load_settings(data_dir=tmp_path / "kb", generator={"backend": "extractive"})
    services = build_services(settings, embedder=real_embedder)
    try:
        service = build_ingest_service(services)
        for name in (NICS, BOND, "en_multicolumn_latex-lorem.pdf"):
            assert service.ingest_path(pdfs_dir / name).ok
        pipeline = services.pipeline()
        cases = [
            (
                "How many permit checks did Kentucky have in November 2015?",
                NICS_HEADER,
                "| Kentucky | 264,140 |",
            ),
            ("工商银行的授信总额是多少？", BOND_HEADER, "| 1 | 工商银行 | 330,435.30 |"),
        ]
        for question, header, cell in cases:
            answer = pipeline.ask(question)
            assert answer.citations, (question, answer.answer)
            cited = services.kb.chunks_by_ids([answer.citations[0].chunk_id])[
                answer.citations[0].chunk_id
            ][0].text
            assert header in cited and cell in cited, (question, cited[:300])
    finally:
        services.close()
