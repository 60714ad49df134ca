"""Cleaning rules, each on hand-made input, then headers/footers across pages."""

from __future__ import annotations

import pytest

from ingest.cleaning import clean_pages, is_page_number
from rag.types import Page

pytestmark = pytest.mark.unit


def clean(*texts: str) -> str:
    return clean_pages([Page(i + 1, t) for i, t in enumerate(texts)]).text


def test_nfkc_turns_full_width_into_half_width() -> None:
    assert clean("ＡＢＣ　１２３，ｄｅｆ！") == "ABC 123,def!"
    assert clean("eﬃcient ﬁle") == "efficient file"


def test_broken_whitespace_is_collapsed() -> None:
    assert clean("  a \t\u00a0 b\u3000c\u200b d  ") == "a b c d"
    assert clean("tab\x00s and\x07 bells") == "tabs and bells"


def test_hyphenated_line_breaks_are_rejoined() -> None:
    assert clean("an exam-\nple of hyphen-\nation") == "an example of hyphenation"


def test_hyphen_before_a_capital_or_digit_is_kept() -> None:
    assert clean("from Soekarno-\nHatta airport") == "from Soekarno-Hatta airport"
    assert clean("Boeing 737-\n8 aircraft") == "Boeing 737-8 aircraft"


def test_english_lines_broken_mid_sentence_join_with_a_space() -> None:
    assert clean("This sentence was\nbroken by the\nPDF layout.") == (
        "This sentence was broken by the PDF layout."
    )


def test_a_line_that_ends_a_sentence_keeps_its_break() -> None:
    assert clean("First sentence.\nSecond one starts here") == (
        "First sentence.\nSecond one starts here"
    )


def test_abbreviation_at_line_end_does_not_end_the_sentence() -> None:
    assert (
        clean("as shown by Gal et al.\nin their paper") == "as shown by Gal et al. in their paper"
    )


def test_chinese_lines_join_without_spaces() -> None:
    assert clean("数字交互时代，数字拟人品兼具了\n拟人产品互动性。") == (
        "数字交互时代,数字拟人品兼具了拟人产品互动性。"
    )


def test_chinese_line_ending_in_a_quote_joins_without_space() -> None:
    assert clean("以虚拟偶像“洛天依”\n为案例研究对象") == "以虚拟偶像“洛天依”为案例研究对象"


def test_spaces_between_cjk_characters_are_removed() -> None:
    assert clean("受不利经济 环境的影响 不大") == "受不利经济环境的影响不大"
    # Spaces between CJK and Latin text, and in Korean, are kept.
    assert clean("截至2023 年3 月末") == "截至2023 年3 月末"
    assert clean("안녕하세요 세계") == "안녕하세요 세계"


def test_mixed_chinese_english_line_break_gets_a_space() -> None:
    assert clean("你好世界\nHello world") == "你好世界 Hello world"


def test_paragraph_breaks_are_kept() -> None:
    assert clean("Para one line one\nline two\n\n\n\nPara two") == (
        "Para one line one line two\n\nPara two"
    )


def test_list_items_and_section_markers_start_new_lines() -> None:
    assert clean("Intro text\n• first item\n• second item") == (
        "Intro text\n• first item\n• second item"
    )
    assert clean("引言部分内容\n一、发行人情况\n（一）基本信息") == (
        "引言部分内容\n一、发行人情况\n(一)基本信息"
    )


@pytest.mark.parametrize(
    "line",
    [
        "12",
        "- 12 -",
        "— 7 —",
        "-- 24",
        "Page 3",
        "page 3 of 10",
        "3 / 10",
        "第 3 页",
        "第3页 共10页",
        "共 10 页 第 3 页",
        "iv",
        "xii",
    ],
)
def test_page_number_forms(line: str) -> None:
    assert is_page_number(line)


@pytest.mark.parametrize("line", ["12 apples", "Chapter 3", "civil", "2.5", "page three", "I"])
def test_not_page_numbers(line: str) -> None:
    assert not is_page_number(line)


def test_bare_page_numbers_at_page_edges_are_dropped() -> None:
    assert clean("12\nBody text here.", "Body text there.\n- 13 -") == (
        "Body text here.\n\nBody text there."
    )
    assert clean("第 3 页\n正文内容。\nPage 3 of 10") == "正文内容。"


