"""Office and e-book formats on the real shared files: every "must extract" string.

The expected strings are read from ../shared/datasets/office/README.md (the
table's "must extract" column, each string in backticks), so the test
follows that list as it is, not a copy of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.parsers import get_parser, parse_bytes
from ingest.sniff import CSV, DOCX, EPUB, HTML, ODT, PPTX, XLSX
from rag.errors import EmptyDocument, EncryptedDocument, ParseError
from rag.protocols import Parser
from tests.conftest import SHARED, shared_path

pytestmark = pytest.mark.unit

OFFICE = SHARED / "office"
_ROW = re.compile(r"^\| `([^`]+)` \|(.*)$", re.MULTILINE)
_PASSWORD = re.compile(r"[Pp]assword \*\*`([^`]+)`\*\*")


def _cases() -> list[tuple[str, str]]:
    """(file name, expected string) for every string of the README's table."""
    readme = OFFICE / "README.md"
    if not readme.exists():
        return []
    cases = []
    for name, rest in _ROW.findall(readme.read_text(encoding="utf-8")):
        columns = rest.split(" | ")
        must_extract = columns[4] if len(columns) > 4 else ""
        cases.extend((name, text) for text in _expected_strings(must_extract))
    return cases


# A backticked string, or a parenthesised note that may hold some.
_TOKEN = re.compile(r"`([^`]+)`|\(((?:[^()`]|`[^`]*`)*)\)")


def _expected_strings(column: str) -> list[str]:
    """Backticked strings of a "must extract" cell, without those in notes.

    Notes in parentheses name where a string sits or its markup
    ("(chart title, in `ppt/charts/chart1.xml`)"); only "(also ...)" notes
    list further strings.
    """
    found = []
    for match in _TOKEN.finditer(column):
        if match.group(1) is not None:
            found.append(match.group(1))
        elif match.group(2).startswith("also"):
            found.extend(re.findall(r"`([^`]+)`", match.group(2)))
    return found


def _password(name: str) -> str | None:
    """The password the README gives for a file, if any."""
    for row_name, rest in _ROW.findall((OFFICE / "README.md").read_text(encoding="utf-8")):
        if row_name == name:
            found = _PASSWORD.search(rest)
            return found.group(1) if found else None
    return None


def _normalised(text: str) -> str:
    return " ".join(text.split())


_TEXTS: dict[str, str] = {}


def _parsed_text(name: str) -> str:
    """Whitespace-normalised parser output of a shared file (parsed once per session)."""
    if name not in _TEXTS:
        path = shared_path("office", name)
        document = parse_bytes(path.read_bytes(), path.name, password=_password(name))
        _TEXTS[name] = _normalised("\n\n".join(page.text for page in document.pages))
    return _TEXTS[name]


CASES = _cases()


def test_the_readme_lists_the_expected_strings() -> None:
    shared_path("office", "README.md")
    assert len(CASES) >= 100, f"parsed only {len(CASES)} strings from the README's table"


@pytest.mark.parametrize(
    ("name", "expected"),
    CASES
    or [
        pytest.param(
            "",
            "",
            marks=pytest.mark.skip(
                reason=f"shared dataset {OFFICE} is absent (expected ../shared/datasets)"
            ),
        )
    ],
)
def test_must_extract_string_is_in_the_parsed_text(name: str, expected: str) -> None:
    assert _normalised(expected) in _parsed_text(name)


@pytest.mark.parametrize("media_type", [CSV, DOCX, EPUB, ODT, PPTX, XLSX])
def test_every_new_format_has_a_parser_behind_the_protocol(media_type: str) -> None:
    parser = get_parser(media_type)
    assert isinstance(parser, Parser) and parser.media_type == media_type
    with pytest.raises(EmptyDocument, match="file is empty"):
        parser.parse(b"")


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("en_docx_tables_word_tables.docx", DOCX),
        ("en_pptx_merged-table-notes_powerpoint_sample.pptx", PPTX),
        ("en_xlsx_multi-table-merged_test-01.xlsx", XLSX),
        ("zh_csv_gbk_example-alipay-records.csv", CSV),
        ("en_epub3_markitdown-test.epub", EPUB),
        ("en_odt_table_fake.odt", ODT),
        ("zh_html_mislabeled-charset_qq-source.html", HTML),
    ],
)
def test_the_type_comes_from_the_bytes_not_the_name(name: str, media_type: str) -> None:
    data = shared_path("office", name).read_bytes()
    assert parse_bytes(data, "upload.bin").media_type == media_type
    assert parse_bytes(data, None).media_type == media_type


@pytest.mark.parametrize(
    "name",
    [
        "encrypted_docx_testWORD_protected_passtika.docx",
        "encrypted_xlsx_testEXCEL_protected_passtika.xlsx",
    ],
)
def test_encrypted_office_file_without_password_says_pass_the_password(name: str) -> None:
    data = shared_path("office", name).read_bytes()
    with pytest.raises(EncryptedDocument, match="encrypted") as info:
        parse_bytes(data, name)
    assert "--password" in info.value.message and "'password' form field" in info.value.message


