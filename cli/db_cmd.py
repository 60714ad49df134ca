"""``rag db upgrade`` and ``rag db current``: the SQL schema's revision."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import cli_settings, handle_errors, out, print_json
from rag.db.engine import create_database_engine
from rag.db.migrate import display_url, schema_status, upgrade_database

db_app = typer.Typer(
    help="The database schema: upgrade it to this version's, or show its revision.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file.")]


@db_app.command("upgrade")
@handle_errors
def upgrade(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Upgrade the database to this version's schema (a new one is created). Exit 0 when done.

    Safe while a server uses the database; a database made by a newer version
    is refused (exit 1).
    """
    url = cli_settings(config).resolved_database_url
    engine = create_database_engine(url)
    try:
        result = upgrade_database(engine)
    finally:
        engine.dispose()
    if json_out:
        print_json(
            {"from": result.from_revision, "to": result.to_revision, "url": display_url(url)}
        )
        return
    before = result.from_revision or ("(before migrations)" if result.adopted else "(empty)")
    if result.changed:
        out.print(f"{display_url(url)}: upgraded {before} -> {result.to_revision}", highlight=False)
    else:
        out.print(f"{display_url(url)}: already at {result.to_revision}", highlight=False)


@db_app.command("current")
@handle_errors
def current(json_out: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show the database's schema revision and whether it is this version's (head). Exit 0."""
    url = cli_settings(config).resolved_database_url
    engine = create_database_engine(url)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    if json_out:
        print_json({**status.to_dict(), "url": display_url(url)})
        return
    if status.is_head:
        state = "head"
    elif not status.known:
        state = f"unknown to this version (newest known {status.head}): upgrade rag-kb"
    elif status.pre_alembic:
        state = f"made before migrations: run `rag db upgrade` (head {status.head})"
    else:
        state = f"behind head {status.head}: run `rag db upgrade`"
    out.print(f"{display_url(url)}: {status.revision or '(none)'} ({state})", highlight=False)
