"""Answer-level evaluation: every question of a QA set through the real answer pipeline.

The set's documents go through the normal ingest into a knowledge base cached
like the BEIR corpora (:func:`eval.runner.cached_knowledge_base`, keyed by the
files, the embedding model, the chunking and the tokeniser version). Each
question is then asked through :class:`rag.query.pipeline.AnswerPipeline`,
exactly as ``POST /ask`` does, once per generator, and scored with
:mod:`eval.answer_metrics`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.answer_metrics import (
    answer_language,
    citation_scores,
    contains_gold,
    first_sentence,
    mean,
    percentile,
    token_f1,
)
from eval.qa import QaDataset, QaQuestion
from eval.runner import cached_knowledge_base, files_key
from rag.errors import GeneratorUnavailable, InvalidInput, RagError
from rag.query.rules_post import says_not_found
from rag.settings import Settings
from rag.types import Answer, AnswerFlags

log = logging.getLogger(__name__)

GENERATORS = ("transformers", "openai", "extractive")
COLLECTION = "qa"
# Columns of the summary table, in reading order: is the answer right, is it
# grounded, does it refuse when it should, and what it costs.
ANSWER_COLUMNS: tuple[str, ...] = (
    "contains_gold",
    "f1",
    "first_sentence_f1",
    "citation_precision",
    "citation_recall",
    "gold_doc_cited",
    "unanswerable_refused",
    "answerable_refused",
    "fallback_rate",
    "answer_chars_p50",
    "latency_p50",
    "latency_p95",
)
# Narrow headings for the terminal table (the Markdown report uses the keys).
SHORT_TITLES: dict[str, str] = {
    "contains_gold": "contains",
    "f1": "F1",
    "first_sentence_f1": "1st F1",
    "citation_precision": "cite P",
    "citation_recall": "cite R",
    "gold_doc_cited": "gold doc",
    "unanswerable_refused": "unans ref",
    "answerable_refused": "wrong ref",
    "fallback_rate": "fallback",
    "answer_chars_p50": "chars",
    "latency_p50": "p50 s",
    "latency_p95": "p95 s",
}
CHART_COLUMNS: tuple[str, ...] = ("contains_gold", "f1", "citation_recall", "unanswerable_refused")
# Published reading-comprehension numbers (the gold paragraph given, no retrieval).
REFERENCES: dict[str, dict[str, dict[str, Any]]] = {
    "squad2": {
        "SQuAD 2.0 human (gold paragraph, not RAG)": {
            "f1": 0.895,
            "source": "Rajpurkar et al. 2018",
        }
    },
    "cmrc2018": {
        "CMRC 2018 dev human (gold paragraph, not RAG)": {
            "f1": 0.979,
            "source": "Cui et al. 2019",
        }
    },
}


@dataclass
class AnswerEvalRun:
    """What one answer evaluation produced.

    Attributes:
        metrics: Generator -> summary measure -> value (None where it does not apply).
        per_query: Generator -> question id -> that question's scores.
        latency: Generator -> stage -> {"p50", "p95"} seconds.
        timings: Ingest and wall-clock seconds.
        config: What shaped the numbers (models, chunking, cache key).
    """

    metrics: dict[str, dict[str, float | None]]
    per_query: dict[str, dict[str, dict[str, Any]]]
    latency: dict[str, dict[str, dict[str, float | None]]]
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def parse_generators(raw: str | Sequence[str]) -> list[str]:
    """A comma list of generator backends, checked and deduplicated in order.

    Raises:
        InvalidInput: An unknown backend, or none at all.
    """
    names = raw.split(",") if isinstance(raw, str) else list(raw)
    chosen = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [n for n in chosen if n not in GENERATORS]
    if unknown or not chosen:
        raise InvalidInput(
            f"generators must be a comma list of {', '.join(GENERATORS)}, got {raw!r}"
        )
    return chosen


def is_refusal(answer: Answer) -> bool:
    """Whether the pipeline answered "not in the knowledge base".

    The pipeline sets ``flags.not_found`` (and ``refused``) when retrieval
    finds nothing relevant, and the citation check sets ``not_found`` when an
    answer that cites nothing says the sources do not hold the answer. A model
    may also refuse and still cite ("the sources do not mention it [1]"); a
    reader sees a refusal, so the same phrase test
    (:func:`rag.query.rules_post.says_not_found`) counts that too.
    """
    flags = answer.flags
    return flags.not_found or flags.refused or says_not_found(answer.answer)


def score_question(
    question: QaQuestion,
    answer_text: str,
    refused: bool,
    passages: Mapping[int, str],
    cited_files: Iterable[str],
) -> dict[str, Any]:
    """Scores of one answer.

    Correctness (``contains_gold``, ``f1`` and their first-sentence forms) and
    ``gold_doc_cited`` apply to answerable questions, where a refusal scores 0;
    the citation measures apply to answers that are not refusals;
    ``refused`` applies to all. A measure that does not apply is None.
    """
    language = answer_language(question.question, question.answers)
    golds = question.answers
    scores: dict[str, Any] = {"answerable": question.answerable, "refused": refused}
    if question.answerable:
        text = "" if refused else answer_text
        first = first_sentence(text)
        scores.update(
            contains_gold=contains_gold(text, golds, language),
            f1=token_f1(text, golds, language),
            first_sentence_contains_gold=contains_gold(first, golds, language),
            first_sentence_f1=token_f1(first, golds, language),
            gold_doc_cited=not refused and question.document in set(cited_files),
        )
    else:
        scores.update(
            contains_gold=None,
            f1=None,
            first_sentence_contains_gold=None,
            first_sentence_f1=None,
            gold_doc_cited=None,
        )
    if refused:
        scores.update(citation_recall=None, citation_precision=None)
    else:
        cited = citation_scores(answer_text, passages, golds, language)
        scores.update(citation_recall=cited.recall, citation_precision=cited.precision)
    return scores


def summarize(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float | None], dict]:
    """Mean scores over the questions they apply to, refusal rates, cost and latency.

    Args:
        rows: Per-question records with ``scores``, ``flags``, ``answer``,
            ``tokens_generated`` and ``timings``.

    Returns:
        (summary measures, stage -> {"p50", "p95"} seconds).
    """

    def applicable(key: str) -> list[Any]:
        return [r["scores"][key] for r in rows if r["scores"].get(key) is not None]

    answerable = [r for r in rows if r["scores"]["answerable"]]
    unanswerable = [r for r in rows if not r["scores"]["answerable"]]
    lengths = [float(len(r["answer"])) for r in rows if not r["scores"]["refused"]]
    tokens = [float(r["tokens_generated"]) for r in rows if r["tokens_generated"] is not None]
    totals = [r["timings"]["total"] for r in rows if "total" in r["timings"]]
    summary: dict[str, float | None] = {
        "questions": float(len(rows)),
        "errors": float(sum(r.get("error") is not None for r in rows)),
        "contains_gold": mean(applicable("contains_gold")),
        "f1": mean(applicable("f1")),
        "first_sentence_contains_gold": mean(applicable("first_sentence_contains_gold")),
        "first_sentence_f1": mean(applicable("first_sentence_f1")),
        "citation_precision": mean(applicable("citation_precision")),
        "citation_recall": mean(applicable("citation_recall")),
        "gold_doc_cited": mean(applicable("gold_doc_cited")),
        "unanswerable_refused": mean([r["scores"]["refused"] for r in unanswerable]),
        "answerable_refused": mean([r["scores"]["refused"] for r in answerable]),
        "fallback_rate": mean([r["flags"]["fallback_used"] for r in rows]),
        "answer_chars_p50": percentile(lengths, 50),
        "answer_chars_mean": mean(lengths),
        "tokens_generated_mean": mean(tokens),
        "latency_p50": percentile(totals, 50),
        "latency_p95": percentile(totals, 95),
    }
    stages = sorted({s for r in rows for s in r["timings"]})
    latency = {
        stage: {
            "p50": percentile([r["timings"][stage] for r in rows if stage in r["timings"]], 50),
            "p95": percentile([r["timings"][stage] for r in rows if stage in r["timings"]], 95),
        }
        for stage in stages
    }
    return summary, latency


def evaluate_answers(
    dataset: QaDataset,
    settings: Settings,
    generators: Sequence[str],
    cache_dir: Path,
    *,
    answers_path: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    embedder: Any | None = None,
    preloaded: Mapping[str, Any] | None = None,
) -> AnswerEvalRun:
    """Ingest the set's documents (cached), ask every question with each generator, score.

    Args:
        dataset: The QA set (cut with :meth:`QaDataset.head` for a quick run).
        settings: Settings; retrieval and rules apply as in the API.
        generators: Backends to compare (see :func:`parse_generators`).
        cache_dir: Folder of cached knowledge bases.
        answers_path: A JSONL file to write one readable record per answer
            to, as the run goes (None: not written).
        progress: Called with (stage, done, total).
        embedder: A preloaded embedder to share.
        preloaded: Backend -> a loaded generator to use (e.g. a test's model).

    Returns:
        The summary per generator, the per-question scores and the latencies.
    """
    generators = parse_generators(generators)
    names = list(dataset.documents)

    def files(part: Sequence[str]) -> list[tuple[str, bytes]]:
        return [(name, (dataset.docs_dir / name).read_bytes()) for name in part]

    started = time.perf_counter()
    key = files_key(files(names), settings)
    services, ingest_seconds = cached_knowledge_base(
        key,
        names,
        files,
        settings,
        cache_dir,
        progress=(lambda d, t: progress("ingest", d, t)) if progress else None,
        embedder=embedder,
        collection=COLLECTION,
    )
    handle = None
    try:
        from rag.services import build_generator

        for name in generators:
            if preloaded and name in preloaded:
                services.register_generator(name, RecordingGenerator(preloaded[name]))
            elif name != "extractive":
                # Built from the caller's settings so a converted model is cached
                # in the usual data folder, not in each knowledge base's folder.
                services.register_generator(
                    name, RecordingGenerator(build_generator(settings, name))
                )
        pipeline = services.pipeline()
        if answers_path is not None:
            answers_path.parent.mkdir(parents=True, exist_ok=True)
            handle = answers_path.open("w", encoding="utf-8")
        metrics: dict[str, dict[str, float | None]] = {}
        per_query: dict[str, dict[str, dict[str, Any]]] = {}
        latency: dict[str, dict[str, dict[str, float | None]]] = {}
        for name in generators:
            rows: list[dict[str, Any]] = []
            for i, question in enumerate(dataset.questions):
                row = _answer_one(services, pipeline, name, question)
                rows.append(row)
                if handle is not None:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    handle.flush()
                if progress:
                    progress(f"answers ({name})", i + 1, len(dataset.questions))
            metrics[name], latency[name] = summarize(rows)
            per_query[name] = {r["id"]: r["scores"] for r in rows}
            log.info(
                "answer eval generator=%s questions=%d f1=%s", name, len(rows), metrics[name]["f1"]
            )
    finally:
        if handle is not None:
            handle.close()
        services.close()
    s = settings
    config = {
        "generators": generators,
        "embedding_model": s.embedding.model,
        "generator_model": s.generator.model,
        "max_new_tokens": s.generator.max_new_tokens,
        "chunk_tokens": s.ingest.chunk_tokens,
        "chunk_overlap": s.ingest.chunk_overlap,
        "top_k": s.retrieval.top_k,
        "cache_key": key,
    }
    timings = {"ingest_seconds": ingest_seconds, "total_seconds": time.perf_counter() - started}
    return AnswerEvalRun(metrics, per_query, latency, timings, config)


class RecordingGenerator:
    """A generator that keeps its last raw completion, before the answer rules.

    When the citation check discards the model's answer (``fallback_used``),
    the per-question record still shows what the model wrote. Everything else
    (``count_tokens``, ``context_length``, ``last_stats``…) is the wrapped
    generator's.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_text: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def reset(self) -> None:
        """Forget the last completion (and the wrapped generator's ``last_stats``)."""
        self.last_text = None
        if hasattr(self.inner, "last_stats"):
            self.inner.last_stats = None

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """The wrapped generator's completion, remembered."""
        self.last_text = self.inner.generate(messages, max_new_tokens=max_new_tokens)
        return self.last_text

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Any:
        """The wrapped generator's pieces, remembered when the stream ends."""
        pieces: list[str] = []
        for piece in self.inner.stream(messages, max_new_tokens=max_new_tokens):
            pieces.append(piece)
            yield piece
        self.last_text = "".join(pieces)


def _answer_one(services: Any, pipeline: Any, name: str, question: QaQuestion) -> dict[str, Any]:
    """Ask one question, look up the cited chunks, and build its readable record."""
    generator = services.generator(name)
    if isinstance(generator, RecordingGenerator):
        generator.reset()  # so a question that skips generation reports nothing
    error = None
    try:
        answer = pipeline.ask(question.question, collections=(COLLECTION,), generator=name)
    except GeneratorUnavailable:
        raise  # every later question would fail the same way
    except RagError as exc:
        # One rejected question (e.g. too long) must not end a long run: it is
        # recorded with its error and scored as a refusal.
        log.warning("question failed id=%s error=%s", question.qid, exc.message)
        error = exc.message
        answer = Answer(question.question, "", (), AnswerFlags(refused=True))
    stats = getattr(generator, "last_stats", None)
    chunks = services.kb.chunks_by_ids(c.chunk_id for c in answer.citations)
    passages = {
        c.number: chunks[c.chunk_id][0].text for c in answer.citations if c.chunk_id in chunks
    }
    refused = is_refusal(answer)
    scores = score_question(
        question, answer.answer, refused, passages, (c.filename for c in answer.citations)
    )
    return {
        "generator": name,
        "id": question.qid,
        "question": question.question,
        "gold": list(question.answers),
        "gold_document": question.document,
        "answer": answer.answer,
        "generated": generator.last_text if isinstance(generator, RecordingGenerator) else None,
        "citations": [
            {"number": c.number, "file": c.filename, "page": c.page, "chunk_id": c.chunk_id}
            for c in answer.citations
        ],
        "flags": asdict(answer.flags),
        "scores": scores,
        "tokens_generated": stats.new_tokens if stats is not None else None,
        "error": error,
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
    }


def references_for(dataset_name: str) -> dict[str, dict[str, Any]]:
    """Published human reading-comprehension numbers for a known set, else none."""
    lowered = dataset_name.lower()
    for prefix, refs in REFERENCES.items():
        if lowered.startswith(prefix):
            return refs
    return {}
