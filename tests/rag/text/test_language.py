"""Script-based language detection for the embedder's language check."""

from __future__ import annotations

import pytest

from rag.text.language import ANY_LANGUAGE, covers_language, script_language

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("BCPL由谁提出来的？", "zh"),  # 6 of 10 letters Chinese
        ("2013年于乐状态有了什么变化？", "zh"),  # digits do not count as letters
        ("國際關係是什麼？", "zh"),
        ("東京タワーはどこにありますか", "ja"),
        ("서울은 한국의 수도입니다", "ko"),
        ("What is 龙井 tea?", None),  # 2 of 11 letters Chinese: an English question
        ("Which drug lowers LDL cholesterol?", None),
        ("Quelle est la capitale de la France ?", None),  # Latin script: not told apart
        ("12345 ？！", None),
        ("", None),
    ],
)
def test_script_language(text: str, language: str | None) -> None:
    assert script_language(text) == language


def test_covers_language() -> None:
    english = frozenset({"en"})
    assert not covers_language(english, "BCPL由谁提出来的？")
    assert covers_language(english, "Which drug lowers LDL cholesterol?")
    assert covers_language(english, "12345")  # nothing tells the language
    assert covers_language(frozenset({"en", "zh"}), "BCPL由谁提出来的？")
    assert not covers_language(frozenset({"en", "zh"}), "東京タワーはどこにありますか")
    assert covers_language(frozenset({ANY_LANGUAGE}), "서울은 한국의 수도입니다")
