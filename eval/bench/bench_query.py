"""Benchmark query latency stage by stage at 10k and 100k chunks; prints Markdown tables.

Each stage of :class:`~rag.query.retrieval.HybridRetriever` (query encoding,
FAISS, BM25, fusion) is timed inside the retriever and next to the raw
library call doing the same work on the same index (sentence-transformers
``encode``, faiss ``Index.search`` on one thread, ``BM25Index.search_tokens``
on a pre-tokenised query, ``fuse_hits``), so the overhead shows as a ratio.
The whole retrieval is timed as ``candidates`` (ids out), ``candidates`` with
a precomputed query vector (everything but the encoder) and ``retrieve``
(chunk rows fetched from SQL too), against the targets of
``shared/PERFORMANCE.md`` (p50 <= 5 ms, p95 <= 10 ms at 100k chunks).

What is synthetic: chunk texts are real SciFact sentences (150-word windows of
the shuffled corpus, repeated to reach the size); chunk vectors are synthetic
clustered unit vectors (embedding 100k chunks would take over an hour here);
queries are real SciFact test claims encoded by the real embedder
(all-MiniLM-L6-v2), so the encoder's cost is real. Dense results are therefore
meaningless as answers, only their timing counts.

Each size is loaded once with a flat index; HNSW is then built from the same
vectors with ``FaissVectorIndex.rebuild("hnsw")``, which is what
``index.vector_kind = "auto"`` does above ``hnsw_threshold`` (50k by default).

The query encoder runs on one thread by default here (``--embed-threads``): on a
busy host two torch threads made each query 50-100x slower (see the last table).

Run: ``python -m eval.bench.bench_query`` (about 3-4 minutes on 2 cores);
``--quick`` for a smoke run (500 chunks, 5 queries, hashing embedder).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench.common import (
    DEFAULT_SCIFACT,
    TARGET_RETRIEVAL_P50_MS,
    TARGET_RETRIEVAL_P95_MS,
    bulk_load,
    clustered_unit_vectors,
    fmt_s,
    fmt_span,
    load_scifact_passages,
    load_test_queries,
    machine_note,
    make_chunk_texts,
    markdown_table,
    percentiles_ms,
    progress,
    ratio,
)
from rag.index.faiss_index import omp_threads
from rag.query.fusion import fuse_hits
from rag.services import Services, build_services
from rag.settings import load_settings
from rag.store.files import CollectionIndexes, FileSearchStore

NAME = "bench_query"
COLLECTION = "bench"
WARMUP = 5

# References from shared/PERFORMANCE.md, keyed by stage (and kind/size where they differ).
ENCODER_REFERENCE = "floor: 12.7 ms fp32, 10 ms bf16, 4.2 ms ONNX fp32, 2.8 ms ONNX int8"
DENSE_REFERENCES = {
    ("flat", 10_000): "0.27 ms (Flat, 1 thread)",
    ("flat", 100_000): "6.6 ms (Flat, 1 thread)",
    ("hnsw", 10_000): "0.27 ms (HNSW32 ef128)",
    ("hnsw", 100_000): "0.31 ms (HNSW32 ef128)",
}
SPARSE_REFERENCE = "bm25s at 100k: 0.63 ms numpy top-k over non-zeros, 0.21 ms numba"
HYBRID_REFERENCE = "100k: 12.5 / 17.4 ms (torch fp32 + HNSW + bm25s numba)"


def file_indexes(kb: Any, collection_id: int) -> CollectionIndexes:
    """The embedded store's live FAISS and BM25 of a collection (the raw-library calls use them)."""
    store = kb.store
    if not isinstance(store, FileSearchStore):
        raise SystemExit("the raw-library comparison needs the embedded backend (unset the URL)")
    return store.loaded(collection_id)


def target_cell(samples: Sequence[float], size: int) -> str:
    """The retrieval target and whether ``samples`` meet it (targets are set at 100k)."""
    p50, p95 = percentiles_ms(samples)
    met = p50 <= TARGET_RETRIEVAL_P50_MS and p95 <= TARGET_RETRIEVAL_P95_MS
    text = f"p50 <= {TARGET_RETRIEVAL_P50_MS:g} / p95 <= {TARGET_RETRIEVAL_P95_MS:g} ms"
    if size < 100_000:
        return f"{text} (set at 100k): {'met' if met else 'not met'}"
    return f"{text}: **{'met' if met else 'NOT met'}**"


