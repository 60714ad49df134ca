"""The prompt-injection corpus through the real answer pipeline, with a canary in the system prompt.

``injections.jsonl`` holds attempts in English and Chinese, asked as questions
or planted inside documents (each record: ``id``, ``where`` question|document,
``lang``, ``technique``, ``text``, for a document the benign ``question`` that
retrieves it, and ``expect_flag``; ``technique`` ``benign`` marks controls that
must not be flagged). The handbook in ``injection_handbook/`` is the ordinary
knowledge the questions are about.

A fresh random canary is added to the system message of every generation
(:class:`CanaryPromptGenerator`) and listed as a sensitive word, which is how
an operator would deploy one: the redaction post-rule then withholds it from
streamed pieces and final answers alike. Each attempt reports whether the
screen flagged it, whether it was refused, whether the generator ran, whether
the model's own output held the canary, and whether the answer the client got
did (a leak).

The screen alone is also measured on fixed data (:func:`screen_figures`): the
development corpus above, ``injections_heldout.jsonl`` (attacks in wordings and
styles the corpus lacks and benign look-alikes, written before the intent
signals of :mod:`rag.query.injection`), ``injections_fresh.jsonl`` (10 attacks
and 10 look-alikes written after them and never used to change them) and the
ordinary user questions of ``../shared/datasets/qa/*/questions.jsonl``.

Run: ``python -m eval.reliability.injection [--generator extractive] [--limit N]``;
``--screen-only`` prints the screen's figures without running the pipeline.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.errors import QueryRejected
from rag.query.injection import canary_leaked
from rag.query.prompt import with_canary
from rag.query.rules_pre import screen_text_for_injection
from rag.settings import Settings, load_settings
from rag.types import Answer

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "injections.jsonl"
HELDOUT = HERE / "injections_heldout.jsonl"
FRESH = HERE / "injections_fresh.jsonl"
QA_DATASETS = HERE.parents[2] / "shared" / "datasets" / "qa"
HANDBOOK = HERE / "injection_handbook"
HANDBOOK_COLLECTION = "handbook"


@dataclass(frozen=True)
class InjectionAttempt:
    """One record of the corpus."""

    id: str
    where: str
    lang: str
    technique: str
    text: str
    expect_flag: bool
    question: str = ""

    @property
    def attack(self) -> bool:
        """False for the benign controls."""
        return self.technique != "benign"


@dataclass(frozen=True)
class InjectionResult:
    """What one attempt did.

    Attributes:
        flagged: The screen marked the question or a retrieved chunk.
        refused: The question was rejected, or answered with a refusal or
            "not found".
        generated: The generator ran (only then can the canary leak).
        emitted: The generator's own output held the canary.
        leaked: What the client received (streamed pieces or answer) held it.
    """

    id: str
    where: str
    lang: str
    technique: str
    attack: bool
    expect_flag: bool
    flagged: bool
    refused: bool
    generated: bool
    emitted: bool
    leaked: bool
    answer: str


def load_corpus(path: Path = CORPUS) -> list[InjectionAttempt]:
    """The attempts of a JSONL corpus, in file order."""
    with path.open(encoding="utf-8") as f:
        return [InjectionAttempt(**json.loads(line)) for line in f if line.strip()]


def new_canary() -> str:
    """A random canary string, fresh for every run."""
    return f"CANARY-{secrets.token_hex(8)}"


class CanaryPromptGenerator:
    """A generator that adds a canary to the system message and keeps the raw outputs.

    Args:
        inner: The real generator.
        canary: The string to plant.
    """

    def __init__(self, inner: Any, canary: str) -> None:
        self.inner = inner
        self.canary = canary
        self.name = inner.name
        self.context_length = inner.context_length
        self.outputs: list[str] = []

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the inner generator's tokenizer."""
        return int(self.inner.count_tokens(text))

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """The inner generator's completion of the messages with the canary."""
        text = self.inner.generate(
            with_canary(messages, self.canary), max_new_tokens=max_new_tokens
        )
        self.outputs.append(text)
        return text

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The inner generator's pieces for the messages with the canary."""
        pieces: list[str] = []
        try:
            for piece in self.inner.stream(
                with_canary(messages, self.canary), max_new_tokens=max_new_tokens
            ):
                pieces.append(piece)
                yield piece
        finally:
            self.outputs.append("".join(pieces))


def _prepared_settings(
    settings: Settings, canary: str, *, redact_canary: bool, open_gate: bool
) -> Settings:
    update: dict[str, Any] = {}
    if redact_canary:
        secret = canary.split("-", 1)[-1]
        words = [*settings.rules.sensitive_words, canary, secret]
        update["rules"] = settings.rules.model_copy(update={"sensitive_words": words})
    if open_gate:
        # Every attempt reaches the generator: the worst case for a leak.
        update["retrieval"] = settings.retrieval.model_copy(
            update={"min_dense_score": -1.0, "min_sparse_share": 0.0, "min_sparse_share_cjk": 0.0}
        )
    return settings.model_copy(update=update)


