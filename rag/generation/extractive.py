"""An answer built from the sources' own sentences, without a language model.

It is the fallback when no model is configured or the model fails, and the
fast generator that lets the whole upload-to-answer path run in tests. Every
sentence it returns is quoted from a source and carries that source's marker,
so its citations are correct by construction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rag.errors import GeneratorUnavailable, InvalidInput
from rag.generation import estimate_tokens
from rag.generation.answer_phrase import answer_phrase, has_typed_candidate
from rag.query.markup import cite_sentence
from rag.text.normalize import is_cjk, normalize_text
from rag.text.sentences import sentences
from rag.text.terms import term_set
from rag.types import Hit

log = logging.getLogger(__name__)

# A sentence holding a phrase of the kind the question asks for (a date for "when",
# a number for "how many") outranks one that shares the same words without it.
TYPED_ANSWER_BONUS = 0.5


@dataclass(frozen=True)
class _Candidate:
    score: float
    source: int  # 1-based position of the source
    position: int  # sentence index inside the source
    text: str

    @property
    def rank_key(self) -> tuple[float, int, int]:
        # Best score first; ties go to the better-ranked source, then the earlier sentence.
        return (-self.score, self.source, self.position)


def term_weights(question_terms: set[str], texts: Sequence[set[str]]) -> dict[str, float]:
    """Inverse document frequency of each question term over the candidate sentences.

    ``ln(1 + n / df)`` with ``n`` sentences and ``df`` of them holding the term
    (a term in none weighs ``ln(1 + n)``): the question's rare words ("Rollo",
    "treaty") say more about which sentence answers than its common ones
    ("Normans" in an article about the Normans). The ``1 +`` keeps every weight
    positive, so a term held by every sentence still counts a little.
    """
    n = len(texts)
    return {
        term: math.log(1 + n / max(1, sum(term in t for t in texts))) for term in question_terms
    }


@dataclass(frozen=True)
class Excerpt:
    """A source sentence chosen to answer a question.

    Attributes:
        source: 1-based position of its source in the list given.
        text: The sentence, whitespace normalised.
        score: Its weighted question-term score (0 when it shares no term).
    """

    source: int
    text: str
    score: float


def _shorten(sentence: str, limit: int) -> str:
    if len(sentence) <= limit:
        return sentence
    cut = sentence[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


class ExtractiveGenerator:
    """Answers with the source sentences that share the most terms with the question.

    Use :meth:`answer`; the Generator-protocol methods exist so the backend can
    be chosen by setting, but they raise because chat messages do not carry
    the sources as structured data.
    """

    name = "extractive"

    def __init__(
        self,
        *,
        max_sentences: int = 3,
        max_sentence_chars: int = 400,
        context_length: int = 8192,
        short_answer: bool = True,
    ) -> None:
        """Configure the answer's size.

        Args:
            max_sentences: Most sentences in an answer.
            max_sentence_chars: Longer sentences (tables, run-on text) are cut at a word.
            context_length: Reported context, so callers can budget sources as for a model.
            short_answer: Open the answer with the phrase of the best sentence that
                answers the question (:func:`rag.generation.answer_phrase.answer_phrase`).
        """
        if max_sentences < 1:
            raise InvalidInput(f"max_sentences must be at least 1, got {max_sentences}")
        if max_sentence_chars < 20:
            raise InvalidInput(f"max_sentence_chars must be at least 20, got {max_sentence_chars}")
        self.max_sentences = max_sentences
        self.max_sentence_chars = max_sentence_chars
        self.context_length = context_length
        self.short_answer = short_answer

    def best_sentences(self, question: str, sources: Sequence[Hit]) -> list[Excerpt]:
        """The source sentences that answer ``question`` best, best first.

        Sentences are scored by the question terms (BM25 terms: stemmed
        English, jieba-cut Chinese, stop words dropped) they hold, each weighted
        by :func:`term_weights`, and raised by :data:`TYPED_ANSWER_BONUS` when
        they hold a phrase of the kind the question asks for. Up to
        ``max_sentences`` are kept, each scoring at least two thirds of the best
        so weak matches do not dilute the answer. When no sentence shares a
        term, the first sentence of the first source is used.

        Args:
            question: The user's question.
            sources: Retrieved hits, best first; ``Excerpt.source`` n is ``sources[n-1]``.

        Raises:
            InvalidInput: ``sources`` is empty or holds no text.
        """
        if not sources:
            raise InvalidInput("the extractive generator needs at least one source, got none")
        question_terms = term_set(question)
        found = [
            (number, position, sentence, term_set(sentence))
            for number, hit in enumerate(sources, start=1)
            for position, sentence in enumerate(sentences(hit.text))
        ]
        if not found:
            raise InvalidInput("the extractive generator's sources hold no text")
        weights = term_weights(question_terms, [terms for *_, terms in found])
        candidates: list[_Candidate] = []
        for number, position, sentence, terms in found:
            score = sum(weights[t] for t in question_terms & terms)
            if score and has_typed_candidate(question, normalize_text(sentence)):
                score *= 1 + TYPED_ANSWER_BONUS
            candidates.append(_Candidate(score, number, position, sentence))
        candidates.sort(key=lambda c: c.rank_key)
        best = candidates[0].score
        if best == 0:
            # All ties: the sort put the first sentence of the first source holding text first.
            return [Excerpt(candidates[0].source, normalize_text(candidates[0].text), 0.0)]
        # Two thirds of the best score: a sentence sharing only a common word or
        # two with the question ("employees", "day") is noise next to the answer.
        floor = 2 * best / 3
        chosen: list[Excerpt] = []
        seen: set[str] = set()
        for candidate in candidates:
            if candidate.score < floor or len(chosen) == self.max_sentences:
                break
            text = normalize_text(candidate.text)
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            chosen.append(Excerpt(candidate.source, text, candidate.score))
        return chosen

    def answer(self, question: str, sources: Sequence[Hit]) -> str:
        """An answer quoting the best sentences (:meth:`best_sentences`), each with its ``[n]``.

        With ``short_answer``, the phrase of the best sentence that answers the
        question (a name, date or number) comes first, with the same marker:
        "Rollo [1]. They were descended from ... under their leader Rollo ... [1]."

        Raises:
            InvalidInput: ``sources`` is empty or holds no text.
        """
        chosen = self.best_sentences(question, sources)
        parts = [cite_sentence(_shorten(c.text, self.max_sentence_chars), c.source) for c in chosen]
        phrase = answer_phrase(question, chosen[0].text) if chosen[0].score else None
        if self.short_answer and phrase:
            parts.insert(0, cite_sentence(phrase, chosen[0].source))
        text = parts[0]
        for part in parts[1:]:
            text += part if is_cjk(text[-1]) else " " + part
        log.debug("extractive answer sentences=%d best_score=%.2f", len(chosen), chosen[0].score)
        return text

    # Generator protocol -------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Estimated tokens (no tokenizer: one per CJK character, one per 4 others)."""
        return estimate_tokens(text)

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """Not supported: chat messages do not carry the sources.

        Raises:
            GeneratorUnavailable: always; call :meth:`answer` with the sources.
        """
        raise GeneratorUnavailable(
            "the extractive generator answers from sources, not chat messages; call "
            "answer(question, sources) instead of generate()"
        )

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """Not supported: chat messages do not carry the sources.

        Raises:
            GeneratorUnavailable: always; call :meth:`answer` with the sources.
        """
        raise GeneratorUnavailable(
            "the extractive generator answers from sources, not chat messages; call "
            "answer(question, sources) instead of stream()"
        )
