"""Benchmark the keyword and vector indexes at 10k and 100k chunks; prints Markdown tables.

BM25 chunks are 150-token windows cut at random from the tokenised SciFact
corpus (real term statistics), queries are SciFact claims. Our incremental
``BM25Index`` is set against rank-bm25's ``BM25Okapi``, which the project was
asked to use: the numbers decide which one serves queries. FAISS uses synthetic
384-d vectors with the cluster structure of sentence embeddings (see
:func:`embedding_like`).

Run: ``python -m eval.bench.bench_indexes`` (about a minute on 2 cores).
Each figure is printed next to its reference in ``shared/PERFORMANCE.md``.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from eval.bench.common import percentiles_ms, time_each
from rag.index.bm25 import BM25Index
from rag.index.faiss_index import FaissVectorIndex
from rag.text.terms import tokenize

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
CHUNK_TOKENS = 150
DOC_CHUNKS = 20  # "one uploaded document"
DIM = 384
T = TypeVar("T")


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load_average() -> str:
    """The 1-minute load average, or "n/a" where the OS has none."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "n/a"


def fmt_ms(value: float) -> str:
    """Milliseconds with sensible precision."""
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def fmt_s(value: float) -> str:
    """Seconds, or milliseconds below one second."""
    return fmt_ms(value * 1000) if value < 1 else f"{value:.1f} s"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table under a heading."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- data


def load_scifact(folder: Path) -> tuple[list[str], list[str]]:
    """(document texts, query texts) of the BEIR SciFact folder."""
    docs = []
    with gzip.open(folder / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            docs.append(f"{record['title']} {record['text']}")
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for line in handle]
    return docs, queries


def make_token_chunks(doc_tokens: list[list[str]], n: int, rng: np.random.Generator) -> list:
    """``n`` chunks of CHUNK_TOKENS tokens cut at random offsets of the shuffled corpus."""
    order = rng.permutation(len(doc_tokens))
    stream = [token for i in order for token in doc_tokens[i]]
    starts = rng.integers(0, len(stream) - CHUNK_TOKENS, size=n)
    return [stream[s : s + CHUNK_TOKENS] for s in starts.tolist()]


