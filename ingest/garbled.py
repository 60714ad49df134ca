"""Detect extracted text that is garbage: broken font maps, not language.

A PDF font whose ToUnicode map is missing or wrong makes text extraction
return glyph ids as characters: U+FFFD replacement characters, private-use
code points, control characters, or letters of scripts that never meet in one
word ("ÐºÐ¾" from a mis-decoded Cyrillic, Greek next to Armenian). Such text
embeds as noise and matches nothing, so a page that reads like that is OCR'd
instead, or the document fails with the reason (see ``ingest/parsers/pdf.py``).

The verdict is a pure function of the text, so it is tested on hand-made
strings; the thresholds below are set so that real text in any one script
(and Chinese mixed with English, as in most Chinese technical documents)
scores far below them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Fewer visible characters than this prove nothing either way (a page number,
# a one-word caption): such a page is never called garbled.
MIN_JUDGED_CHARS = 20
# Share of visible characters that are replacement, private-use, control,
# unassigned or surrogate code points from which a page is garbled. Real text
# has none; a few private-use icons (bullets from symbol fonts) stay far below.
MAX_BAD_SHARE = 0.3
# Share of words (runs of 2+ letters) that mix letters of unrelated scripts
# from which a page is garbled. Real text mixes scripts between words, almost
# never inside one.
MAX_MIXED_WORD_SHARE = 0.4
# Share of visible characters that are not letters, digits, punctuation or
# common symbols (i.e. combining marks, format characters, exotic symbols)
# from which a page is garbled.
MAX_ODD_SHARE = 0.5

# pdfminer (and so pdfplumber) writes a glyph it cannot map as "(cid:123)".
_CID = re.compile(r"\(cid:\d+\)")
_WORD = re.compile(r"[^\W\d_]{2,}")
_BAD_CATEGORIES = frozenset({"Co", "Cn", "Cs", "Cc"})
_USUAL_CATEGORIES = frozenset(
    {"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No"}
    | {"Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"}
    | {"Sm", "Sc", "Sk", "So"}
)
# Scripts that share words in real text: CJK ideographs with kana (Japanese),
# with Hangul (Korean), and with Latin (Chinese prose quoting English terms
# without a space, e.g. "用worth表示").
_COMPATIBLE = (
    frozenset({"CJK", "HIRAGANA", "KATAKANA", "LATIN"}),
    frozenset({"CJK", "HANGUL", "LATIN"}),
)


@dataclass(frozen=True)
class GarbleVerdict:
    """Why a text was (or was not) judged garbled, with the measured shares."""

    garbled: bool
    reason: str
    bad_share: float = 0.0
    mixed_word_share: float = 0.0
    odd_share: float = 0.0


def _script(char: str) -> str:
    """The script of a letter, from its Unicode name ("CYRILLIC SMALL LETTER A" → CYRILLIC)."""
    name = unicodedata.name(char, "")
    if not name:
        return "UNKNOWN"
    first = name.split(" ", 1)[0]
    if first in ("CJK", "KANGXI") or name.startswith("IDEOGRAPHIC"):
        return "CJK"
    if first in ("HALFWIDTH", "FULLWIDTH"):
        parts = name.split(" ")
        return parts[1] if len(parts) > 1 else first
    return first


def _mixes_scripts(word: str) -> bool:
    """True when ``word`` holds letters of scripts that do not share words."""
    scripts = {_script(char) for char in word}
    if len(scripts) <= 1:
        return False
    return not any(scripts <= group for group in _COMPATIBLE)


def judge_text(text: str) -> GarbleVerdict:
    """Whether ``text`` (one page) is garbage from a broken font map.

    Returns:
        The verdict; ``reason`` names the rule that fired, in words a user
        can act on, or says why the text passed.
    """
    cids = len(_CID.findall(text))
    # An unmapped glyph counts as bad as many times as its "(cid:N)" is long.
    stripped = _CID.sub(lambda match: "\ufffd" * len(match.group()), text)
    visible = [char for char in stripped if not char.isspace()]
    if len(visible) < MIN_JUDGED_CHARS:
        return GarbleVerdict(False, f"too little text to judge ({len(visible)} characters)")
    categories = [unicodedata.category(char) for char in visible]
    bad = sum(1 for char, cat in zip(visible, categories, strict=True) if cat in _BAD_CATEGORIES)
    bad += sum(1 for char in visible if char == "\ufffd")
    bad_share = bad / len(visible)
    odd = sum(
        1 for cat in categories if cat not in _USUAL_CATEGORIES and cat not in _BAD_CATEGORIES
    )
    odd_share = odd / len(visible)
    words = _WORD.findall(stripped)
    mixed = sum(1 for word in words if _mixes_scripts(word))
    mixed_share = mixed / len(words) if words else 0.0
    shares = {"bad_share": bad_share, "mixed_word_share": mixed_share, "odd_share": odd_share}
    if bad_share >= MAX_BAD_SHARE:
        what = f"{cids} unmapped glyphs (cid:N)" if cids else "replacement/private-use characters"
        return GarbleVerdict(
            True, f"{bad_share:.0%} of the characters are {what} (broken font map)", **shares
        )
    if len(words) >= 5 and mixed_share >= MAX_MIXED_WORD_SHARE:
        return GarbleVerdict(
            True,
            f"{mixed_share:.0%} of the words mix letters of unrelated scripts (broken font map)",
            **shares,
        )
    if odd_share >= MAX_ODD_SHARE:
        return GarbleVerdict(
            True, f"{odd_share:.0%} of the characters are marks or format characters", **shares
        )
    return GarbleVerdict(False, "reads as text", **shares)


def is_garbled(text: str) -> bool:
    """True when ``text`` is judged garbage (see :func:`judge_text`)."""
    return judge_text(text).garbled
