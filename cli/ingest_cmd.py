"""``rag ingest PATH... [--collection NAME] [--recursive] [--json]``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, overload

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    cli_settings,
    err,
    handle_errors,
    out,
    print_json,
    services_for,
)

# Which files of a folder are picked up; the type itself is sniffed from the bytes.
SUPPORTED_SUFFIXES = {
    ".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".xhtml", ".text",
    ".docx", ".pptx", ".xlsx", ".xlsm", ".csv", ".tsv", ".epub", ".odt",
}  # fmt: skip


def collect_files(paths: list[Path], recursive: bool) -> list[Path]:
    """Files named directly, plus supported files inside named folders."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files += sorted(
                p
                for p in path.glob(pattern)
                if p.is_file()
                and p.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            err.print(f"[red]error:[/red] {path} does not exist", highlight=False)
            raise typer.Exit(EXIT_USAGE)
    return files


class FileSource(Sequence[tuple[str, bytes]]):
    """Files read from disk only when the ingest pipeline reaches them (memory stays flat)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> tuple[str, bytes]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, bytes]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, bytes] | list[tuple[str, bytes]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        path = self.paths[index]
        return path.name, path.read_bytes()


@handle_errors
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Target collection.")
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Recurse into folders.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    password: Annotated[
        str | None, typer.Option("--password", help="Password for encrypted PDF or Office files.")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace older versions with the same file name.")
    ] = False,
    config: Annotated[str | None, typer.Option("--config", help="TOML config file.")] = None,
) -> None:
    """Ingest files into the knowledge base. Exit 0 if all succeeded or were present, else 1."""
    settings = cli_settings(config)
    files = collect_files(paths, recursive)
    if not files:
        err.print("[red]error:[/red] no supported files found (PDF, txt, md, html)")
        raise typer.Exit(EXIT_USAGE)
    from ingest.service import IngestOutcome, IngestProgress, build_ingest_service

    with services_for(settings) as services:
        service = build_ingest_service(services)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=err,
            disable=json_out or not err.is_terminal,
            transient=True,
        ) as progress:
            task_files = progress.add_task("files", total=len(files), detail="")
            task_chunks = progress.add_task("chunks", total=None, detail="")

            def on_progress(p: IngestProgress) -> None:
                progress.update(task_chunks, total=p.chunks_total, completed=p.chunks_embedded)

            def on_outcome(position: int, outcome: IngestOutcome) -> None:
                progress.update(task_files, advance=1, detail=outcome.filename)

            outcomes = service.ingest_many(
                FileSource(files),
                collection=collection,
                replace=replace or None,
                password=password,
                progress=on_progress,
                on_outcome=on_outcome,
            )
    failed = [o for o in outcomes if not o.ok]
    if json_out:
        print_json({"documents": [o.to_dict() for o in outcomes], "failed": len(failed)})
    else:
        table = Table(title="Ingest summary")
        for column in ("file", "result", "id", "pages", "chunks", "error"):
            table.add_column(column)
        for o in outcomes:
            style = "red" if not o.ok else ("yellow" if o.action == "existing" else "green")
            table.add_row(
                o.filename,
                f"[{style}]{o.action}[/{style}]",
                o.document_id or "",
                str(o.pages),
                str(o.chunks),
                o.error or "",
            )
        out.print(table)
        out.print(f"{len(outcomes) - len(failed)} ok, {len(failed)} failed")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
