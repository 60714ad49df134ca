"""Document-embedding speed of two models on the same chunk texts, side by side.

``python -m eval.embedder_speed DB [DB...] --models bundled,multilingual-e5-small``
takes the first ``--chunks`` chunk texts of each knowledge-base database
given (e.g. the eval cache's CMRC and SciFact ``rag.db``), embeds them with
each model in turn in this process (one warm-up call first, so loading is not
timed) and prints chunks per second with the host's load average. On a
shared host only the ratio between rows of one run means much.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from pathlib import Path

from rag.services import build_embedder_for
from rag.settings import load_settings


def chunk_texts(database: Path, limit: int) -> list[str]:
    """The first ``limit`` chunk texts stored in a knowledge-base database."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT text FROM chunks ORDER BY id LIMIT ?", (limit,))
        return [text for (text,) in rows]


def main(argv: list[str] | None = None) -> None:
    """Print one row per (texts, model)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("databases", type=Path, nargs="+")
    parser.add_argument("--models", default="bundled,multilingual-e5-small")
    parser.add_argument("--chunks", type=int, default=128)
    args = parser.parse_args(argv)
    settings = load_settings()
    embedders = {m: build_embedder_for(settings, m) for m in args.models.split(",")}
    for embedder in embedders.values():
        embedder.embed_documents(["warm up"])
    print("| texts | model | chunks | mean tokens | seconds | chunks/s | load avg |")
    print("|---|---|---|---|---|---|---|")
    for database in args.databases:
        texts = chunk_texts(database, args.chunks)
        for model, embedder in embedders.items():
            tokens = embedder.token_counter.count_tokens(texts)
            start = time.perf_counter()
            embedder.embed_documents(texts)
            seconds = time.perf_counter() - start
            print(
                f"| {database.parent.name} | {model} | {len(texts)} | "
                f"{sum(tokens) / len(tokens):.0f} | {seconds:.1f} | {len(texts) / seconds:.1f} | "
                f"{os.getloadavg()[0]:.1f} |"
            )


if __name__ == "__main__":
    main()
