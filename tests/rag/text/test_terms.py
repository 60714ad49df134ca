"""The keyword tokeniser on mixed-script text, checked by hand."""

from __future__ import annotations

import pytest

from rag.text.terms import term_set, tokenize

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        # Latin letters inside Chinese: one run per script (was ['bcpl由谁提出来的']).
        ("BCPL由谁提出来的？", ["bcpl", "提出", "来"]),
        # A year glued to Chinese: the number and the character separately.
        ("2013年于乐状态有了什么变化？", ["2013", "年", "于乐", "状态", "变化"]),
        ("1966年由剑桥大学的马丁", ["1966", "年", "剑桥", "大学", "剑桥大学", "马丁"]),
        ("4分钟", ["4", "分钟"]),
        # Full-width letters and digits are NFKC-folded to ASCII.
        ("ＢＣＰＬ和Ｃ语言", ["bcpl", "c", "语言"]),
        ("Ａｂｃ１２３", ["abc", "123"]),
        # Letters and digits split, as a hyphen already split them.
        ("IL6 and IL-6", ["il", "6", "il", "6"]),
        ("COVID-19 疫苗", ["covid", "19", "疫苗"]),
        # English as before: stop words dropped, possessive removed, stemmed.
        ("The treatments of France's patients", ["treatment", "franc", "patient"]),
    ],
)
def test_mixed_script_text_is_cut_at_script_boundaries(text: str, terms: list[str]) -> None:
    assert tokenize(text) == terms


def test_traditional_characters_match_simplified() -> None:
    assert tokenize("國際關係") == tokenize("国际关系") == ["国际", "关系"]
    assert tokenize("劍橋大學的馬丁") == tokenize("剑桥大学的马丁")
    assert term_set("BCPL語言") == {"bcpl", "语言"}


def test_stop_words_and_stemming_can_be_kept() -> None:
    assert tokenize("The treatments", stem=False, drop_stop_words=False) == ["the", "treatments"]
    assert tokenize("谁提出的", drop_stop_words=False) == ["谁", "提出", "的"]


def test_punctuation_and_empty_text_give_no_terms() -> None:
    assert tokenize("") == []
    assert tokenize("？！，。 ... --") == []
