"""``rag eval DATASET_DIR [--split test] [--modes ...] [--k 10] [--out DIR]``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from eval.beir import load_beir
from eval.report import write_report
from eval.runner import MODES, SCIFACT_REFERENCES, evaluate
from rag.errors import RagError
from rag.settings import Settings, load_settings

console = Console(stderr=True)

# Loads settings from a config path; the CLI passes one that also sets up logging on stderr,
# so eval does not import the CLI (which imports eval).
SettingsLoader = Callable[[str | None], Settings]


@contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage; yields the ``progress(stage, done, total)`` callback."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        yield progress


def run_eval_command(
    dataset_dir: Path,
    split: str,
    modes: str,
    k: int,
    out_dir: Path | None,
    config: str | None,
    *,
    rrf_k: str | int | None = None,
    dense_weight: str | float | None = None,
    candidates: str | int | None = None,
    settings_loader: SettingsLoader = load_settings,
) -> int:
    """Run an evaluation and write its report; returns the exit code (0 ok, 1 failed, 2 usage).

    ``rrf_k`` and ``dense_weight`` may be comma lists: each value adds a row
    (e.g. ``hybrid-rrf k=20``) computed on the same cached knowledge base.
    """
    try:
        settings = settings_loader(config)
        mode_list = [m.strip() for m in modes.split(",") if m.strip()]
        if k < 1:
            console.print(f"[red]error:[/red] --k must be >= 1, got {k}")
            return 2
        dataset = load_beir(dataset_dir, split)
        out = out_dir or (
            settings.data_dir / "eval" / f"{dataset_dir.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        )
        with _stage_progress() as progress:
            result = evaluate(
                dataset,
                settings,
                mode_list,
                settings.data_dir / "eval-cache",
                ks=sorted({1, 5, 10, 100, k}),
                progress=progress,
            )
            sweeps = [
                ("k", _values(rrf_k, int), "hybrid-rrf"),
                ("w", _values(dense_weight, float), "hybrid-weighted"),
            ]
            for mode in mode_list:  # top-k per retriever applies to every mode
                sweeps.append(("candidates", _values(candidates, int), mode))
            for name, values, mode in sweeps:
                for value in values:
                    extra = evaluate(
                        dataset,
                        settings,
                        [mode],
                        settings.data_dir / "eval-cache",
                        ks=sorted({1, 5, 10, 100, k}),
                        progress=progress,
                        **{{"k": "rrf_k", "w": "dense_weight"}.get(name, name): value},
                    )
                    label = f"{mode} {name}={value}"
                    result.metrics[label] = extra.metrics[mode]
                    result.per_query[label] = extra.per_query[mode]
    except RagError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        return 2 if exc.code in ("invalid_input", "parse_error") else 1
    references = SCIFACT_REFERENCES if "scifact" in dataset_dir.name.lower() else {}
    paths = write_report(
        out,
        {
            "config": {**result.config, "k": k, "split": split},
            "dataset": dataset.summary(),
            "metrics": result.metrics,
            "per_query": result.per_query,
            "timings": result.timings,
            "references": references,
        },
    )
    table = Table(title=f"{dataset_dir.name} ({split}, {len(dataset.queries)} queries)")
    columns = list(
        dict.fromkeys(
            ["ndcg@10", "mrr@10", "recall@1", "recall@5", f"recall@{k}", "recall@100", "map@100"]
        )
    )
    table.add_column("mode")
    for column in columns:
        table.add_column(column)
    for mode, metrics in result.metrics.items():
        table.add_row(mode, *(f"{metrics.get(c, float('nan')):.4f}" for c in columns))
    Console().print(table)
    Console().print(
        f"results: {paths.json}\ntable:   {paths.markdown}\nchart:   {paths.chart}",
        highlight=False,
    )
    return 0


def _values(raw: str | int | float | None, kind: type) -> list:
    """Parse a comma list of sweep values ("20,40,60")."""
    if raw is None:
        return []
    try:
        return [kind(v) for v in str(raw).split(",") if v.strip()]
    except ValueError as exc:
        from rag.errors import InvalidInput

        raise InvalidInput(f"expected a comma list of numbers, got {raw!r}") from exc


def run_user_eval_command(
    questions: Path,
    modes: str,
    k: int,
    out_dir: Path | None,
    collections: tuple[str, ...],
    config: str | None,
    *,
    settings_loader: SettingsLoader = load_settings,
) -> int:
    """Evaluate an existing knowledge base on a JSONL file of questions; returns the exit code."""
    from eval.user_eval import COLUMNS, evaluate_user_questions, write_user_report
    from rag.services import build_services

    try:
        settings = settings_loader(config)
        mode_list = [m.strip() for m in modes.split(",") if m.strip()]
        unknown = [m for m in mode_list if m not in MODES]
        if unknown or k < 1:
            console.print(f"[red]error:[/red] unknown mode {unknown} or --k {k} < 1")
            return 2
        services = build_services(settings)
        try:
            result = evaluate_user_questions(services, questions, collections, mode_list, k)
        finally:
            services.close()
    except RagError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        return 2 if exc.code in ("invalid_input", "parse_error") else 1
    out = out_dir or settings.data_dir / "eval" / f"questions-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    paths = write_user_report(out, result)
    table = Table(title=f"{questions.name} ({result['questions']} questions, k = {k})")
    table.add_column("mode")
    for column in COLUMNS:
        table.add_column(column)
    for mode, metrics in result["metrics"].items():
        table.add_row(mode, *("–" if metrics[c] is None else f"{metrics[c]:.4f}" for c in COLUMNS))
    Console().print(table)
    Console().print(
        f"results: {paths[0]}\ntable:   {paths[1]}\nchart:   {paths[2]}", highlight=False
    )
    return 0


def run_answer_eval_command(
    dataset_dir: Path,
    generators: str | None,
    limit: int | None,
    out_dir: Path | None,
    config: str | None,
    *,
    settings_loader: SettingsLoader = load_settings,
) -> int:
    """Evaluate answers on a QA folder (``docs/`` + ``questions.jsonl``); returns the exit code.

    Writes ``results.json``, ``results.md``, ``chart.png`` and ``answers.jsonl``
    (one readable record per question and generator) into the report folder.
    """
    from eval.answer_runner import (
        ANSWER_COLUMNS,
        CHART_COLUMNS,
        SHORT_TITLES,
        evaluate_answers,
        parse_generators,
        references_for,
    )
    from eval.qa import load_qa

    try:
        settings = settings_loader(config)
        chosen = parse_generators(generators or settings.generator.backend)
        dataset = load_qa(dataset_dir).head(limit)
        out = out_dir or (
            settings.data_dir / "eval" / f"{dataset_dir.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        )
        with _stage_progress() as progress:
            result = evaluate_answers(
                dataset,
                settings,
                chosen,
                settings.data_dir / "eval-cache",
                answers_path=Path(out) / "answers.jsonl",
                progress=progress,
            )
    except RagError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        return 2 if exc.code in ("invalid_input", "parse_error") else 1
    timings: dict[str, object] = dict(result.timings)
    for name, stages in result.latency.items():
        timings[name] = {f"{stage} {q}": v for stage, qs in stages.items() for q, v in qs.items()}
    paths = write_report(
        out,
        {
            "config": {**result.config, "limit": limit},
            "dataset": dataset.summary(),
            "metrics": result.metrics,
            "per_query": result.per_query,
            "timings": timings,
            "references": references_for(dataset_dir.name),
            "latency": result.latency,
            "row_label": "generator",
        },
        title="Answer evaluation",
        columns=ANSWER_COLUMNS,
        chart_metrics=CHART_COLUMNS,
    )
    summary = dataset.summary()
    table = Table(
        title=f"{dataset_dir.name} ({summary['num_queries']} questions, "
        f"{summary['unanswerable']} unanswerable)"
    )
    table.add_column("generator")
    for column in ANSWER_COLUMNS:
        table.add_column(SHORT_TITLES.get(column, column), justify="right")
    for name, metrics in result.metrics.items():
        table.add_row(
            name, *("–" if metrics[c] is None else f"{metrics[c]:.3f}" for c in ANSWER_COLUMNS)
        )
    Console().print(table)
    Console().print(
        f"results: {paths.json}\ntable:   {paths.markdown}\nchart:   {paths.chart}\n"
        f"answers: {Path(out) / 'answers.jsonl'}",
        highlight=False,
    )
    return 0
