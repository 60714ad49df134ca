"""``rag migrate --to URL``: copy this knowledge base into another database, then check both.

Exit codes: 0 copied and both consistent; 1 the copy failed or a check found
a difference; 2 refused before anything was written (same database, target
not empty or unreachable, ingestion in progress).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
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
)
from rag.db.copy import (
    CopyCheck,
    CopyReport,
    check_copy,
    check_copy_allowed,
    check_distinct_databases,
    copy_knowledge_base,
    open_knowledge_base,
)
from rag.db.migrate import display_url
from rag.errors import RagError
from rag.records import CollectionCheck


@handle_errors
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="SQLAlchemy URL of an empty target database, e.g. "
            "postgresql+psycopg://user:password@host/rag",
        ),
    ],
    to_data_dir: Annotated[
        Path | None,
        typer.Option(
            "--to-data-dir",
            help="The target's data folder (default: this one's; a SQLite target needs its own).",
        ),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", min=1, help="Rows copied at a time.")
    ] = 2000,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: Annotated[str | None, typer.Option("--config", help="TOML config file.")] = None,
) -> None:
    """Copy the knowledge base (rows, vectors, originals) into an empty database; check both.

    Nothing is re-embedded: the target's search indexes are built from the
    copied chunk vectors and texts. Stop the server first (its writes wait
    for the copy). The copy is one transaction: after a failure the target is
    empty and the command can be run again. Point RAG_DATABASE_URL at the
    target afterwards.
    """
    settings = cli_settings(config)
    target_settings = settings.model_copy(
        update={"database_url": to, "data_dir": to_data_dir or settings.data_dir}
    )
    source = target = None
    try:
        try:
            check_distinct_databases(settings.resolved_database_url, to)
            source = open_knowledge_base(settings, "source")
            target = open_knowledge_base(target_settings, "target")
            check_copy_allowed(source, target)
        except RagError as exc:
            err.print(f"[red]refused:[/red] {exc.message}", highlight=False)
            raise typer.Exit(EXIT_USAGE) from exc
        try:
            report = copy_knowledge_base(source, target, batch_rows=batch_rows)
        except RagError as exc:
            err.print(f"[red]copy failed:[/red] {exc.message}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from exc
        check = check_copy(source, target)
    finally:
        for kb in (target, source):
            if kb is not None:
                kb.close()
    if json_out:
        print_json(_json(report, check))
    else:
        _print(report, check, display_url(to), moved=to_data_dir is not None)
    raise typer.Exit(EXIT_OK if check.consistent else EXIT_FAILED)


def _side(checks: tuple[CollectionCheck, ...]) -> dict[str, Any]:
    return {
        "consistent": all(c.consistent for c in checks),
        "collections": [c.to_dict() for c in checks],
    }


def _json(report: CopyReport, check: CopyCheck) -> dict[str, Any]:
    return {
        "source": _side(check.source),
        "target": _side(check.target),
        "collections": report.collections,
        "documents": report.documents,
        "chunks": report.chunks,
        "seconds": report.seconds,
        "consistent": check.consistent,
        "copied": report.to_dict(),
        "differences": list(check.differences),
    }


def _print(report: CopyReport, check: CopyCheck, target_url: str, *, moved: bool) -> None:
    out.print(
        f"copied {report.collections} collections, {report.documents} documents, "
        f"{report.chunks} chunks, {report.chat_sessions} chats and {report.originals} originals "
        f"to {target_url} in {report.seconds:.1f} s",
        highlight=False,
    )
    if report.indexes_built:
        out.print(
            f"built {report.indexes_built} vector indexes in {report.index_seconds:.1f} s",
            highlight=False,
        )
    if report.missing_originals:
        err.print(
            f"{len(report.missing_originals)} documents had no original file in the source "
            f"(first {report.missing_originals[0]})",
            highlight=False,
        )
    table = Table(title="consistency")
    for column in ("side", "collection", "sql", "vectors", "bm25", "ok"):
        table.add_column(column)
    for side, checks in (("source", check.source), ("target", check.target)):
        for c in checks:
            table.add_row(
                side,
                c.collection,
                str(c.sql_chunks),
                str(c.faiss_chunks),
                str(c.bm25_chunks),
                "[green]yes[/green]" if c.consistent else "[red]no[/red]",
            )
    out.print(table)
    for difference in check.differences:
        err.print(f"[red]difference:[/red] {difference}", highlight=False)
    if check.consistent:
        settings = "RAG_DATABASE_URL and RAG_DATA_DIR" if moved else "RAG_DATABASE_URL"
        out.print(f"both consistent: point {settings} at the target", highlight=False)
    else:
        err.print("inconsistent: run `rag doctor` on each side", highlight=False)


__all__ = ["migrate"]