def raw_encoder(embedder: Any) -> tuple[str, Callable[[str], object]] | None:
    """The sentence-transformers call ``embedder.embed_query`` wraps, or None for other embedders.

    Same model, threads, bf16 autocast and normalisation as the wrapper, so
    the ratio is the wrapper's own overhead.
    """
    model = getattr(embedder, "model", None)
    if model is None or not hasattr(model, "encode"):
        return None
    import torch

    def encode(text: str) -> object:
        torch.set_num_threads(embedder.threads)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if embedder.bf16
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return model.encode(
                [text],
                batch_size=1,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )

    precision = "bf16 autocast" if embedder.bf16 else "fp32"
    return f"SentenceTransformer.encode ({precision}, {embedder.threads} threads)", encode


def raw_faiss_search(vectors: Any) -> Callable[[np.ndarray, int], object]:
    """Raw faiss ``Index.search`` on the index inside ``vectors`` (one thread, same efSearch)."""
    faiss = importlib.import_module("faiss")
    index = vectors._index  # the faiss object the wrapper searches: same data, same graph
    params = (
        faiss.SearchParametersHNSW(efSearch=vectors.ef_search) if vectors.kind == "hnsw" else None
    )

    def search(query: np.ndarray, k: int) -> object:
        q = query.reshape(1, -1)
        return index.search(q, k) if params is None else index.search(q, k, params=params)

    return search


def bench_config(
    services: Services,
    kind: str,
    size: int,
    queries: list[str],
    query_vectors: np.ndarray,
) -> dict[str, Any]:
    """Every measure for one (index kind, size); returns rows and summary figures."""
    kb, embedder = services.kb, services.embedder
    retriever = services.retriever()
    settings = services.settings.retrieval
    k = settings.candidates
    (collection_id,) = kb.collection_ids([COLLECTION])
    indexes = file_indexes(kb, collection_id)  # the live indexes, for the raw calls
    vectors, bm25 = indexes.vectors, indexes.sparse
    tokens = [bm25.tokenize_query(q) for q in queries]
    pairs = list(zip(queries, query_vectors, strict=True))

    for q in queries[:WARMUP]:
        retriever.retrieve(q)

    def candidates(q: str) -> dict[str, float]:
        start = time.perf_counter()
        timings = retriever.candidates(q)[3]
        return {**timings, "wall": time.perf_counter() - start}

    def candidates_with_vector(pair: tuple[str, np.ndarray]) -> float:
        start = time.perf_counter()
        retriever.candidates(pair[0], query_vector=pair[1])
        return time.perf_counter() - start

    def retrieve(q: str) -> dict[str, float]:
        start = time.perf_counter()
        timings = retriever.retrieve(q).timings
        return {**timings, "wall": time.perf_counter() - start}

    staged = [candidates(q) for q in queries]
    no_encoder = [candidates_with_vector(p) for p in pairs]
    retrieved = [retrieve(q) for q in queries]

    def stage(name: str, rows: list[dict[str, float]] = staged) -> list[float]:
        return [r.get(name, float("nan")) for r in rows]

    encoder = raw_encoder(embedder)
    if encoder is not None:
        encoder_label, encode = encoder
        raw_encode = [_timed(lambda q: encode(q), q) for q in queries]  # noqa: B023
    else:
        encoder_label = f"{type(embedder).__name__}.embed_query (no raw library call)"
        raw_encode = [_timed(embedder.embed_query, q) for q in queries]
    faiss_search = raw_faiss_search(vectors)
    with omp_threads(1):
        for v in query_vectors[:WARMUP]:
            faiss_search(v, k)
        raw_dense = [_timed(lambda v: faiss_search(v, k), v) for v in query_vectors]
    raw_sparse = [_timed(lambda t: bm25.search_tokens(t, k), t) for t in tokens]
    lists = [
        (vectors.search(v, k), bm25.search_tokens(t, k))
        for v, t in zip(query_vectors, tokens, strict=True)
    ]
    rrf = settings.rrf_k
    raw_fusion = [
        _timed(lambda p: fuse_hits(p[0], p[1], settings.fusion, rrf, settings.dense_weight), p)
        for p in lists
    ]
    raw_total = [
        sum(parts) for parts in zip(raw_encode, raw_dense, raw_sparse, raw_fusion, strict=True)
    ]
    untimed = [
        r["wall"] - sum(r.get(s, 0.0) for s in ("filter", "embed", "dense", "sparse", "fusion"))
        for r in staged
    ]
    raw_no_encoder = [sum(parts) for parts in zip(raw_dense, raw_sparse, raw_fusion, strict=True)]

    def row(
        label: str, ours: list[float], raw_label: str, raw: list[float] | None, reference: str
    ) -> list[str]:
        ours_p50 = percentiles_ms(ours)[0]
        if raw is None:
            return [label, fmt_span(ours), raw_label, "–", "–", reference]
        return [
            label,
            fmt_span(ours),
            raw_label,
            fmt_span(raw),
            ratio(ours_p50, percentiles_ms(raw)[0]),
            reference,
        ]

    rows = [
        row("query encoding", stage("embed"), encoder_label, raw_encode, ENCODER_REFERENCE),
        row(
            f"dense ({kind})",
            stage("dense"),
            "faiss Index.search, 1 thread",
            raw_dense,
            DENSE_REFERENCES.get((kind, size), "–"),
        ),
        row(
            "sparse (incl. tokenising)",
            stage("sparse"),
            "BM25Index.search_tokens (pre-tokenised)",
            raw_sparse,
            SPARSE_REFERENCE,
        ),
        row("fusion (RRF)", stage("fusion"), "fuse_hits alone", raw_fusion, "–"),
        row("filter lookup (SQL)", stage("filter"), "–", None, "–"),
        row("untimed rest (collection lookup in SQL, locks, calls)", untimed, "–", None, "–"),
        row(
            "**candidates** (whole retrieval, ids out)",
            stage("wall"),
            "sum of the 4 raw calls",
            raw_total,
            f"{target_cell(stage('wall'), size)}; ref {HYBRID_REFERENCE}",
        ),
        row(
            "candidates, query vector given (no encoder)",
            no_encoder,
            "sum of raw FAISS + BM25 + fusion",
            raw_no_encoder,
            "–",
        ),
        row(
            "retrieve (candidates + chunk rows)",
            stage("wall", retrieved),
            "–",
            None,
            target_cell(stage("wall", retrieved), size),
        ),
        row("  of which chunk-row fetch (top-5)", stage("fetch", retrieved), "–", None, "–"),
    ]
    return {
        "kind": kind,
        "size": size,
        "queries": len(queries),
        "rows": rows,
        "candidates_ms": percentiles_ms(stage("wall")),
        "no_encoder_ms": percentiles_ms(no_encoder),
        "retrieve_ms": percentiles_ms(stage("wall", retrieved)),
        "encoder_ms": percentiles_ms(raw_encode),
    }


