"""Question → rules → hybrid retrieval → prompt → generator → answer rules → cited answer.

Used by the CLI and the API alike. Every stage is timed; every rule's effect
shows in the answer's flags.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from rag.errors import InvalidInput
from rag.generation.extractive import ExtractiveGenerator
from rag.protocols import Generator
from rag.query.citations import cited_page, evidence_for
from rag.query.markup import answer_spans, cited_numbers
from rag.query.prompt import build_messages
from rag.query.retrieval import HybridRetriever, RetrievalFilter, RetrievalResult
from rag.query.rules_post import build_answer_rules, run_answer_rules
from rag.query.rules_pre import build_query_rules, run_query_rules, screen_text_for_injection
from rag.settings import Settings
from rag.text.normalize import cjk_ratio
from rag.types import Answer, AnswerFlags, ChatTurn, Citation, Hit

log = logging.getLogger(__name__)

NOT_FOUND_EN = "The knowledge base does not contain an answer to this question."
NOT_FOUND_ZH = "知识库中没有找到这个问题的答案。"
SNIPPET_CHARS = 300


def not_found_message(question: str) -> str:
    """The honest 'not in the knowledge base' answer, in the question's language."""
    return NOT_FOUND_ZH if cjk_ratio(question) > 0.3 else NOT_FOUND_EN


@dataclass(frozen=True)
class _Prepared:
    """Everything decided before generation starts."""

    question: str
    history: tuple[ChatTurn, ...]
    retrieval: RetrievalResult | None
    sources: tuple[Hit, ...]
    flags: AnswerFlags
    timings: dict[str, float]
    retrieval_query: str
    generator_name: str
    final_text: str | None = None  # set when no generation is needed
    messages: list[dict[str, str]] | None = None


