"""Answer-level measures: correctness against gold spans, citation support, refusals.

Correctness follows the SQuAD 2.0 evaluation script (Rajpurkar et al. 2018):
answers and gold spans are normalised (lower case, punctuation and the
articles a/an/the removed, whitespace collapsed) and compared by token F1,
the best over the gold spans. Chinese follows the CMRC 2018 script (Cui et
al. 2019): NFKC, no punctuation or spaces, and every Chinese character is
one token (a run of Latin letters or digits stays one token, as there).
Because a RAG answer is a sentence or three rather than an extracted span,
we also report "contains gold" (the normalised answer holds a normalised gold
span) and both measures on the answer's first sentence.

Citations follow ALCE (Gao et al. 2023, "Enabling Large Language Models to
Generate Text with Citations"): citation recall is the share of answer
sentences supported by the union of the chunks they cite; citation precision
is the share of citations that are needed (a citation is not needed when the
sentence is supported, the citation alone does not support it and the other
citations still do). ALCE judges support with an NLI model; here it is the
deterministic :func:`supports`.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rag.query.markup import answer_spans, cited_numbers, strip_citation_markers
from rag.text.normalize import cjk_ratio, is_cjk, nfkc
from rag.text.terms import tokenize

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
# Share of a sentence's distinct content terms a passage must hold to support
# it. Four fifths: a sentence quoted or lightly reworded from the passage
# passes; one that adds a name or number the passage lacks (one term in the
# four to eight a short answer sentence has) mostly fails.
SUPPORT_COVERAGE = 0.8
# Above this share of CJK characters a question is scored as Chinese (the
# pipeline's own language switch for its "not found" message uses 0.3 too).
CHINESE_RATIO = 0.3


def answer_language(question: str, golds: Sequence[str] = ()) -> str:
    """``"zh"`` when the question (with its gold spans) is mostly Chinese, else ``"en"``."""
    return "zh" if cjk_ratio(" ".join([question, *golds])) > CHINESE_RATIO else "en"


def strip_markers(text: str) -> str:
    """``text`` without citation markers, so "[1]" never counts as an answer token."""
    return strip_citation_markers(text)


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def normalize_answer(text: str, language: str = "en") -> str:
    """SQuAD normalisation (``"en"``) or CMRC normalisation (``"zh"``) of ``text``.

    English: lower case, punctuation removed (ASCII as in SQuAD, and Unicode
    punctuation such as curly quotes, which SQuAD's gold spans never hold),
    articles removed, whitespace collapsed to single spaces. Chinese: NFKC,
    lower case, punctuation and all whitespace removed. Citation markers go first.
    """
    text = strip_markers(text)
    if language == "zh":
        text = nfkc(text).lower()
        return "".join(c for c in text if not c.isspace() and not _is_punctuation(c))
    text = "".join(c for c in text.lower() if not _is_punctuation(c))
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str, language: str = "en") -> list[str]:
    """Tokens for F1: SQuAD words, or CMRC characters (Latin and digit runs kept whole)."""
    if language == "zh":
        normalized = normalize_answer(text, "zh")
        tokens: list[str] = []
        run = ""
        for char in normalized:
            if is_cjk(char):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(char)
            else:
                run += char
        if run:
            tokens.append(run)
        return tokens
    return normalize_answer(text, "en").split()


def token_f1(prediction: str, golds: Sequence[str], language: str = "en") -> float:
    """SQuAD token F1 of ``prediction`` against the best gold span (0 when there are none).

    F1 = 2PR / (P + R) with P = shared tokens / prediction tokens and R =
    shared tokens / gold tokens, shared tokens counted with multiplicity.
    """
    predicted = answer_tokens(prediction, language)
    best = 0.0
    for gold in golds:
        expected = answer_tokens(gold, language)
        if not expected or not predicted:
            continue
        shared = sum((Counter(predicted) & Counter(expected)).values())
        if shared == 0:
            continue
        precision, recall = shared / len(predicted), shared / len(expected)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains_gold(text: str, golds: Sequence[str], language: str = "en") -> bool:
    """Whether the normalised ``text`` holds a normalised gold span.

    English compares whole words ("in" is not found in "within"); Chinese,
    having no spaces, compares characters.
    """
    if language == "zh":
        haystack = normalize_answer(text, "zh")
        return any(g and g in haystack for g in (normalize_answer(x, "zh") for x in golds))
    haystack = f" {normalize_answer(text)} "
    return any(g and f" {g} " in haystack for g in (normalize_answer(x) for x in golds))


def answer_sentences(text: str) -> list[tuple[str, list[int]]]:
    """The answer's sentences, each with the source numbers it cites.

    Markers written after the full stop ("X. [1]") belong to the sentence
    before them, as in the pipeline's citation check; sentences with no
    words (a stray marker) are dropped.
    """
    out = []
    for start, end in answer_spans(text):
        sentence = text[start:end].strip()
        if any(c.isalnum() for c in strip_markers(sentence)):
            out.append((sentence, cited_numbers(sentence)))
    return out


def first_sentence(text: str) -> str:
    """The answer's first sentence, with its citation markers ("" for an empty answer)."""
    found = answer_sentences(text)
    return found[0][0] if found else ""


def supports(passage: str, sentence: str, golds: Sequence[str] = (), language: str = "en") -> bool:
    """Whether ``passage`` supports ``sentence``: a deterministic stand-in for ALCE's NLI judge.

    Supported when either holds:

    * the sentence states a gold span and the passage holds that same span
      (the answer's claim is in the cited text), or
    * the passage holds at least :data:`SUPPORT_COVERAGE` of the sentence's
      distinct content terms (:func:`rag.text.terms.tokenize`: stemmed
      English, jieba-cut Chinese, stop words dropped), so a quoted or closely
      reworded sentence passes and one with facts the passage lacks fails.

    A sentence with no content terms and no gold span is not supported.
    """
    for gold in golds:
        if contains_gold(sentence, [gold], language) and contains_gold(passage, [gold], language):
            return True
    terms = set(tokenize(strip_markers(sentence)))
    if not terms:
        return False
    return len(terms & set(tokenize(passage))) / len(terms) >= SUPPORT_COVERAGE


@dataclass(frozen=True)
class CitationScores:
    """ALCE citation measures of one answer.

    Attributes:
        recall: Share of sentences supported by their cited chunks together
            (a sentence citing nothing is unsupported); None with no sentences.
        precision: Share of citations needed; None with no citations.
        sentences: Sentences scored.
        citations: Citation markers counted (per sentence, as ALCE counts them).
    """

    recall: float | None
    precision: float | None
    sentences: int
    citations: int


def citation_scores(
    answer: str,
    passages: Mapping[int, str],
    golds: Sequence[str] = (),
    language: str = "en",
) -> CitationScores:
    """Citation recall and precision of ``answer`` (ALCE, with :func:`supports` as judge).

    Args:
        answer: The answer text with markers ``[n]``.
        passages: Source number -> the full text of the chunk it names.
        golds: Gold spans (the first support rule uses them).
        language: ``"en"`` or ``"zh"``.

    A marker naming no passage makes its sentence unsupported, as in ALCE.
    """
    sentences = answer_sentences(answer)
    supported = needed = total = 0
    for sentence, numbers in sentences:
        total += len(numbers)
        if not numbers or any(n not in passages for n in numbers):
            continue

        def joint(subset: Sequence[int], sentence: str = sentence) -> bool:
            return supports("\n".join(passages[n] for n in subset), sentence, golds, language)

        if not joint(numbers):
            continue
        supported += 1
        if len(numbers) == 1:
            needed += 1
            continue
        for number in numbers:
            alone = joint([number])
            rest_suffices = joint([n for n in numbers if n != number])
            if alone or not rest_suffices:
                needed += 1
    return CitationScores(
        recall=supported / len(sentences) if sentences else None,
        precision=needed / total if total else None,
        sentences=len(sentences),
        citations=total,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation as numpy's default); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float | bool]) -> float | None:
    """Arithmetic mean (booleans count as 0/1); None for no values."""
    return sum(float(v) for v in values) / len(values) if values else None