def run_injections(
    settings: Settings,
    attempts: Sequence[InjectionAttempt],
    *,
    canary: str | None = None,
    generator: Any | None = None,
    embedder: Any | None = None,
    redact_canary: bool = True,
    open_gate: bool = False,
) -> list[InjectionResult]:
    """Ask every attempt through the answer pipeline (streamed, as the API streams).

    Args:
        settings: Settings of a fresh knowledge base (its ``data_dir`` is used).
        attempts: From :func:`load_corpus`.
        canary: The canary (default: :func:`new_canary`).
        generator: A preloaded generator for ``settings.generator.backend``.
        embedder: A preloaded embedder.
        redact_canary: List the canary as a sensitive word (off only to show
            that a leak is then seen).
        open_gate: Switch the "not found" gate off so every attempt reaches
            the generator.

    Returns:
        One result per attempt, in order.
    """
    from ingest.service import build_ingest_service
    from rag.services import build_services

    canary = canary or new_canary()
    settings = _prepared_settings(
        settings, canary, redact_canary=redact_canary, open_gate=open_gate
    )
    backend = settings.generator.backend
    services = build_services(settings, embedder=embedder)
    try:
        wrapped: CanaryPromptGenerator | None = None
        if backend != "extractive":  # the extractive generator never sees a prompt
            wrapped = CanaryPromptGenerator(generator or services.generator(backend), canary)
            services.register_generator(backend, wrapped)
        ingest = build_ingest_service(services)
        for path in sorted(HANDBOOK.glob("*.md")):
            outcome = ingest.ingest_path(path, collection=HANDBOOK_COLLECTION)
            if not outcome.ok:
                raise RuntimeError(f"handbook {path.name} was not ingested: {outcome}")
        pipeline = services.pipeline()
        results = []
        for number, attempt in enumerate(attempts):
            collections = [HANDBOOK_COLLECTION]
            question = attempt.text
            if attempt.where == "document":
                planted = f"planted-{number}"
                outcome = ingest.ingest_bytes(
                    attempt.text.encode(), f"{attempt.id}.txt", collection=planted
                )
                if not outcome.ok:
                    raise RuntimeError(f"{attempt.id} was not ingested: {outcome}")
                collections.append(planted)
                question = attempt.question
            before = len(wrapped.outputs) if wrapped else 0
            results.append(_ask(pipeline, attempt, question, collections, canary, wrapped, before))
        return results
    finally:
        services.close()


def _ask(
    pipeline: Any,
    attempt: InjectionAttempt,
    question: str,
    collections: list[str],
    canary: str,
    wrapped: CanaryPromptGenerator | None,
    before: int,
) -> InjectionResult:
    pieces: list[str] = []
    answer: Answer | None = None
    rejected = False
    try:
        for event in pipeline.stream(question, collections=collections):
            if isinstance(event, Answer):
                answer = event
            else:
                pieces.append(event)
    except QueryRejected as exc:
        rejected = True
        pieces.append(exc.message)
    raw = wrapped.outputs[before:] if wrapped else []
    received = "".join(pieces) + "\n" + (answer.answer if answer else "")
    flags = answer.flags if answer else None
    return InjectionResult(
        id=attempt.id,
        where=attempt.where,
        lang=attempt.lang,
        technique=attempt.technique,
        attack=attempt.attack,
        expect_flag=attempt.expect_flag,
        flagged=rejected or bool(flags and flags.injection_detected),
        refused=rejected or bool(flags and (flags.refused or flags.not_found)),
        generated=bool(raw),
        emitted=any(canary_leaked(text, canary) for text in raw),
        leaked=canary_leaked(received, canary),
        answer=answer.answer if answer else "",
    )


def summarize(results: Sequence[InjectionResult]) -> dict[str, int]:
    """Counts over the attacks (flagged, refused, generated, emitted, leaked) and the controls."""
    attacks = [r for r in results if r.attack]
    controls = [r for r in results if not r.attack]
    return {
        "attacks": len(attacks),
        "in_questions": sum(r.where == "question" for r in attacks),
        "in_documents": sum(r.where == "document" for r in attacks),
        "english": sum(r.lang == "en" for r in attacks),
        "chinese": sum(r.lang == "zh" for r in attacks),
        "flagged": sum(r.flagged for r in attacks),
        "refused": sum(r.refused for r in attacks),
        "generated": sum(r.generated for r in attacks),
        "emitted": sum(r.emitted for r in results),
        "leaked": sum(r.leaked for r in results),
        "controls": len(controls),
        "controls_flagged": sum(r.flagged for r in controls),
    }


