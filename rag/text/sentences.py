"""Sentence splitting for Chinese and English.

Returns character spans that tile the text exactly (each span keeps its
trailing whitespace), so chunkers can rebuild the text from the spans.
"""

from __future__ import annotations

import re

# A sentence ends at Chinese 。！？；… (full- or half-width after NFKC), or at
# English .!? followed by whitespace, optionally after closing quotes/brackets.
# Common English abbreviations and decimals do not end a sentence.
_CJK_END = r"[。！？；!?;…]+[”’」』)\]）】]*"
_EN_END = r"[.!?]+[\"')\]]*(?=\s)"
_BOUNDARY = re.compile(rf"({_CJK_END}|{_EN_END}|\n\s*\n)\s*")
_ABBREV = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|cf|al|Fig|Figs|Eq|Eqs|No|Dr|Mr|Mrs|Ms|Prof|Inc|Ltd|Co|Jr|Sr|St|"
    r"approx|resp|Sec|Ref|Refs|Vol|pp)|\b[A-Z])\.$"
)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``.

    The spans are contiguous and cover ``text`` from 0 to ``len(text)``.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end_punct = match.start(1) + len(match.group(1))
        if match.group(1).startswith(".") and _ABBREV.search(text[start:end_punct]):
            continue
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