@pytest.mark.parametrize(
    "name",
    [
        "encrypted_docx_testWORD_protected_passtika.docx",
        "encrypted_xlsx_testEXCEL_protected_passtika.xlsx",
    ],
)
def test_encrypted_office_file_with_a_wrong_password_says_it_is_wrong(name: str) -> None:
    data = shared_path("office", name).read_bytes()
    with pytest.raises(EncryptedDocument, match="password is wrong"):
        parse_bytes(data, name, password="not-the-password")


def test_encrypted_odt_is_reported_as_encrypted_not_garbage() -> None:
    name = "encrypted_odt_testODTEncrypted.odt"
    with pytest.raises(EncryptedDocument, match="encrypted") as info:
        parse_bytes(shared_path("office", name).read_bytes(), name, password="guess")
    assert "unprotected copy" in info.value.message


def test_truncated_docx_is_a_clear_corrupt_file_error() -> None:
    name = "malformed_docx_testWORD_truncated.docx"
    with pytest.raises(ParseError, match="corrupt or truncated") as info:
        parse_bytes(shared_path("office", name).read_bytes(), name)
    assert not isinstance(info.value, EncryptedDocument)


def test_a_cut_off_pptx_is_a_clear_corrupt_file_error() -> None:
    data = shared_path("office", "en_pptx_merged-table-notes_powerpoint_sample.pptx").read_bytes()
    with pytest.raises(ParseError, match="corrupt or truncated"):
        parse_bytes(data[: len(data) // 2], "deck.pptx")


def test_one_page_per_slide_and_per_sheet() -> None:
    deck = parse_bytes(
        shared_path("office", "en_pptx_table-chart-groups_markitdown-test.pptx").read_bytes()
    )
    assert [page.number for page in deck.pages] == [1, 2, 3, 4, 5, 6]
    assert "a3f6004b-6f4f-4ea8-bee3-3741f4dc385f" in deck.pages[3].text  # the chart, slide 4
    book = parse_bytes(
        shared_path(
            "office", "en_xlsx_multisheet_2023-half-year-analyses-by-segment.xlsx"
        ).read_bytes()
    )
    assert book.page_count == 5
    assert book.pages[0].text.startswith("# OS-Rev.and results 30 06 2023")


def test_epub3_navigation_document_is_skipped() -> None:
    book = parse_bytes(shared_path("office", "en_epub3_markitdown-test.epub").read_bytes())
    text = "\n".join(page.text for page in book.pages)
    assert book.page_count == 2
    assert text.count("Chapter 1: Test Content") == 1  # not again from nav.xhtml


def test_docx_merged_cells_appear_once() -> None:
    document = parse_bytes(shared_path("office", "en_docx_tables_word_tables.docx").read_bytes())
    text = document.pages[0].text
    assert text.count("Merged Cell 1.1 1.2") == 2  # once in each of the two tables holding it
    assert text.count("Merged Cell 1.1 2.1") == 2


def test_docx_headings_by_outline_level_and_lists_as_bullets() -> None:
    text = "\n".join(
        page.text
        for page in parse_bytes(
            shared_path("office", "en_docx_lists-image_word_sample.docx").read_bytes()
        ).pages
    )
    assert "\n# Let’s swim!\n" in text
    assert "\n## Let’s eat" in text
    assert "\n- Wear sunglasses\n" in text


def test_csv_preamble_is_text_and_the_real_header_heads_the_table() -> None:
    text = (
        parse_bytes(shared_path("office", "zh_csv_gbk_example-alipay-records.csv").read_bytes())
        .pages[0]
        .text
    )
    preamble, table = text.split("\n\n| ", 1)
    assert "共66笔记录" in preamble
    assert table.startswith("交易时间 | 交易分类 | 交易对方 |")  # stripped of its padding
    assert table.count("\n| 2023-") == 10  # the ten data rows, one line each


def test_grouped_csv_header_is_merged_into_one_header_row() -> None:
    name = "en_csv_multirow-header_table-multi-row-column-cells-actual.csv"
    text = parse_bytes(shared_path("office", name).read_bytes()).pages[0].text
    assert text.splitlines()[0] == (
        "| Disability Category | Participants | Ballots Completed | "
        "Ballots Incomplete/Terminated | Results Accuracy | Results Time to complete |"
    )


def test_html_main_content_drops_navigation_boilerplate(tmp_path: Path) -> None:
    text = (
        parse_bytes(shared_path("office", "en_html_wikipedia_wiki_duck.html").read_bytes())
        .pages[0]
        .text
    )
    assert "Duck is the common name for numerous species" in text
    for boilerplate in ("Privacy policy", "Create account", "Toggle the table of contents"):
        assert boilerplate not in text
