"""Helpers shared by the benchmarks: timing percentiles, Markdown tables, synthetic corpora.

Benchmarks print figures; they never assert on them. Tables go to stdout,
progress lines to stderr, so ``python -m eval.bench.X > report.md`` keeps the
report clean.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rag.types import Chunk

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DEFAULT_SCIFACT = SHARED / "datasets" / "scifact"
DEFAULT_PDFS = SHARED / "datasets" / "pdfs"
# ~150 words of SciFact abstracts is ~200 all-MiniLM-L6-v2 tokens (~150 BM25 terms):
# inside the 150-250 token range the ingest chunker produces.
CHUNK_WORDS = 150
T = TypeVar("T")

# Targets from shared/PERFORMANCE.md ("Targets for this project on this machine").
TARGET_RETRIEVAL_P50_MS = 5.0
TARGET_RETRIEVAL_P95_MS = 10.0


def progress(name: str, message: str) -> None:
    """A progress line on stderr (tables go to stdout)."""
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    """The 1-minute load average, or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "n/a"


def machine_note() -> str:
    """One line saying how busy the host was (figures from a busy host run slow)."""
    return (
        f"Load average {load_average()} on {os.cpu_count()} CPUs at this point "
        "(a shared host: compare figures measured side by side, not across runs)."
    )


# ---------------------------------------------------------------- timing


def time_each(fn: Callable[[T], object], items: Sequence[T]) -> list[float]:
    """Seconds each ``fn(item)`` takes."""
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - start)
    return out


def percentiles_ms(samples: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) of ``samples`` (seconds) in milliseconds; (nan, nan) when empty."""
    if not len(samples):
        return float("nan"), float("nan")
    values = np.asarray(samples, dtype=np.float64) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def fmt_ms(value: float) -> str:
    """Milliseconds with a precision that suits the magnitude."""
    if value != value:  # NaN
        return "–"
    if value < 1:
        return f"{value:.3f} ms"
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def fmt_s(seconds: float) -> str:
    """Seconds, or milliseconds below one second."""
    return fmt_ms(seconds * 1000) if seconds < 1 else f"{seconds:.1f} s"


def fmt_span(samples: Sequence[float]) -> str:
    """The "p50 / p95" text of ``samples`` (seconds)."""
    p50, p95 = percentiles_ms(samples)
    return f"{fmt_ms(p50)} / {fmt_ms(p95)}"


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as "1.23x", or "–" when undefined."""
    if not denominator or denominator != denominator or numerator != numerator:
        return "–"
    return f"{numerator / denominator:.2f}x"


def markdown_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table under a level-3 heading."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- data


def load_scifact_passages(folder: Path = DEFAULT_SCIFACT) -> list[str]:
    """The "title abstract" text of every SciFact corpus document."""
    passages = []
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            passages.append(f"{record['title']} {record['text']}")
    return passages


def load_test_queries(folder: Path = DEFAULT_SCIFACT, limit: int | None = None) -> list[str]:
    """SciFact test claims (those with judgements in ``qrels/test.tsv``), in file order."""
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as handle:
        wanted = {line.split("\t")[0] for line in list(handle)[1:] if line.strip()}
    queries = []
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if str(record["_id"]) in wanted:
                queries.append(record["text"])
    return queries[:limit] if limit else queries


def make_chunk_texts(
    passages: Sequence[str], n: int, rng: np.random.Generator, words: int = CHUNK_WORDS
) -> list[str]:
    """``n`` chunk texts of ``words`` words cut at random offsets of the shuffled corpus.

    Real sentences and term statistics; repeats are expected above ~7k chunks
    (SciFact has about 1M words), as they would be in a corpus of near-duplicates.
    """
    stream = " ".join(passages[i] for i in rng.permutation(len(passages))).split()
    starts = rng.integers(0, len(stream) - words, size=n)
    return [" ".join(stream[s : s + words]) for s in starts.tolist()]


def clustered_unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """L2-normalised float32 vectors shaped like sentence embeddings (synthetic).

    200 topic clusters in a 64-dimensional subspace plus isotropic noise, as in
    ``bench_indexes.embedding_like``: uniformly random vectors are HNSW's worst
    case (no neighbourhood structure) and would make its build and search
    slower than on real embeddings.
    """
    sub = min(64, dim)
    basis = np.random.default_rng(42).standard_normal((sub, dim)).astype(np.float32)
    centres = np.random.default_rng(43).standard_normal((200, sub)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):  # bounded temporaries at 100k+
        m = min(20_000, n - start)
        z = centres[rng.integers(0, 200, m)] + 0.6 * rng.standard_normal((m, sub), dtype=np.float32)
        noise = rng.standard_normal((m, dim), dtype=np.float32)
        x = z @ basis + 0.3 * np.sqrt(sub / dim) * noise
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def bulk_load(
    kb: Any,
    collection: str,
    texts: Sequence[str],
    vectors: np.ndarray,
    *,
    chunks_per_document: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Commit ``texts`` with ``vectors`` as synthetic one-page documents; returns document ids.

    Index files are saved once at the end (``autoflush`` off), which is how a
    bulk load should run; the previous ``autoflush`` value is restored.
    """
    kb.create_collection(collection, exist_ok=True)
    previous, kb.autoflush = kb.autoflush, False
    doc_ids = []
    try:
        for number, start in enumerate(range(0, len(texts), chunks_per_document)):
            part = texts[start : start + chunks_per_document]
            chunks, offset = [], 0
            for ordinal, text in enumerate(part):
                chunks.append(
                    Chunk(
                        ordinal=ordinal,
                        text=text,
                        char_start=offset,
                        char_end=offset + len(text),
                        page_start=1,
                        page_end=1,
                        token_count=len(text.split()),
                    )
                )
                offset += len(text) + 1
            body = "\n".join(part).encode("utf-8")
            doc = kb.begin_document(
                collection,
                f"synthetic-{number:05d}.txt",
                media_type="text/plain",
                size_bytes=len(body),
                sha256=hashlib.sha256(body).hexdigest(),
            )
            kb.commit_document(doc.id, chunks, vectors[start : start + len(part)], page_count=1)
            doc_ids.append(doc.id)
            if on_progress is not None:
                on_progress(start + len(part))
        kb.flush()
    finally:
        kb.autoflush = previous
    return doc_ids
