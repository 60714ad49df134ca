"""The ``rag`` command. Flags, ``--json`` shapes and exit codes are a contract.

Exit codes: 0 success, 1 a file/operation failed or an id is unknown, 2 usage
errors (bad flags, invalid values).
"""

from __future__ import annotations

import typer

from cli import ask_cmd, db_cmd, docs_cmd, ingest_cmd, migrate_cmd, ops_cmd

app = typer.Typer(
    name="rag",
    help="Local RAG knowledge base: ingest documents, ask questions, get cited answers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ingest")(ingest_cmd.ingest)
app.add_typer(docs_cmd.docs_app, name="docs")
app.add_typer(docs_cmd.collections_app, name="collections")
app.command("doctor")(ops_cmd.doctor)
app.command("bootstrap")(ops_cmd.bootstrap)
app.command("settings")(ops_cmd.show_settings)
app.command("serve")(ops_cmd.serve)
app.command("ask")(ask_cmd.ask)
app.command("chat")(ask_cmd.chat)
app.command("eval")(ops_cmd.eval_command)
app.add_typer(db_cmd.db_app, name="db")
app.command("migrate")(migrate_cmd.migrate)

if __name__ == "__main__":  # pragma: no cover
    app()