def make_text_chunks(docs: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` raw-text chunks of about 200 words (~150 BM25 tokens once stop words go)."""
    words = " ".join(docs[i] for i in rng.permutation(len(docs))[:200]).split()
    starts = rng.integers(0, len(words) - 200, size=n)
    return [" ".join(words[s : s + 200]) for s in starts.tolist()]


def embedding_like(n: int, rng: np.random.Generator) -> np.ndarray:
    """L2-normalised float32 vectors shaped like sentence embeddings.

    200 topic clusters in a 64-dimensional subspace plus isotropic noise.
    Uniformly random 384-d vectors are HNSW's worst case (no neighbourhood
    structure): on them a 10k build took 10 s instead of 3 s and recall@10
    fell to 0.8, which says nothing about real MiniLM vectors.
    """
    basis = np.random.default_rng(42).standard_normal((64, DIM)).astype(np.float32)
    centres = np.random.default_rng(43).standard_normal((200, 64)).astype(np.float32)
    z = centres[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, 64), dtype=np.float32)
    x = z @ basis + 0.3 * np.sqrt(64 / DIM) * rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# ---------------------------------------------------------------- BM25

BM25_REFERENCES = {
    "build, ours": "–",
    "build, rank-bm25": "4.5 s at 100k",
    "query p50 / p95, ours (top-10)": "bm25s numpy 0.63 ms, numba 0.21 ms at 100k; "
    "whole retrieval <= 5 / 10 ms",
    "query p50 / p95, ours incl. tokenising": "whole retrieval <= 5 / 10 ms",
    "query p50 / p95, rank-bm25": "163 ms at 100k",
    "query in one document (20 chunks) p50": "–",
    "add one document (20 chunks), tokens given, p50": "rank-bm25: full rebuild",
    "add one document (20 chunks) incl. tokenising, p50": "–",
    "delete one document (20 chunks) p50": "rank-bm25: full rebuild",
    "delete a third of the chunks (incl. compaction)": "amortised over the deletes",
    "save / load": "–",
    "top-10 agreement with rank-bm25 (lucene idf / okapi idf)": "bm25s vs rank-bm25: 0.996",
    "okapi idf: max abs score difference vs rank-bm25": "test: <= 1e-6",
}


def bench_bm25_size(
    size: int,
    doc_tokens: list[list[str]],
    text_doc: list[str],
    query_texts: list[str],
    query_tokens: list[list[str]],
    n_reference_queries: int,
    rng: np.random.Generator,
) -> dict[str, str]:
    """One column of the BM25 table: every measure at ``size`` chunks."""
    from rank_bm25 import BM25Okapi

    out: dict[str, str] = {}
    chunks = make_token_chunks(doc_tokens, size, rng)
    ids = list(range(size))
    index = BM25Index()
    out["build, ours"] = fmt_s(timed(lambda: index.add_tokens(ids, chunks)))
    start = time.perf_counter()
    reference = BM25Okapi(chunks, k1=1.2, b=0.75)
    out["build, rank-bm25"] = fmt_s(time.perf_counter() - start)

    def span(samples: list[float]) -> str:
        return " / ".join(fmt_ms(v) for v in percentiles_ms(samples))

    out["query p50 / p95, ours (top-10)"] = span(
        time_each(lambda q: index.search_tokens(q, 10), query_tokens)
    )
    out["query p50 / p95, ours incl. tokenising"] = span(
        time_each(lambda q: index.search(q, 10), query_texts)
    )
    reference_queries = query_tokens[:n_reference_queries]
    out["query p50 / p95, rank-bm25"] = span(
        time_each(lambda q: np.argpartition(-reference.get_scores(q), 10)[:10], reference_queries)
    )
    okapi = BM25Index(k1=1.2, b=0.75, idf="okapi")
    okapi.add_tokens(ids, chunks)
    agreement: dict[str, list[float]] = {"lucene": [], "okapi": []}
    worst_diff = 0.0
    for tokens in reference_queries:
        want = reference.get_scores(tokens)
        tenth = np.partition(want, len(want) - 10)[-10]
        for name, ours in (("lucene", index), ("okapi", okapi)):
            hits = ours.search_tokens(tokens, 10)
            # a hit agrees when rank-bm25 also ranks it top-10 (ties at the 10th count)
            agreement[name].append(sum(want[h.chunk_id] >= tenth - 1e-9 for h in hits) / 10)
            if name == "okapi":
                worst_diff = max([worst_diff, *(abs(h.score - want[h.chunk_id]) for h in hits)])
    out["top-10 agreement with rank-bm25 (lucene idf / okapi idf)"] = (
        f"{np.mean(agreement['lucene']):.3f} / {np.mean(agreement['okapi']):.3f}"
    )
    out["okapi idf: max abs score difference vs rank-bm25"] = f"{worst_diff:.1e}"

    doc_ids = np.arange(0, size, size // DOC_CHUNKS)[:DOC_CHUNKS]
    in_doc = time_each(lambda q: index.search_tokens(q, 10, doc_ids), query_tokens)
    out["query in one document (20 chunks) p50"] = fmt_ms(percentiles_ms(in_doc)[0])

    adds, adds_text, deletes = [], [], []
    next_id = 10_000_000
    for _ in range(20):
        new_ids = list(range(next_id, next_id + DOC_CHUNKS))
        text_ids = list(range(next_id + DOC_CHUNKS, next_id + 2 * DOC_CHUNKS))
        next_id += 2 * DOC_CHUNKS
        new_chunks = make_token_chunks(doc_tokens[:50], DOC_CHUNKS, rng)
        adds.append(timed(lambda: index.add_tokens(new_ids, new_chunks)))  # noqa: B023
        deletes.append(timed(lambda: index.remove(new_ids)))  # noqa: B023
        adds_text.append(timed(lambda: index.add(text_ids, text_doc)))  # noqa: B023
        index.remove(text_ids)
    index.compact()
    out["add one document (20 chunks), tokens given, p50"] = fmt_ms(percentiles_ms(adds)[0])
    out["add one document (20 chunks) incl. tokenising, p50"] = fmt_ms(percentiles_ms(adds_text)[0])
    out["delete one document (20 chunks) p50"] = fmt_ms(percentiles_ms(deletes)[0])
    out["delete a third of the chunks (incl. compaction)"] = fmt_s(
        timed(lambda: index.remove(range(0, size, 3)))
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bm25.npz"
        save_s = timed(lambda: index.save(path))
        load_s = timed(lambda: BM25Index.load(path))
    out["save / load"] = f"{fmt_s(save_s)} / {fmt_s(load_s)}"
    return out


def bench_bm25(
    sizes: Sequence[int],
    doc_tokens: list[list[str]],
    docs: list[str],
    queries: list[str],
    n_queries: int,
    n_reference_queries: int,
    rng: np.random.Generator,
) -> str:
    """The BM25 table: ours vs rank-bm25 at each size."""
    pairs = [(q, tokenize(q)) for q in queries]
    pairs = [(q, t) for q, t in pairs if t][:n_queries]
    query_texts = [q for q, _ in pairs]
    query_tokens = [t for _, t in pairs]
    text_doc = make_text_chunks(docs, DOC_CHUNKS, rng)
    columns = []
    for size in sizes:
        gc.collect()
        columns.append(
            bench_bm25_size(
                size, doc_tokens, text_doc, query_texts, query_tokens, n_reference_queries, rng
            )
        )
    header = ["BM25, 150-token chunks", *(f"{s:,}" for s in sizes), "reference (PERFORMANCE.md)"]
    rows = [[key, *(c[key] for c in columns), ref] for key, ref in BM25_REFERENCES.items()]
    return table("BM25: ours (incremental) vs rank-bm25 BM25Okapi", header, rows)


# ---------------------------------------------------------------- FAISS

FAISS_REFERENCES = {
    ("flat", 10_000): ("–", "0.27 ms (1 thread)"),
    ("flat", 100_000): ("–", "6.6 ms (1 thread)"),
    ("hnsw", 10_000): ("0.4 s", "0.27 ms, recall 0.997 (HNSW32 ef128)"),
    ("hnsw", 100_000): ("8.6 s", "0.31 ms, recall 0.995 (HNSW32 ef128)"),
}


def bench_faiss_kind(
    kind: str,
    ids: np.ndarray,
    x: np.ndarray,
    queries: np.ndarray,
    exact: list[set[int]] | None,
    rng: np.random.Generator,
) -> tuple[list[str], list[set[int]]]:
    """One row of the FAISS table, and the top-10 sets found (for recall)."""
    size = len(ids)
    index = FaissVectorIndex.create(DIM, kind)  # type: ignore[arg-type]
    build = timed(lambda: index.add(ids, x))
    p50, p95 = percentiles_ms(time_each(lambda q: index.search(q, 10), list(queries)))
    found = [{h.chunk_id for h in index.search(q, 10)} for q in queries]
    truth = exact if exact is not None else found
    recall = np.mean([len(f & e) / 10 for f, e in zip(found, truth, strict=True)])
    doc = ids[:: size // DOC_CHUNKS][:DOC_CHUNKS]
    filtered = time_each(lambda q: index.search(q, 10, doc), list(queries))
    adds, deletes = [], []
    for step in range(20):
        new_ids = np.arange(DOC_CHUNKS, dtype=np.int64) + 10_000_000 + step * DOC_CHUNKS
        new_x = embedding_like(DOC_CHUNKS, rng)
        adds.append(timed(lambda: index.add(new_ids, new_x)))  # noqa: B023
        deletes.append(timed(lambda: index.remove(new_ids)))  # noqa: B023
    build_ref, query_ref = FAISS_REFERENCES.get((kind, size), ("–", "–"))
    row = [
        kind,
        f"{size:,}",
        f"{fmt_s(build)} (ref {build_ref})",
        f"{fmt_ms(p50)} / {fmt_ms(p95)}",
        f"{recall:.3f}",
        query_ref,
        fmt_ms(percentiles_ms(filtered)[0]),
        fmt_ms(percentiles_ms(adds)[0]),
        fmt_ms(percentiles_ms(deletes)[0]),
    ]
    return row, found


def bench_faiss(sizes: Sequence[int], n_queries: int, rng: np.random.Generator) -> str:
    """The FAISS table: flat vs HNSW at each size."""
    rows = []
    for size in sizes:
        gc.collect()
        x = embedding_like(size, rng)
        ids = np.arange(size, dtype=np.int64)
        queries = embedding_like(n_queries, rng)
        flat_row, exact = bench_faiss_kind("flat", ids, x, queries, None, rng)
        hnsw_row, _ = bench_faiss_kind("hnsw", ids, x, queries, exact, rng)
        rows += [flat_row, hnsw_row]
    header = [
        "kind",
        "N",
        "build",
        "query p50 / p95",
        "recall@10",
        "reference query (PERFORMANCE.md)",
        "query in one doc p50",
        "add one doc (20) p50",
        "delete one doc (20) p50",
    ]
    return table("FAISS, d=384, 1 search thread, top-10 (HNSW M=32, ef_search=128)", header, rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Run both benchmarks and print Markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--queries", type=int, default=100, help="queries timed per index")
    parser.add_argument("--reference-queries", type=int, default=20, help="rank-bm25 queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-bm25", action="store_true")
    parser.add_argument("--skip-faiss", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    print("## Index benchmarks\n")
    print(
        f"Load average at start: {load_average()} on {os.cpu_count()} CPUs "
        "(a shared host: compare figures measured side by side, not across runs).\n"
    )
    print(
        "Targets for the whole retrieval (encoder + vector + BM25 + fusion) at 100k chunks: "
        "p50 <= 5 ms, p95 <= 10 ms.\n"
    )
    if not args.skip_bm25:
        docs, queries = load_scifact(args.scifact)
        start = time.perf_counter()
        doc_tokens = [tokenize(d) for d in docs]
        tokenise_s = time.perf_counter() - start
        print(
            f"SciFact: {len(docs):,} documents tokenised in {tokenise_s:.1f} s "
            f"({tokenise_s / len(docs) * 1000:.2f} ms each).\n"
        )
        print(
            bench_bm25(
                args.sizes, doc_tokens, docs, queries, args.queries, args.reference_queries, rng
            )
        )
    if not args.skip_faiss:
        print(bench_faiss(args.sizes, args.queries, rng))
    print(
        f"Total benchmark time: {time.perf_counter() - started:.0f} s; "
        f"load average now {load_average()} on {os.cpu_count()} CPUs."
    )


if __name__ == "__main__":
    main()
