"""``rag docs list|show|delete`` and ``rag collections list|create|delete``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rag.cli.common import cli_settings, handle_errors, out, print_json, services_for

docs_app = typer.Typer(help="List, show and delete documents.", no_args_is_help=True)
collections_app = typer.Typer(help="List, create and delete collections.", no_args_is_help=True)

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
    for column in ("name", "documents", "chunks", "created"):
        table.add_column(column)
    for c in infos:
        table.add_row(c.name, str(c.documents), str(c.chunks), c.created_at.isoformat())
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