def test_numbers_inside_the_page_are_kept() -> None:
    text = "Line one\nLine two\nLine three\n42\nLine five\nLine six\nLine seven"
    assert "42" in clean(text)


def _report_page(number: int, body: str) -> str:
    return (
        f"ACME Corp Annual Report 2023\n"
        f"Section {number}\n"
        f"{body}\n"
        f"Confidential - printed 2024-01-{number:02d} 10:{number:02d}\n"
        f"Page {number} of 5"
    )


def test_repeated_headers_and_footers_are_dropped() -> None:
    bodies = [f"Body of page {n} talks about topic {n}." for n in range(1, 6)]
    result = clean_pages([Page(n, _report_page(n, bodies[n - 1])) for n in range(1, 6)])
    assert "ACME Corp" not in result.text
    assert "Confidential" not in result.text
    assert "Page " not in result.text
    for body in bodies:
        assert body in result.text
    # "Section N" repeats with a varying digit too: it is a running header.
    assert "Section" not in result.text


def test_footer_glued_to_another_line_is_dropped_too() -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    bodies = [f"The {w} page starts\nand goes on about {w}\nuntil it ends." for w in words]
    footer = "VerDate Sep<11>2014 16:21 Frm 0000{n}"
    pages = [f"{bodies[n]}\n{footer.format(n=n)}\njbell on PROD" for n in range(4)]
    pages.append(f"{bodies[4]}\n{footer.format(n=4)}jbell on PROD")  # glued on this page only
    text = clean(*pages)
    assert "VerDate" not in text and "jbell" not in text
    assert text == "\n\n".join(
        f"The {w} page starts and goes on about {w} until it ends." for w in words
    )


def test_body_lines_of_short_pages_are_never_edges() -> None:
    pages = [f"Header line\nBody of page {n} talks about topic {n}.\nFooter" for n in range(5)]
    text = clean(*pages)
    assert "Header" not in text and "Footer" not in text
    for n in range(5):
        assert f"Body of page {n} talks about topic {n}." in text


def test_headers_need_several_pages() -> None:
    # Two pages cannot show that a line is a running header.
    text = clean("ACME Report\nFirst body.", "ACME Report\nSecond body.")
    assert text.count("ACME Report") == 2


def test_a_line_on_few_pages_is_not_a_header() -> None:
    pages = [f"Intro {n}\nBody {n}." for n in range(6)]
    pages[0] = "Special heading\n" + pages[0]
    pages[3] = "Special heading\n" + pages[3]
    assert clean(*pages).count("Special heading") == 2


def test_pages_join_with_blank_lines_and_record_their_starts() -> None:
    result = clean_pages([Page(1, "First page."), Page(2, "Second page."), Page(3, "Third.")])
    assert result.text == "First page.\n\nSecond page.\n\nThird."
    assert result.page_numbers == (1, 2, 3)
    assert result.page_starts == (0, 13, 27)
    for start, expected in zip(result.page_starts, ["First", "Second", "Third"], strict=True):
        assert result.text[start:].startswith(expected)
    assert result.page_at(0) == 1 and result.page_at(12) == 1
    assert result.page_at(13) == 2 and result.page_at(len(result.text) - 1) == 3


def test_empty_pages_are_dropped_and_numbering_is_kept() -> None:
    result = clean_pages([Page(1, "one"), Page(2, "  \n "), Page(3, "7"), Page(4, "four")])
    assert result.text == "one\n\nfour"
    assert result.page_numbers == (1, 4)
    assert result.page_starts == (0, 5)
    assert result.page_at(6) == 4


def test_no_text_at_all_gives_an_empty_clean_text() -> None:
    result = clean_pages([Page(1, ""), Page(2, " \n")])
    assert (result.text, result.page_starts, result.page_numbers) == ("", (), ())


def test_markdown_headings_of_structured_pages_are_not_running_headers() -> None:
    # A workbook's pages each open with their sheet's name: "# Sheet1", "# Sheet2", ...
    pages = [
        Page(n, f"# Sheet{n}\n| item | qty |\n|-|-|\n| bolt {n} | {n * 10} |") for n in range(1, 5)
    ]
    text = clean_pages(pages).text
    assert all(f"# Sheet{n}" in text for n in range(1, 5)), text
