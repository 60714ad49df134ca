"""``rag docs list|show|delete`` and ``rag collections list|create|delete|reembed``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import cli_settings, err, handle_errors, out, print_json, services_for

docs_app = typer.Typer(help="List, show and delete documents.", no_args_is_help=True)
collections_app = typer.Typer(
    help="List, create, delete and re-embed collections.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file.")]


@docs_app.command("list")
@handle_errors
def docs_list(
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """List documents, newest first."""
    with services_for(cli_settings(config), recover=False) as services:
        docs, total = services.kb.list_documents(collection, status)
    if json_out:
        print_json({"documents": [d.to_dict() for d in docs], "total": total})
        return
    table = Table(title=f"{total} documents")
    for column in ("id", "collection", "filename", "status", "pages", "chunks", "error"):
        table.add_column(column)
    for d in docs:
        table.add_row(
            d.id, d.collection, d.filename, d.status, str(d.pages), str(d.chunks), d.error or ""
        )
    out.print(table)


@docs_app.command("show")
@handle_errors
def docs_show(
    doc_id: Annotated[str, typer.Argument(help="Document id.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Show one document's metadata and its first chunks."""
    with services_for(cli_settings(config), recover=False) as services:
        doc = services.kb.get_document(doc_id)
        chunks = services.kb.document_chunks(doc_id, limit=3)
    if json_out:
        print_json(doc.to_dict())
        return
    for key, value in doc.to_dict().items():
        out.print(f"[bold]{key}[/bold]: {value}", highlight=False)
    for chunk in chunks:
        out.print(
            f"\n[dim]chunk {chunk.ordinal}, pages {chunk.page_start}-{chunk.page_end}:[/dim] "
            f"{chunk.text[:300]}",
            highlight=False,
        )


@docs_app.command("delete")
@handle_errors
def docs_delete(
    doc_id: Annotated[str, typer.Argument(help="Document id.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Delete a document from SQL, FAISS and BM25."""
    with services_for(cli_settings(config)) as services:
        doc = services.kb.delete_document(doc_id)
    if json_out:
        print_json({"deleted": doc.to_dict()})
    else:
        out.print(f"deleted {doc.id} ({doc.filename}, {doc.chunks} chunks)", highlight=False)


@collections_app.command("list")
@handle_errors
def collections_list(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """List collections with their sizes."""
    with services_for(cli_settings(config), recover=False) as services:
        infos = services.kb.list_collections()
    if json_out:
        print_json({"collections": [c.to_dict() for c in infos]})
        return
    table = Table(title="collections")
    for column in ("name", "documents", "chunks", "embedding model", "created"):
        table.add_column(column)
    for c in infos:
        model = f"{c.embedding_model} ({c.embedding_dim})" if c.embedding_dim else c.embedding_model
        table.add_row(c.name, str(c.documents), str(c.chunks), model, c.created_at.isoformat())
    out.print(table)


@collections_app.command("create")
@handle_errors
def collections_create(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Create an empty collection."""
    with services_for(cli_settings(config), recover=False) as services:
        info = services.kb.create_collection(name)
    if json_out:
        print_json(info.to_dict())
    else:
        out.print(f"created collection {info.name}", highlight=False)


@collections_app.command("delete")
@handle_errors
def collections_delete(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Delete a collection with all its documents and indexes."""
    with services_for(cli_settings(config)) as services:
        removed = services.kb.delete_collection(name)
    if json_out:
        print_json({"deleted": name, "documents": removed})
    else:
        out.print(f"deleted collection {name} ({removed} documents)", highlight=False)


@collections_app.command("reembed")
@handle_errors
def collections_reembed(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="New embedding model: bundled, multilingual-e5-small, or a local folder.",
        ),
    ],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Remake every vector of a collection with another model, atomically.

    The old vectors answer queries until the new ones replace them in one step;
    an interrupted run leaves the old ones. Chunks and BM25 do not change.
    """
    import time

    from rag.embedding import load_embedder

    settings = cli_settings(config)
    with services_for(settings) as services:
        before = services.kb.get_collection(name)
        embedder = load_embedder(services.embedders, model)
        started = time.perf_counter()
        with Progress(
            TextColumn("[bold]re-embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=json_out or not err.is_terminal,
            transient=True,
        ) as progress:
            task = progress.add_task("chunks", total=before.chunks)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            after = services.kb.reembed_collection(
                name,
                embedder,
                batch_chunks=settings.ingest.embed_batch_chunks,
                progress=on_progress,
            )
        seconds = time.perf_counter() - started
    if json_out:
        print_json(
            {
                "collection": after.name,
                "model": after.embedding_model,
                "dimension": after.embedding_dim,
                "previous_model": before.embedding_model,
                "chunks": after.chunks,
                "seconds": round(seconds, 3),
            }
        )
    else:
        out.print(
            f"re-embedded {after.name}: {after.chunks} chunks with {after.embedding_model} "
            f"({after.embedding_dim} dimensions; was {before.embedding_model or 'unrecorded'}) "
            f"in {seconds:.1f} s",
            highlight=False,
        )
