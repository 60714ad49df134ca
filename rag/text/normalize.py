"""Unicode normalisation shared by cleaning, rules and tokenising."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"[ \t\u00a0\u3000\u2000-\u200b\u202f\u205f\ufeff]+")
_CJK = (
    r"\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff"
    r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
)
CJK_CHAR = f"[{_CJK}]"
_CJK_RE = re.compile(CJK_CHAR)


def nfkc(text: str) -> str:
    """NFKC-normalise: full-width letters, digits and punctuation become half-width.

    Chinese sentence punctuation (。，、) has no half-width compatibility form and
    is left alone; full-width ！？；： become ASCII.
    """
    return unicodedata.normalize("NFKC", text)


def collapse_spaces(text: str) -> str:
    """Collapse runs of horizontal whitespace (incl. ideographic space) to one space."""
    return _SPACES.sub(" ", text)


def normalize_text(text: str) -> str:
    """NFKC, collapse all whitespace to single spaces, trim."""
    return re.sub(r"\s+", " ", nfkc(text)).strip()


def is_cjk(char: str) -> bool:
    """True for a Chinese/Japanese/Korean character or CJK punctuation."""
    return bool(_CJK_RE.match(char))


def cjk_ratio(text: str) -> float:
    """Share of non-space characters that are CJK (language detection for answers)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if is_cjk(c)) / len(chars)
