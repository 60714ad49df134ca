"""``rag doctor``, ``rag bootstrap``, ``rag serve`` and ``rag eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    cli_settings,
    err,
    handle_errors,
    out,
    print_json,
    services_for,
)

ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file.")]


@handle_errors
def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Fix what is inconsistent.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Check that SQL, FAISS and BM25 hold the same chunk ids. Exit 0 if consistent, else 1."""
    with services_for(cli_settings(config)) as services:
        checks = services.kb.repair() if repair else services.kb.check()
    consistent = all(c.consistent for c in checks)
    if json_out:
        print_json(
            {
                "consistent": consistent,
                "repaired": repair,
                "collections": [c.to_dict() for c in checks],
            }
        )
    else:
        table = Table(title="consistency")
        for column in ("collection", "sql", "faiss", "bm25", "missing", "extra", "stuck", "ok"):
            table.add_column(column)
        for c in checks:
            table.add_row(
                c.collection,
                str(c.sql_chunks),
                str(c.faiss_chunks),
                str(c.bm25_chunks),
                str(len(set(c.missing_in_faiss) | set(c.missing_in_bm25))),
                str(len(set(c.extra_in_faiss) | set(c.extra_in_bm25))),
                str(len(c.stuck_documents)),
                "[green]yes[/green]" if c.consistent else "[red]no[/red]",
            )
        out.print(table)
        if not consistent:
            err.print("inconsistent: run `rag doctor --repair`")
    raise typer.Exit(EXIT_OK if consistent else EXIT_FAILED)


@handle_errors
def show_settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the README's configuration table.")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the effective settings as JSON (or every setting as a Markdown table)."""
    if markdown:
        from rag.settings import settings_markdown

        out.print(settings_markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    print_json(cli_settings(config).model_dump(mode="json"))


@handle_errors
def bootstrap(
    folder: Annotated[Path, typer.Argument(help="Folder of sample documents.")] = Path("data"),
    config: ConfigOpt = None,
) -> None:
    """Ingest the sample documents when the knowledge base is empty (used by `make run`)."""
    settings = cli_settings(config)
    from cli.ingest_cmd import collect_files
    from ingest.service import build_ingest_service

    with services_for(settings) as services:
        _, total = services.kb.list_documents()
        if total:
            out.print(f"knowledge base has {total} documents; nothing to bootstrap")
        else:
            service = build_ingest_service(services)
            for path in collect_files([folder], recursive=False):
                outcome = service.ingest_path(path)
                out.print(
                    f"{outcome.action:9} {path.name} ({outcome.chunks} chunks)", highlight=False
                )
        query_encoder = getattr(services.embedder, "query_encoder", None)
        if query_encoder is not None:
            # Exported once (~10 s) so the first question does not wait for it.
            query_encoder()
        if settings.generator.backend == "transformers":
            # The first load de-quantises the GGUF model (~30 s) and caches it, so the
            # first question asked in the browser is answered without that wait.
            out.print("loading the generator (the first run converts the bundled model)...")
            services.generator().load()


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the REST API and the web page."""
    import uvicorn

    from api.app import create_app

    settings = cli_settings(config)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.api.host,
        port=port or settings.api.port,
        log_level=settings.log_level.lower() if settings.log_level else "warning",
    )


def eval_command(
    dataset_dir: Annotated[
        Path,
        typer.Argument(
            help="BEIR-format dataset folder, a QA folder (docs/ + questions.jsonl), "
            "or a JSONL file of your own questions."
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="qrels split")] = "test",
    modes: Annotated[str, typer.Option("--modes")] = "bm25,dense,hybrid-rrf,hybrid-weighted",
    k: Annotated[int, typer.Option("--k", help="cut-off for recall / hit rate")] = 10,
    out_dir: Annotated[Path | None, typer.Option("--out", help="report folder")] = None,
    collection: Annotated[
        list[str] | None,
        typer.Option("--collection", "-c", help="collections to search (questions file only)"),
    ] = None,
    rrf_k: Annotated[
        str | None, typer.Option("--rrf-k", help="RRF k, or a comma list to sweep")
    ] = None,
    dense_weight: Annotated[
        str | None, typer.Option("--dense-weight", help="weighted-fusion weight(s) to sweep")
    ] = None,
    candidates: Annotated[
        str | None,
        typer.Option("--candidates", help="chunks each retriever returns, comma list to sweep"),
    ] = None,
    generators: Annotated[
        str | None,
        typer.Option(
            "--generators", help="QA folder: generators to compare, e.g. transformers,extractive"
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="QA folder: only the first N questions")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate retrieval (a BEIR dataset, or your questions) or answers (a QA folder)."""
    from eval.cli import run_answer_eval_command, run_eval_command, run_user_eval_command
    from eval.qa import is_qa_folder

    if is_qa_folder(dataset_dir):
        code = run_answer_eval_command(
            dataset_dir, generators, limit, out_dir, config, settings_loader=cli_settings
        )
    elif dataset_dir.is_file():
        code = run_user_eval_command(
            dataset_dir,
            modes,
            k,
            out_dir,
            tuple(collection or ()),
            config,
            settings_loader=cli_settings,
        )
    else:
        code = run_eval_command(
            dataset_dir,
            split,
            modes,
            k,
            out_dir,
            config,
            rrf_k=rrf_k,
            dense_weight=dense_weight,
            candidates=candidates,
            settings_loader=cli_settings,
        )
    raise typer.Exit(code)


__all__ = ["bootstrap", "doctor", "eval_command", "serve", "show_settings"]
