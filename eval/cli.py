"""``rag eval DATASET_DIR [--split test] [--modes ...] [--k 10] [--out DIR]``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eval.beir import load_beir
from eval.report import write_report
from eval.runner import SCIFACT_REFERENCES, evaluate
from rag.errors import RagError

console = Console(stderr=True)


def run_eval_command(
    dataset_dir: Path,
    split: str,
    modes: str,
    k: int,
    out_dir: Path | None,
    config: str | None,
    *,
    rrf_k: int | None = None,
    dense_weight: float | None = None,
) -> int:
    """Run an evaluation and write its report; returns the exit code (0 ok, 1 failed, 2 usage)."""
    from rag.cli.common import cli_settings

    try:
        settings = cli_settings(config)
        mode_list = [m.strip() for m in modes.split(",") if m.strip()]
        if k < 1:
            console.print(f"[red]error:[/red] --k must be >= 1, got {k}")
            return 2
        dataset = load_beir(dataset_dir, split)
        out = out_dir or (
            settings.data_dir / "eval" / f"{dataset_dir.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        )
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            result = evaluate(
                dataset,
                settings,
                mode_list,
                settings.data_dir / "eval-cache",
                rrf_k=rrf_k,
                dense_weight=dense_weight,
                ks=sorted({1, 5, 10, 100, k}),
                progress=progress,
            )
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
