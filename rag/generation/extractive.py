"""An answer built from the sources' own sentences, without a language model.

It is the fallback when no model is configured or the model fails, and the
fast generator that lets the whole upload-to-answer path run in tests. Every
sentence it returns is quoted from a source and carries that source's marker,
so its citations are correct by construction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rag.errors import GeneratorUnavailable, InvalidInput
from rag.generation import estimate_tokens
from rag.text.normalize import is_cjk, normalize_text
from rag.text.sentences import sentences
from rag.text.terms import term_set
from rag.types import Hit

log = logging.getLogger(__name__)

# Final punctuation (and closing quotes/brackets) of a sentence; the marker goes before it
# so that a sentence splitter keeps "[n]" with the sentence it cites.
_FINAL_PUNCTUATION = re.compile(r"[。！？；!?;.…:：]+[”’」』)\]）】\"']*$")


@dataclass(frozen=True)
class _Candidate:
    overlap: int
    source: int  # 1-based position of the source
    position: int  # sentence index inside the source
    text: str

    @property
    def rank_key(self) -> tuple[int, int, int]:
        # Most question terms first; ties go to the better-ranked source, then the earlier sentence.
        return (-self.overlap, self.source, self.position)


def cite_sentence(sentence: str, number: int) -> str:
    """``sentence`` with the marker ``[number]`` before its final punctuation.

    "Paris is large." -> "Paris is large [1]."; "巴黎很大。" -> "巴黎很大[1]。";
    a sentence without final punctuation gets one ("." or "。").
    """
    sentence = sentence.strip()
    match = _FINAL_PUNCTUATION.search(sentence)
    body, tail = (sentence[: match.start()], match.group()) if match else (sentence, "")
    body = body.rstrip()
    cjk = bool(body) and is_cjk(body[-1])
    if not tail:
        tail = "。" if cjk else "."
    return f"{body}[{number}]{tail}" if cjk else f"{body} [{number}]{tail}"


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
        self, *, max_sentences: int = 3, max_sentence_chars: int = 400, context_length: int = 8192
    ) -> None:
        """Configure the answer's size.

        Args:
            max_sentences: Most sentences in an answer.
            max_sentence_chars: Longer sentences (tables, run-on text) are cut at a word.
            context_length: Reported context, so callers can budget sources as for a model.
        """
        if max_sentences < 1:
            raise InvalidInput(f"max_sentences must be at least 1, got {max_sentences}")
        if max_sentence_chars < 20:
            raise InvalidInput(f"max_sentence_chars must be at least 20, got {max_sentence_chars}")
        self.max_sentences = max_sentences
        self.max_sentence_chars = max_sentence_chars
        self.context_length = context_length

    def answer(self, question: str, sources: Sequence[Hit]) -> str:
        """An answer quoting the best-supported sentences, each followed by its marker ``[n]``.

        Sentences are scored by how many distinct question terms (BM25 terms:
        stemmed English, jieba-cut Chinese, stop words dropped) they hold. Up
        to ``max_sentences`` are kept, best first, each holding at least two
        thirds as many terms as the best one so weak matches do not dilute the answer.
        When no sentence shares a term, the first sentence of source [1] is used.

        Args:
            question: The user's question.
            sources: Retrieved hits, best first; ``[n]`` refers to ``sources[n-1]``.

        Raises:
            InvalidInput: ``sources`` is empty.
        """
        if not sources:
            raise InvalidInput("the extractive generator needs at least one source, got none")
        question_terms = term_set(question)
        candidates: list[_Candidate] = []
        for number, hit in enumerate(sources, start=1):
            for position, sentence in enumerate(sentences(hit.text)):
                overlap = len(question_terms & term_set(sentence)) if question_terms else 0
                candidates.append(_Candidate(overlap, number, position, sentence))
        if not candidates:
            raise InvalidInput("the extractive generator's sources hold no text")
        candidates.sort(key=lambda c: c.rank_key)
        best = candidates[0].overlap
        chosen: list[_Candidate] = []
        if best == 0:
            # All ties: the sort put the first sentence of the first source holding text first.
            chosen = [candidates[0]]
        else:
            # Two thirds of the best overlap: a sentence sharing only a common word or
            # two with the question ("employees", "day") is noise next to the answer.
            floor = max(1, -(-2 * best // 3))
            seen: set[str] = set()
            for candidate in candidates:
                if candidate.overlap < floor or len(chosen) == self.max_sentences:
                    break
                key = normalize_text(candidate.text).lower()
                if key in seen:
                    continue
                seen.add(key)
                chosen.append(candidate)
        parts = [
            cite_sentence(_shorten(normalize_text(c.text), self.max_sentence_chars), c.source)
            for c in chosen
        ]
        text = parts[0]
        for part in parts[1:]:
            text += part if is_cjk(text[-1]) else " " + part
        log.debug("extractive answer sentences=%d best_overlap=%d", len(chosen), best)
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
