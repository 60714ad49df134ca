"""Which page a citation points to.

A chunk can straddle a page break; the citation then names the page of the
chunk's sentence that best matches the answer sentences citing it (or the
question), so "see page 7" lands on the page that holds the words.
"""

from __future__ import annotations

from rag.query.markup import answer_spans, cites
from rag.text.sentences import split_sentences
from rag.text.terms import term_set
from rag.types import Hit


def evidence_for(answer: str, number: int, question: str) -> str:
    """The question plus the first answer sentence that cites ``[number]``.

    The first citing sentence is the one the answer leans on most; later
    ones may quote other parts of the same chunk.
    """
    citing = [answer[a:b] for a, b in answer_spans(answer) if cites(answer[a:b], number)]
    return f"{question} {citing[0]}" if citing else question


def cited_page(hit: Hit, evidence: str) -> int:
    """Page of the sentence of ``hit`` that shares the most terms with ``evidence``."""
    if not hit.page_breaks:
        return hit.page_start
    wanted = term_set(evidence)
    best_offset, best_score = 0, 0.0
    for start, end in split_sentences(hit.text):
        terms = term_set(hit.text[start:end])
        if not terms:
            continue
        score = len(terms & wanted) / len(terms) ** 0.5
        if score > best_score:
            best_offset, best_score = start, score
    return hit.page_at(best_offset)
