"""Sentence and clause splitting for Chinese and English.

Returns character spans that tile the text exactly (each span keeps its
trailing whitespace), so chunkers can rebuild the text from the spans.
"""

from __future__ import annotations

import re

from rag.text.normalize import CJK_CHAR

# Closing quotes and brackets that stay with the sentence they end.
_CLOSERS = r"[\"'”’」』)\]）】》]*"
# Chinese sentences end at 。！？… (always), or at the half-width !?; and ...
# that NFKC produces from ！？；…… when a CJK character precedes them; no space
# follows in Chinese, so none is required.
_CJK_END = rf"(?:[。！？…]|(?<={CJK_CHAR})[!?;；]|(?<={CJK_CHAR})\.{{3,}})[。！？!?;；…]*{_CLOSERS}"
# English sentences end at .!? followed by whitespace or the end of the text.
_EN_END = rf"[.!?]+{_CLOSERS}(?=\s|$)"
# A line break ends a unit too: cleaned text keeps a newline only where a line
# ended a sentence, or before a heading, list item or table row.
_BOUNDARY = re.compile(rf"({_CJK_END}|{_EN_END}|\n)\s*")
# Common abbreviations, initials and enumeration labels ("1.", "2.3.", "a.")
# do not end a sentence.
_ABBREV = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|cf|al|Fig|Figs|Eq|Eqs|No|Dr|Mr|Mrs|Ms|Prof|Inc|Ltd|Co|Jr|Sr|St|"
    r"approx|resp|Sec|Ref|Refs|Vol|pp)|\b[A-Z])\.$"
)
_ENUM_LABEL = re.compile(r"^\s*(?:\d{1,3}|[A-Za-z])(?:\.\d{1,3})*\.$")
# Clause punctuation used to split a sentence that alone is too long for a
# chunk. A half-width comma/colon/semicolon counts only next to CJK text or
# before whitespace, so "1,000" and "12:30" stay whole.
_CLAUSE = re.compile(rf"(?:[，、：；]|(?<={CJK_CHAR})[,:;]|[,:;](?=\s))\s*")


def _ends_sentence(text: str, start: int, match: re.Match[str]) -> bool:
    """False when a '.' boundary only closes an abbreviation or a list label."""
    punct = match.group(1)
    if not punct.startswith("."):
        return True
    before = text[start : match.start(1) + len(punct)]
    return not (_ABBREV.search(before) or _ENUM_LABEL.match(before))


def ends_with_abbreviation(text: str) -> bool:
    """True when ``text`` ends with an abbreviation such as "e.g." or "et al.".

    The cleaner uses it to decide that a line ending in "." is not the end of
    a sentence.
    """
    return bool(_ABBREV.search(text.rstrip()))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``.

    The spans are contiguous and cover ``text`` from 0 to ``len(text)``; each
    keeps the whitespace that follows it. Line breaks end a span too.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if not _ends_sentence(text, start, match):
            continue
        end = match.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def split_clauses(text: str) -> list[tuple[int, int]]:
    """Character spans of the clauses of ``text`` (split after ，,、：:;).

    Like :func:`split_sentences`, the spans tile ``text`` exactly.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _CLAUSE.finditer(text):
        end = match.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped."""
    return [s for s in (text[a:b].strip() for a, b in split_sentences(text)) if s]
