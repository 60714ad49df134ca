"""Which language a text is in, as far as its script tells.

Retrieval needs one decision: is the question in a language the embedder was
trained on? Chinese, Japanese and Korean are told apart by their scripts
(ideographs, kana, hangul); Latin-script languages are not told apart here, so
:func:`script_language` returns None for them and callers treat the text as
covered by any embedder.
"""

from __future__ import annotations

from collections.abc import Collection

# Embedder language sets use ISO 639-1 codes; this one means "every language".
ANY_LANGUAGE = "*"
# A script must make up this share of a text's letters (digits, spaces and
# punctuation not counted) to decide its language: "BCPL由谁提出来的" (6 of 10
# letters Chinese) is Chinese, "What is 龙井 tea?" (2 of 11) is English.
MIN_SCRIPT_SHARE = 0.3
# Japanese mixes kana into kanji; Chinese text has none (a stray katakana
# loanword aside), so a tenth of the CJK letters in kana means Japanese.
MIN_KANA_SHARE = 0.1


def _is_ideograph(char: str) -> bool:
    code = ord(char)
    return 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF


def _is_kana(char: str) -> bool:
    return 0x3040 <= ord(char) <= 0x30FF


def _is_hangul(char: str) -> bool:
    code = ord(char)
    return 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def script_language(text: str) -> str | None:
    """``"zh"``, ``"ja"`` or ``"ko"`` when that script dominates ``text``'s letters, else None.

    None means the script does not identify the language (Latin, Cyrillic, no
    letters at all).
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    han = sum(map(_is_ideograph, letters))
    kana = sum(map(_is_kana, letters))
    hangul = sum(map(_is_hangul, letters))
    if hangul >= MIN_SCRIPT_SHARE * len(letters):
        return "ko"
    if han + kana >= MIN_SCRIPT_SHARE * len(letters):
        return "ja" if kana >= MIN_KANA_SHARE * (han + kana) else "zh"
    return None


def covers_language(languages: Collection[str], text: str) -> bool:
    """Whether a model trained on ``languages`` handles ``text``.

    Args:
        languages: ISO 639-1 codes, or :data:`ANY_LANGUAGE` among them.
        text: The question.

    Returns:
        True unless the script identifies a language missing from ``languages``.
    """
    if ANY_LANGUAGE in languages:
        return True
    language = script_language(text)
    return language is None or language in languages