def _timed(fn: Callable[[Any], object], item: Any) -> float:
    start = time.perf_counter()
    fn(item)
    return time.perf_counter() - start


def bench_size(
    size: int,
    kinds: Sequence[str],
    passages: list[str],
    queries: list[str],
    embedding: dict[str, Any],
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Load ``size`` chunks into a fresh knowledge base and measure each index kind."""
    results = []
    build: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            embedding=embedding,
            generator={"backend": "extractive"},
            index={"vector_kind": "flat"},
        )
        services = build_services(settings)
        try:
            dim = services.embedder.dimension
            query_vectors = np.stack([services.embedder.embed_query(q) for q in queries])
            texts = make_chunk_texts(passages, size, rng)
            vectors = clustered_unit_vectors(size, dim, rng)
            progress(NAME, f"loading {size:,} chunks (flat index)")
            start = time.perf_counter()
            bulk_load(services.kb, COLLECTION, texts, vectors)
            build["load"] = time.perf_counter() - start
            del texts, vectors
            gc.collect()
            (collection_id,) = services.kb.collection_ids([COLLECTION])
            indexes = file_indexes(services.kb, collection_id)
            for kind in kinds:
                if indexes.vectors.kind != kind:
                    progress(NAME, f"building {kind} over {size:,} vectors")
                    start = time.perf_counter()
                    indexes.vectors = indexes.vectors.rebuild(kind)  # type: ignore[arg-type]
                    build[kind] = time.perf_counter() - start
                progress(NAME, f"measuring {kind} at {size:,} ({len(queries)} queries)")
                results.append(bench_config(services, kind, size, queries, query_vectors))
        finally:
            services.close()
    return results, build


def bench_encoder_threads(model: str, queries: list[str]) -> str:
    """Query encoding with 1 thread vs all cores (``embedding.threads`` 1 vs 0), side by side.

    On a host whose other processes keep the cores busy, torch's OpenMP
    threads wait for each other at every operator: two threads made one query
    50-100x slower than one thread here. Few queries, since that case is slow.
    """
    from rag.services import build_embedder

    rows = []
    for threads in (1, 0):
        embedder = build_embedder(load_settings(embedding={"model": model, "threads": threads}))
        embedder.embed_query("warm up")
        samples = [_timed(embedder.embed_query, q) for q in queries]
        rows.append(
            [
                f"{threads} ({embedder.threads} torch threads)",
                str(len(queries)),
                fmt_span(samples),
                ENCODER_REFERENCE,
            ]
        )
    return markdown_table(
        "Query encoder: embedding.threads 1 vs 0 (all cores), measured side by side",
        ["embedding.threads", "queries", "embed_query p50 / p95", "reference (idle host)"],
        rows,
    )


def render(results: list[dict[str, Any]], builds: dict[int, dict[str, float]]) -> str:
    """The per-configuration stage tables and a summary table."""
    header = [
        "stage",
        "in the retriever p50 / p95",
        "raw call doing the same work",
        "raw p50 / p95",
        "overhead (p50 ratio)",
        "target / reference (PERFORMANCE.md)",
    ]
    parts = []
    for r in results:
        title = f"{r['kind']} index, {r['size']:,} chunks, {r['queries']} queries"
        parts.append(markdown_table(title, header, r["rows"]))
    summary = []
    for r in results:
        c50, c95 = r["candidates_ms"]
        met = c50 <= TARGET_RETRIEVAL_P50_MS and c95 <= TARGET_RETRIEVAL_P95_MS
        summary.append(
            [
                r["kind"],
                f"{r['size']:,}",
                fmt_s(builds[r["size"]].get("load", float("nan"))),
                fmt_s(builds[r["size"]][r["kind"]])
                if r["kind"] in builds[r["size"]]
                else "in load",
                f"{c50:.2f} / {c95:.2f} ms",
                "{:.2f} / {:.2f} ms".format(*r["no_encoder_ms"]),
                "{:.2f} / {:.2f} ms".format(*r["retrieve_ms"]),
                "{:.2f} ms".format(r["encoder_ms"][0]),
                ("met" if met else "NOT met")
                + ("" if r["size"] >= 100_000 else " (target at 100k)"),
            ]
        )
    parts.append(
        markdown_table(
            "Summary: hybrid retrieval latency",
            [
                "kind",
                "chunks",
                "bulk load (SQL + flat + BM25)",
                "vector index build",
                "candidates p50 / p95",
                "without encoder p50 / p95",
                "retrieve p50 / p95",
                "raw encoder p50",
                "p50 <= 5 ms, p95 <= 10 ms",
            ],
            summary,
        )
    )
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print Markdown tables, return one result per configuration."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kinds", nargs="+", choices=["flat", "hnsw"], default=["flat", "hnsw"])
    parser.add_argument("--queries", type=int, default=100, help="SciFact test claims timed")
    parser.add_argument("--embedding", default="bundled", help="embedding model setting")
    parser.add_argument(
        "--embed-threads",
        type=int,
        default=1,
        help="embedding.threads for the query encoder (0 = all cores, the settings default)",
    )
    parser.add_argument(
        "--thread-queries", type=int, default=10, help="queries per encoder-threads setting"
    )
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 500 chunks, 5 queries, hashing embedder"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.queries, args.embedding = [500], 5, "hashing:256"
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    passages = load_scifact_passages(args.scifact)
    queries = load_test_queries(args.scifact, args.queries)
    embedding = {"model": args.embedding, "threads": args.embed_threads}
    print("## Query latency by stage\n")
    print(machine_note() + "\n")
    print(
        "Synthetic parts: chunk vectors are clustered random unit vectors (not embeddings of "
        "the chunk texts); chunk texts are real SciFact sentences in 150-word windows, repeated "
        f"to reach the size. Queries: {len(queries)} SciFact test claims, encoded by the real "
        f"embedder ({args.embedding}, embedding.threads={args.embed_threads}). "
        "Candidates per retriever: 100 (settings default); "
        "FAISS searches on 1 thread.\n"
    )
    results: list[dict[str, Any]] = []
    builds: dict[int, dict[str, float]] = {}
    for size in args.sizes:
        found, builds[size] = bench_size(size, args.kinds, passages, queries, embedding, rng)
        results += found
        gc.collect()
    print(render(results, builds))
    if not args.embedding.startswith("hashing"):
        progress(NAME, "query encoder: 1 thread vs all cores")
        print(bench_encoder_threads(args.embedding, queries[: args.thread_queries]))
    print(
        "The query encoder is the floor of retrieval latency (PERFORMANCE.md: 12.7 ms fp32, "
        "10 ms bf16, 2.8 ms ONNX int8 for one short query): with a torch encoder the 5 ms p50 "
        "target cannot be met whatever the indexes do; 'without encoder' shows the rest.\n"
    )
    print(f"Benchmark took {time.perf_counter() - started:.0f} s. {machine_note()}")
    return results


if __name__ == "__main__":
    main()