class AnswerPipeline:
    """Answers questions from the knowledge base.

    Args:
        retriever: Hybrid retrieval over the knowledge base.
        generators: The generator of a backend name (built once, by the caller).
        reader: The extractive generator: answers of the ``extractive`` backend,
            the citation check's fallback answers, and prompt excerpts.
        settings: Generation, retrieval and rule settings.
    """

    def __init__(
        self,
        *,
        retriever: HybridRetriever,
        generators: Callable[[str], Generator],
        reader: ExtractiveGenerator,
        settings: Settings,
    ) -> None:
        self.retriever = retriever
        self.generators = generators
        self.reader = reader
        self.settings = settings
        self.query_rules = build_query_rules(self.settings.rules)
        self.answer_rules = build_answer_rules(self.settings.rules, self._fallback)

    def _fallback(self, sources: Sequence[Hit], question: str) -> str:
        return self.reader.answer(question, sources)

    # ----------------------------------------------------------------- public
    def ask(
        self,
        question: str,
        *,
        history: Sequence[ChatTurn] = (),
        collections: Sequence[str] = (),
        document_ids: Sequence[str] = (),
        pages: tuple[int, int] | None = None,
        top_k: int | None = None,
        generator: str | None = None,
        max_new_tokens: int | None = None,
    ) -> Answer:
        """Answer one question (see :meth:`stream` for the streamed form)."""
        answer = None
        for event in self.stream(
            question,
            history=history,
            collections=collections,
            document_ids=document_ids,
            pages=pages,
            top_k=top_k,
            generator=generator,
            max_new_tokens=max_new_tokens,
            _emit=False,
        ):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(
        self,
        question: str,
        *,
        history: Sequence[ChatTurn] = (),
        collections: Sequence[str] = (),
        document_ids: Sequence[str] = (),
        pages: tuple[int, int] | None = None,
        top_k: int | None = None,
        generator: str | None = None,
        max_new_tokens: int | None = None,
        _emit: bool = True,
    ) -> Iterator[str | Answer]:
        """Yield the answer text in pieces, then the final :class:`Answer`.

        There is one answer path: the generator's whole output goes through
        the answer rules (template cleanup, repetition, citation check with its
        extractive fallback, redaction, length cap) before any text is
        released, and the pieces are that text cut after each sentence and
        its citation markers. So the streamed text is exactly
        ``Answer.answer``. While the model generates, an empty piece follows
        each of its tokens: a consumer that went away can stop the
        generation there (closing this iterator closes the generator's stream).

        Raises:
            QueryRejected: Empty, too long, or refused question.
            CollectionNotFound, InvalidInput: Bad filters.
        """
        started = time.perf_counter()
        prepared = self._prepare(
            question, history, collections, document_ids, pages, top_k, generator, max_new_tokens
        )
        timings = dict(prepared.timings)
        if prepared.final_text is not None:
            raw = prepared.final_text
        else:
            messages = prepared.messages
            assert messages is not None  # _prepare sets them whenever it leaves final_text unset
            gen = self.generators(prepared.generator_name)
            new_tokens = max_new_tokens or self.settings.generator.max_new_tokens
            t0 = time.perf_counter()
            pieces: list[str] = []
            for piece in gen.stream(messages, max_new_tokens=new_tokens):
                if "first_token" not in timings:
                    timings["first_token"] = time.perf_counter() - t0
                pieces.append(piece)
                if _emit:
                    yield ""
            timings["generation"] = time.perf_counter() - t0
            raw = "".join(pieces)
        t0 = time.perf_counter()
        if prepared.flags.not_found:
            draft_text, flags = raw, prepared.flags
        else:
            draft = run_answer_rules(
                self.answer_rules, raw, prepared.sources, prepared.question, prepared.flags
            )
            draft_text, flags = draft.text, draft.flags
        timings["postprocess"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - started
        if _emit:
            yield from answer_pieces(draft_text)
        yield Answer(
            question=prepared.question,
            answer=draft_text,
            citations=self._citations(draft_text, prepared.sources, flags, prepared.question),
            flags=flags,
            timings=timings,
            retrieval_query=prepared.retrieval_query,
            generator=prepared.generator_name,
        )

    # --------------------------------------------------------------- stages
    def _prepare(
        self,
        question: str,
        history: Sequence[ChatTurn],
        collections: Sequence[str],
        document_ids: Sequence[str],
        pages: tuple[int, int] | None,
        top_k: int | None,
        generator: str | None,
        max_new_tokens: int | None,
    ) -> _Prepared:
        timings: dict[str, float] = {}
        generator_name = generator or self.settings.generator.backend
        if generator_name not in ("transformers", "openai", "extractive"):
            raise InvalidInput(
                f"generator must be transformers, openai or extractive, got {generator_name!r}"
            )
        t0 = time.perf_counter()
        state = run_query_rules(self.query_rules, question, tuple(history))
        timings["rules"] = time.perf_counter() - t0
        flags = AnswerFlags(injection_detected=state.injection_detected)

        result = self.retriever.retrieve(
            state.retrieval_query,
            where=RetrievalFilter(tuple(collections), tuple(document_ids), pages),
            top_k=top_k,
        )
        for stage in ("embed", "dense", "sparse", "fusion", "fetch", "rerank", "filter"):
            if stage in result.timings:
                timings[stage] = result.timings[stage]
        timings["retrieval"] = sum(result.timings.values())
        common = dict(
            question=state.question,
            history=tuple(history),
            retrieval=result,
            timings=timings,
            retrieval_query=state.retrieval_query,
            generator_name=generator_name,
        )
        if not result.hits or not result.relevant:
            return _Prepared(
                sources=(),
                flags=replace(flags, not_found=True, refused=True),
                final_text=not_found_message(state.question),
                **common,  # type: ignore[arg-type]
            )
        sources = self._screen(result.hits)
        if any(h.injection_flagged for h in sources):
            flags = replace(flags, injection_detected=True)
        if self.settings.retrieval.neighbour_expansion:
            sources = tuple(self.retriever.expand_neighbours(sources))
        if generator_name == "extractive":
            t0 = time.perf_counter()
            text = self.reader.answer(state.question, sources)
            timings["generation"] = time.perf_counter() - t0
            return _Prepared(sources=sources, flags=flags, final_text=text, **common)  # type: ignore[arg-type]
        gen = self.generators(generator_name)
        t0 = time.perf_counter()
        shown, full = sources, sources
        if getattr(gen, "prompt_excerpts", False):
            shown, full = self._excerpts(state.question, sources)
        plan = build_messages(
            state.question,
            shown,
            tuple(history),
            gen.count_tokens,
            gen.context_length,
            max_new_tokens or self.settings.generator.max_new_tokens,
            question_flagged=state.injection_detected,
        )
        timings["prompt"] = time.perf_counter() - t0
        return _Prepared(
            # The answer rules check and cite the whole chunks behind what the prompt showed.
            sources=full[: len(plan.used_sources)],
            flags=flags,
            messages=plan.messages,
            **common,  # type: ignore[arg-type]
        )

    def _excerpts(
        self, question: str, sources: Sequence[Hit]
    ) -> tuple[tuple[Hit, ...], tuple[Hit, ...]]:
        """The reader's best sentences as prompt sources, and the chunks they come from.

        A small model answers from a few sentences far better (and reads them
        several times faster) than from whole chunks. Each source keeps only
        its sentences among the extractive reader's best; sources are ordered
        by their best sentence, so ``shown[i]`` is an excerpt of ``full[i]``.
        """
        picked: dict[int, list[str]] = {}
        for excerpt in self.reader.best_sentences(question, sources):
            picked.setdefault(excerpt.source, []).append(excerpt.text)
        shown = tuple(replace(sources[n - 1], text=" ".join(texts)) for n, texts in picked.items())
        return shown, tuple(sources[n - 1] for n in picked)

    def _screen(self, hits: Sequence[Hit]) -> tuple[Hit, ...]:
        """Mark retrieved chunks that carry injection phrasing (kept as quoted data)."""
        if not self.settings.rules.injection_screen:
            return tuple(hits)
        return tuple(
            replace(h, injection_flagged=True) if screen_text_for_injection(h.text) else h
            for h in hits
        )

    def _citations(
        self, text: str, sources: Sequence[Hit], flags: AnswerFlags, question: str
    ) -> tuple[Citation, ...]:
        """Citations for the sources the answer cites (all shown sources if it cites none)."""
        if flags.not_found or not sources:
            return ()
        numbers = [n for n in dict.fromkeys(cited_numbers(text)) if 1 <= n <= len(sources)]
        if not numbers and not flags.refused:
            numbers = list(range(1, len(sources) + 1))
        citations = []
        for n in numbers:
            hit = sources[n - 1]
            citations.append(
                Citation(
                    number=n,
                    document_id=hit.document_id,
                    filename=hit.filename,
                    page=cited_page(hit, evidence_for(text, n, question)),
                    chunk_id=hit.chunk_id,
                    snippet=hit.text[:SNIPPET_CHARS],
                    score=hit.score,
                    dense_rank=hit.dense_rank,
                    sparse_rank=hit.sparse_rank,
                )
            )
        return tuple(citations)


def answer_pieces(text: str) -> list[str]:
    """``text`` cut after each sentence and the citation markers that follow it.

    The pieces join back to ``text`` exactly (the whitespace between sentences
    travels with the piece before it).
    """
    cuts = [end for _start, end in answer_spans(text)][:-1]
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]
