"""Sentence and clause splitting: spans tile the text; boundaries are sensible."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.text.sentences import (
    ends_with_abbreviation,
    sentences,
    split_clauses,
    split_sentences,
)

pytestmark = pytest.mark.unit


def pieces(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_english_sentences_keep_their_trailing_space() -> None:
    assert pieces("Hello world. This is a test! Is it? Yes.") == [
        "Hello world. ",
        "This is a test! ",
        "Is it? ",
        "Yes.",
    ]


def test_abbreviations_initials_and_decimals_do_not_split() -> None:
    text = "See Fig. 3 and Gal et al. for e.g. the 3.5x speedup by Mohammad R. Haghighat. Done."
    assert pieces(text) == [
        "See Fig. 3 and Gal et al. for e.g. the 3.5x speedup by Mohammad R. Haghighat. ",
        "Done.",
    ]


def test_enumeration_labels_do_not_split() -> None:
    assert pieces("1. Introduction\nDynamic languages are popular.") == [
        "1. Introduction\n",
        "Dynamic languages are popular.",
    ]


def test_chinese_sentence_ends_without_spaces() -> None:
    text = "数字交互时代。研究发现!第一,数字拟人品?是的;对......嗯……好"
    assert pieces(text) == [
        "数字交互时代。",
        "研究发现!",
        "第一,数字拟人品?",
        "是的;",
        "对......",
        "嗯……",
        "好",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert pieces('He said "stop." Then he left.') == ['He said "stop." ', "Then he left."]
    assert pieces("他说：“走吧。”然后离开了。") == ["他说：“走吧。”", "然后离开了。"]


def test_english_semicolon_and_exclamation_without_space_do_not_split() -> None:
    assert pieces("x; y and a!b remain one") == ["x; y and a!b remain one"]


def test_line_breaks_end_units_and_blank_lines_are_absorbed() -> None:
    assert pieces("Heading\n\n\nBody text.\nNext line") == [
        "Heading\n\n\n",
        "Body text.\n",
        "Next line",
    ]


def test_sentences_helper_strips() -> None:
    assert sentences("  One.  Two.\n\n") == ["One.", "Two."]
    assert sentences("") == []


def test_clauses() -> None:
    text = "数字交互时代，数字拟人品、互动性：第一;Costs 1,000 dollars, at 12:30; done"
    assert [text[a:b] for a, b in split_clauses(text)] == [
        "数字交互时代，",
        "数字拟人品、",
        "互动性：",
        "第一;",
        "Costs 1,000 dollars, ",
        "at 12:30; ",
        "done",
    ]


def test_ends_with_abbreviation() -> None:
    assert ends_with_abbreviation("as shown by Gal et al.")
    assert ends_with_abbreviation("see e.g.  ")
    assert not ends_with_abbreviation("This is the end.")


_ALPHABET = "ab Z.!?;,，。！？；：“”\n\t 中文字1"


@given(st.text(alphabet=_ALPHABET, max_size=200))
@settings(max_examples=200, deadline=None)
def test_sentence_and_clause_spans_tile_any_text(text: str) -> None:
    for spans in (split_sentences(text), split_clauses(text)):
        assert "".join(text[a:b] for a, b in spans) == text
        assert all(b > a for a, b in spans)
        assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