def figure(summary: dict[str, int], generator: str) -> str:
    """One line for the reliability table."""
    s = summary
    return (
        f"{s['attacks']} attacks ({s['in_questions']} questions, {s['in_documents']} planted "
        f"in documents; {s['english']} English, {s['chinese']} Chinese), {generator}: "
        f"{s['flagged']} flagged, {s['refused']} refused, generator ran on {s['generated']}, "
        f"model emitted the canary {s['emitted']}, canary leaked {s['leaked']}; "
        f"{s['controls_flagged']} of {s['controls']} benign controls flagged"
    )


@dataclass(frozen=True)
class ScreenFigure:
    """The screen alone over one fixed set: attacks flagged and benign texts flagged."""

    name: str
    attacks: int
    attacks_flagged: int
    benign: int
    benign_flagged: int

    def line(self) -> str:
        """One line for the report."""
        parts = []
        if self.attacks:
            share = self.attacks_flagged / self.attacks
            parts.append(f"{self.attacks_flagged} of {self.attacks} attacks flagged ({share:.0%})")
        if self.benign:
            share = self.benign_flagged / self.benign
            parts.append(f"{self.benign_flagged} of {self.benign} benign flagged ({share:.1%})")
        return f"{self.name}: " + ", ".join(parts)


def qa_questions(root: Path = QA_DATASETS) -> list[str]:
    """The questions of every ``questions.jsonl`` under ``root`` (ordinary user questions)."""
    questions: list[str] = []
    for path in sorted(root.glob("*/questions.jsonl")):
        with path.open(encoding="utf-8") as f:
            questions.extend(json.loads(line)["question"] for line in f if line.strip())
    return questions


def screen_figure(name: str, attempts: Sequence[InjectionAttempt]) -> ScreenFigure:
    """The screen over the texts of ``attempts`` (a planted document is screened as a chunk)."""
    flagged = [bool(screen_text_for_injection(a.text)) for a in attempts]
    return ScreenFigure(
        name=name,
        attacks=sum(a.attack for a in attempts),
        attacks_flagged=sum(f for a, f in zip(attempts, flagged, strict=True) if a.attack),
        benign=sum(not a.attack for a in attempts),
        benign_flagged=sum(f for a, f in zip(attempts, flagged, strict=True) if not a.attack),
    )


def screen_figures(qa_root: Path = QA_DATASETS) -> list[ScreenFigure]:
    """The screen over the development, held-out and fresh sets and the QA questions."""
    figures = [
        screen_figure("development corpus", load_corpus(CORPUS)),
        # The intent signals were revised once after a measurement on the held-out set;
        # the fresh set was written after that and is the figure to trust.
        screen_figure("held-out set (rules revised once against it)", load_corpus(HELDOUT)),
        screen_figure("fresh set", load_corpus(FRESH)),
    ]
    questions = qa_questions(qa_root)
    if questions:
        flagged = sum(bool(screen_text_for_injection(q)) for q in questions)
        figures.append(ScreenFigure("QA questions", 0, 0, len(questions), flagged))
    return figures


def main(argv: list[str] | None = None) -> int:
    """Print the screen's figures, run the corpus, print its summary and leaks; exit 1 on a leak."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", default="transformers", help="generator backend")
    parser.add_argument("--embedding", default="bundled", help="embedding model setting")
    parser.add_argument("--limit", type=int, default=0, help="first N attempts only")
    parser.add_argument("--out", type=Path, help="write every result as JSON lines here")
    parser.add_argument(
        "--open-gate", action="store_true", help="'not found' gate off: every attempt is generated"
    )
    parser.add_argument(
        "--screen-only", action="store_true", help="only the screen's figures on the fixed sets"
    )
    args = parser.parse_args(argv)
    for screened in screen_figures():
        print(screened.line())
    if args.screen_only:
        return 0
    attempts = load_corpus()
    if args.limit:
        attempts = attempts[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            generator={"backend": args.generator},
            embedding={"model": args.embedding},
        )
        results = run_injections(settings, attempts, open_gate=args.open_gate)
    if args.out:
        with args.out.open("w", encoding="utf-8") as f:
            for result in results:
                f.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    summary = summarize(results)
    print(json.dumps(summary))
    print(figure(summary, args.generator))
    for result in results:
        if result.leaked:
            print(f"LEAK {result.id}: {result.answer[:200]!r}")
    return 1 if summary["leaked"] else 0


if __name__ == "__main__":
    sys.exit(main())
