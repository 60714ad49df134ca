"""Tables as Markdown: header detection below preambles, grouped headers, blocks."""

from __future__ import annotations

import pytest

from ingest.parsers.blocks import PAGE_BREAK, pages_from_blocks
from ingest.parsers.tables import (
    markdown_table,
    render_grid,
    split_blocks,
    split_postamble,
    split_preamble,
    trim_columns,
)
from rag.errors import EmptyDocument

pytestmark = pytest.mark.unit


def test_markdown_table_pads_rows_and_escapes_the_separator() -> None:
    assert markdown_table(["a", "b"], [["1"], ["x|y", "line\nbreak"]]) == (
        "| a | b |\n| --- | --- |\n| 1 |  |\n| x\\|y | line break |"
    )


def test_preamble_lines_above_the_header_are_not_the_header() -> None:
    rows = [
        ["Bill export", "", ""],
        ["Total: 3 records", "", ""],
        ["date", "payee", "amount"],
        ["2023-01-01", "shop", "5.00"],
        ["2023-01-02", "cafe", "6.50"],
    ]
    preamble, header, data = split_preamble(rows)
    assert preamble == ["Bill export", "Total: 3 records"]
    assert header == ["date", "payee", "amount"]
    assert data == rows[3:]


def test_a_row_of_numbers_is_never_the_header() -> None:
    _, header, data = split_preamble([["1", "2"], ["3", "4"]])
    assert header == [] and data == [["1", "2"], ["3", "4"]]


def test_grouped_header_line_is_merged_with_the_group_label_carried_right() -> None:
    rows = [
        ["Category", "Results", ""],
        ["", "Accuracy", "Time"],
        ["Blind", "34.5%", "1199 sec"],
    ]
    _, header, data = split_preamble(rows)
    assert header == ["Category", "Results Accuracy", "Results Time"]
    assert data == [["Blind", "34.5%", "1199 sec"]]


def test_trailing_single_cell_rows_under_a_wide_table_are_text() -> None:
    data, tail = split_postamble(
        ["a", "b", "c"], [["1", "2", "3"], ["Exported by the bank", "", ""]]
    )
    assert data == [["1", "2", "3"]] and tail == ["Exported by the bank"]


def test_blocks_split_at_empty_rows_and_empty_columns_go() -> None:
    blocks = split_blocks([["a", "", "b"], ["", "", ""], [" c ", "", "d"]])
    assert blocks == [[["a", "", "b"]], [["c", "", "d"]]]
    assert trim_columns(blocks[0]) == [["a", "b"]]


def test_a_header_set_off_by_an_empty_row_still_heads_its_rows() -> None:
    rows = [
        ["In millions of CHF", "", "", "", "January-June 2023"],
        ["", "Sales", "Profit", "Trading profit", "Depreciation"],
        ["", "", "", "", ""],
        ["Zone NA", "12553", "2713", "2632", "-337"],
        ["Zone EUR", "9467", "1570", "1373", "-414"],
    ]
    assert render_grid(rows) == (
        "In millions of CHF January-June 2023\n\n"
        "|  | Sales | Profit | Trading profit | Depreciation |\n"
        "| --- | --- | --- | --- | --- |\n"
        "| Zone NA | 12553 | 2713 | 2632 | -337 |\n"
        "| Zone EUR | 9467 | 1570 | 1373 | -414 |"
    )


def test_a_single_column_is_prose_not_a_table() -> None:
    assert render_grid([["First line"], ["Second line"]]) == "First line\n\nSecond line"


def test_pages_break_at_markers_and_every_n_blocks() -> None:
    pages = pages_from_blocks(["a", "b", PAGE_BREAK, "c", "", "d", "e"], "test", per_page=2)
    assert [(p.number, p.text) for p in pages] == [(1, "a\n\nb"), (2, "c\n\nd"), (3, "e")]
    with pytest.raises(EmptyDocument, match="the test holds no text"):
        pages_from_blocks(["", PAGE_BREAK, "  "], "test")
