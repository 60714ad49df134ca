"""Helpers shared by the CLI commands: settings, services, errors → exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

from rag.errors import EmbeddingModelNotFound, InvalidInput, QueryRejected, RagError
from rag.settings import Settings, load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def cli_settings(config: str | None = None) -> Settings:
    """Settings for a command and logging on stderr at the configured level."""
    settings = load_settings(config)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("jieba", "sentence_transformers", "transformers", "httpx"):
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    return settings


def print_json(data: Any) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def handle_errors(func: F) -> F:
    """Turn project errors into a message on stderr and an exit code (1, or 2 for usage)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (InvalidInput, QueryRejected, EmbeddingModelNotFound) as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
            raise typer.Exit(EXIT_USAGE) from exc
        except RagError as exc:
            err.print(f"[red]error:[/red] {exc.message}", highlight=False)
            raise typer.Exit(EXIT_FAILED) from exc

    return wrapper  # type: ignore[return-value]


@contextmanager
def services_for(settings: Settings, *, recover: bool = True) -> Iterator[Any]:
    """Build services and close them at the end of the command."""
    from rag.services import build_services

    services = build_services(settings, recover=recover)
    try:
        yield services
    finally:
        services.close()
