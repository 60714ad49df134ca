"""``rag ask "question"`` and ``rag chat`` (interactive, multi-turn)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.common import cli_settings, handle_errors, out, print_json, services_for
from rag.types import Answer, ChatTurn

GeneratorOpt = Annotated[
    str | None,
    typer.Option("--generator", "-g", help="transformers | openai | extractive"),
]
CollectionOpt = Annotated[
    list[str] | None, typer.Option("--collection", "-c", help="Collection(s) to search.")
]
DocOpt = Annotated[list[str] | None, typer.Option("--doc", help="Document id(s) to search.")]
ConfigOpt = Annotated[str | None, typer.Option("--config", help="TOML config file.")]


def _check_generator(generator: str | None) -> None:
    if generator not in (None, "transformers", "openai", "extractive"):
        from rag.errors import InvalidInput

        raise InvalidInput(
            f"--generator must be transformers, openai or extractive, got {generator!r}"
        )


def print_sources(answer: Answer) -> None:
    """The cited sources as a table."""
    if not answer.citations:
        return
    table = Table(title="sources")
    for column in ("#", "document", "page", "score", "dense", "bm25", "snippet"):
        table.add_column(column)
    for c in answer.citations:
        table.add_row(
            str(c.number),
            c.filename,
            str(c.page),
            f"{c.score:.4f}",
            str(c.dense_rank or "-"),
            str(c.sparse_rank or "-"),
            c.snippet[:80].replace("\n", " "),
        )
    out.print(table)


def print_flags(answer: Answer) -> None:
    """Flags that are set, on one line."""
    flags = [name for name, value in vars(answer.flags).items() if value]
    if flags:
        out.print(f"[dim]flags: {', '.join(flags)}[/dim]")


@handle_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt = None,
    doc: DocOpt = None,
    generator: GeneratorOpt = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sources to use.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Answer a question from the knowledge base, citing document and page."""
    _check_generator(generator)
    settings = cli_settings(config)
    with services_for(settings) as services:
        pipeline = services.pipeline()
        kwargs = dict(
            collections=tuple(collection or ()),
            document_ids=tuple(doc or ()),
            top_k=top_k,
            generator=generator,
        )
        if json_out:
            answer = pipeline.ask(question, **kwargs)
            print_json(answer.to_dict())
            return
        answer = None
        for event in pipeline.stream(question, **kwargs):
            if isinstance(event, str):
                sys.stdout.write(event)
                sys.stdout.flush()
            else:
                answer = event
        sys.stdout.write("\n")
        if answer is not None:
            print_flags(answer)
            print_sources(answer)


@handle_errors
def chat(
    collection: CollectionOpt = None,
    doc: DocOpt = None,
    generator: GeneratorOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Interactive multi-turn chat; follow-up questions use the history. Ctrl-D quits."""
    _check_generator(generator)
    from rag.errors import QueryRejected

    settings = cli_settings(config)
    history: list[ChatTurn] = []
    with services_for(settings) as services:
        pipeline = services.pipeline()
        out.print("[dim]Ask a question (empty line or Ctrl-D to quit).[/dim]")
        while True:
            try:
                question = input("you> ").strip()
            except EOFError:
                break
            if not question:
                break
            try:
                answer = None
                out.print("rag> ", end="")
                for event in pipeline.stream(
                    question,
                    history=tuple(history),
                    collections=tuple(collection or ()),
                    document_ids=tuple(doc or ()),
                    generator=generator,
                ):
                    if isinstance(event, str):
                        sys.stdout.write(event)
                        sys.stdout.flush()
                    else:
                        answer = event
                sys.stdout.write("\n")
            except QueryRejected as exc:
                out.print(f"[red]{exc.message}[/red]")
                continue
            if answer is not None:
                print_flags(answer)
                print_sources(answer)
                history += [ChatTurn("user", question), ChatTurn("assistant", answer.answer)]
