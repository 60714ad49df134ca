"""Offline retrieval evaluation of the real system on a BEIR-format dataset.

The corpus goes through the same ingest pipeline as user uploads (each entry a
document, title and text both indexed, chunked like any file) into its own
knowledge base; a chunk's hit counts for its document (max over chunks).
That knowledge base is cached under a key made of the corpus, the embedding
model and the chunk settings, so a sweep over fusion methods, their
parameters or top-k re-embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.beir import BeirDataset
from eval.metrics import evaluate_run
from rag.settings import Settings
from rag.text.terms import TOKENIZER_VERSION

log = logging.getLogger(__name__)

MODES: dict[str, tuple[str, str | None]] = {
    # mode name -> (retriever mode, fusion method)
    "bm25": ("sparse", None),
    "dense": ("dense", None),
    "hybrid-rrf": ("hybrid", "rrf"),
    "hybrid-weighted": ("hybrid", "weighted"),
}
COLLECTION = "beir"
# Documents retrieved per query: Recall@100 needs 100 documents, and with
# chunking several chunks may belong to one document.
RUN_DEPTH = 100
CHUNK_CANDIDATES = 300

# Published reference numbers for SciFact test (nDCG@10), shown beside ours.
SCIFACT_REFERENCES = {
    "BM25 (BEIR paper)": {"ndcg@10": 0.665, "source": "Thakur et al. 2021"},
    "BM25 (Anserini flat)": {"ndcg@10": 0.6789, "source": "Anserini regressions"},
    "all-MiniLM-L6-v2 (MTEB)": {"ndcg@10": 0.6451, "source": "MTEB paper results"},
}


@dataclass
class EvalRun:
    """What one evaluation produced."""

    metrics: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    runs: dict[str, dict[str, dict[str, float]]]
    timings: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def corpus_key(dataset: BeirDataset, settings: Settings) -> str:
    """Cache key: corpus content, embedding model, chunking and BM25 settings."""
    digest = hashlib.sha256()
    for doc_id in sorted(dataset.corpus):
        doc = dataset.corpus[doc_id]
        digest.update(f"{doc_id}\0{doc.title}\0{doc.text}\0".encode())
    return _settings_digest(digest, settings)


def files_key(files: Sequence[tuple[str, bytes]], settings: Settings) -> str:
    """Cache key for a knowledge base of files: names, bytes and the index settings."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return _settings_digest(digest, settings)


def _settings_digest(digest: Any, settings: Settings) -> str:
    """Add what shapes the stored index (tokeniser, model, chunking, BM25) and cut the key."""
    idx = settings.index
    digest.update(
        json.dumps(
            [
                TOKENIZER_VERSION,
                settings.embedding.model,
                settings.embedding.precision,
                settings.ingest.chunk_tokens,
                settings.ingest.chunk_overlap,
                idx.bm25_k1,
                idx.bm25_b,
                idx.bm25_idf,
                idx.bm25_stem,
                idx.vector_kind,
            ]
        ).encode()
    )
    return digest.hexdigest()[:16]


def document_bytes(title: str, text: str) -> bytes:
    """A corpus entry as a small text file: title line, blank line, text."""
    return (f"{title}\n\n{text}" if title else text).encode("utf-8")


def build_eval_services(
    dataset: BeirDataset,
    settings: Settings,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    embedder: Any | None = None,
) -> tuple[Any, dict[int, str], float]:
    """Services over a knowledge base holding the corpus (built once per cache key).

    Returns:
        (services, chunk id → corpus doc id, seconds spent ingesting; 0 when cached).
    """
    ids = sorted(dataset.corpus)

    def files(part: Sequence[str]) -> list[tuple[str, bytes]]:
        return [
            (
                f"{doc_id}.txt",
                document_bytes(dataset.corpus[doc_id].title, dataset.corpus[doc_id].text),
            )
            for doc_id in part
        ]

    services, ingest_seconds = cached_knowledge_base(
        corpus_key(dataset, settings), ids, files, settings, cache_dir, progress, embedder
    )
    chunk_to_doc = chunk_corpus_ids(services.kb)
    return services, chunk_to_doc, ingest_seconds


def cached_knowledge_base(
    key: str,
    names: Sequence[str],
    files: Callable[[Sequence[str]], list[tuple[str, bytes]]],
    settings: Settings,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    embedder: Any | None = None,
    collection: str = COLLECTION,
) -> tuple[Any, float]:
    """Services over a knowledge base under ``cache_dir / key``, ingested once.

    The files go through the normal ingest (parse, chunk, embed, index) in
    batches; a ``complete.json`` marker says the build finished, and a folder
    without it (an interrupted build) is rebuilt from scratch.

    Args:
        key: Cache key (:func:`corpus_key`, :func:`files_key`).
        names: What to ingest, in order; ``files`` turns a batch of names into
            ``(filename, bytes)`` pairs, so a large corpus is never all in memory.
        files: See ``names``.
        settings: Settings; the data folder is replaced by the cache folder.
        cache_dir: Folder holding one knowledge base per key.
        progress: Called with (done, total) after each batch.
        embedder: A preloaded embedder to share (else built from settings).
        collection: Collection the files go into.

    Returns:
        (services, seconds spent ingesting; 0 when cached).
    """
    from ingest.service import build_ingest_service
    from rag.services import build_services

    data_dir = cache_dir / key
    marker = data_dir / "complete.json"
    kb_settings = settings.model_copy(update={"data_dir": data_dir, "database_url": None})
    services = build_services(kb_settings, embedder=embedder)
    ingest_seconds = 0.0
    if not marker.exists():
        if services.kb.list_documents()[1]:
            services.close()
            import shutil

            shutil.rmtree(data_dir)  # an interrupted build: start again
            services = build_services(kb_settings, embedder=embedder)
        services.kb.autoflush = False
        service = build_ingest_service(services)
        started = time.perf_counter()
        batch = 512
        for start in range(0, len(names), batch):
            outcomes = service.ingest_many(
                files(names[start : start + batch]), collection=collection
            )
            failed = [o for o in outcomes if not o.ok]
            for outcome in failed:
                log.warning("corpus doc failed file=%s error=%s", outcome.filename, outcome.error)
            if progress:
                progress(min(start + batch, len(names)), len(names))
        services.kb.flush()
        ingest_seconds = time.perf_counter() - started
        marker.write_text(json.dumps({"documents": len(names), "seconds": ingest_seconds}))
    return services, ingest_seconds


def chunk_corpus_ids(kb: Any) -> dict[int, str]:
    """Chunk id -> the corpus document id it came from (the file name without ``.txt``)."""
    from sqlalchemy import select

    from rag.db.models import ChunkRow, Document

    with kb.sessions() as session:
        rows = session.execute(
            select(ChunkRow.id, Document.filename).join(
                Document, ChunkRow.document_id == Document.id
            )
        ).all()
    return {chunk_id: filename.removesuffix(".txt") for chunk_id, filename in rows}


def run_modes(
    services: Any,
    chunk_to_doc: dict[int, str],
    queries: dict[str, str],
    modes: Sequence[str],
    *,
    rrf_k: int | None = None,
    dense_weight: float | None = None,
    candidates: int = CHUNK_CANDIDATES,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float]]:
    """Run every query through each mode; returns runs (mode → qid → doc → score) and timings."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        from rag.errors import InvalidInput

        raise InvalidInput(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    settings = services.settings.retrieval
    updates: dict[str, Any] = {}
    if rrf_k is not None:
        updates["rrf_k"] = rrf_k
    if dense_weight is not None:
        updates["dense_weight"] = dense_weight
    from rag.query.retrieval import HybridRetriever

    retriever = HybridRetriever(services.kb, services.embedder, settings.model_copy(update=updates))
    qids = sorted(queries)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    needs_vectors = any(MODES[m][0] != "sparse" for m in modes)
    vectors = (
        services.embedder.embed_queries([queries[q] for q in qids])
        if needs_vectors
        else np.zeros((len(qids), 1), dtype=np.float32)
    )
    timings["embed_queries"] = time.perf_counter() - t0
    runs: dict[str, dict[str, dict[str, float]]] = {}
    done = 0
    for mode in modes:
        retriever_mode, fusion = MODES[mode]
        t0 = time.perf_counter()
        run: dict[str, dict[str, float]] = {}
        for i, qid in enumerate(qids):
            fused, _, _, _ = retriever.candidates(
                queries[qid],
                mode=retriever_mode,  # type: ignore[arg-type]
                candidates=candidates,
                fusion=fusion,
                query_vector=vectors[i],
            )
            scores: dict[str, float] = {}
            for cand in fused:
                doc = chunk_to_doc.get(cand.chunk_id)
                if doc is not None and cand.score > scores.get(doc, float("-inf")):
                    scores[doc] = cand.score
                if len(scores) >= RUN_DEPTH and doc not in scores:
                    break
            run[qid] = dict(sorted(scores.items(), key=lambda kv: -kv[1])[:RUN_DEPTH])
            done += 1
            if progress:
                progress(done, len(qids) * len(modes))
        timings[f"{mode}_seconds"] = time.perf_counter() - t0
        runs[mode] = run
    return runs, timings


def evaluate(
    dataset: BeirDataset,
    settings: Settings,
    modes: Sequence[str],
    cache_dir: Path,
    *,
    rrf_k: int | None = None,
    dense_weight: float | None = None,
    ks: Sequence[int] = (1, 5, 10, 100),
    progress: Callable[[str, int, int], None] | None = None,
    embedder: Any | None = None,
    candidates: int = CHUNK_CANDIDATES,
) -> EvalRun:
    """Ingest (or reuse) the corpus, run the modes, compute the metrics."""
    t0 = time.perf_counter()
    services, chunk_to_doc, ingest_seconds = build_eval_services(
        dataset,
        settings,
        cache_dir,
        (lambda d, t: progress("ingest", d, t)) if progress else None,
        embedder=embedder,
    )
    try:
        runs, timings = run_modes(
            services,
            chunk_to_doc,
            dataset.queries,
            modes,
            rrf_k=rrf_k,
            dense_weight=dense_weight,
            candidates=candidates,
            progress=(lambda d, t: progress("queries", d, t)) if progress else None,
        )
    finally:
        services.close()
    metrics: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for mode, run in runs.items():
        result = evaluate_run(run, dataset.qrels, ks=tuple(ks))
        metrics[mode] = result.means
        per_query[mode] = result.per_query
    timings["ingest_seconds"] = ingest_seconds
    timings["chunks"] = float(len(chunk_to_doc))
    timings["total_seconds"] = time.perf_counter() - t0
    r = settings.retrieval
    config = {
        "modes": list(modes),
        "embedding_model": settings.embedding.model,
        "embedding_precision": settings.embedding.precision,
        "chunk_tokens": settings.ingest.chunk_tokens,
        "chunk_overlap": settings.ingest.chunk_overlap,
        "bm25": {
            "k1": settings.index.bm25_k1,
            "b": settings.index.bm25_b,
            "idf": settings.index.bm25_idf,
            "stem": settings.index.bm25_stem,
        },
        "rrf_k": rrf_k if rrf_k is not None else r.rrf_k,
        "dense_weight": dense_weight if dense_weight is not None else r.dense_weight,
        "candidates_per_retriever": candidates,
        "cache_key": corpus_key(dataset, settings),
    }
    return EvalRun(metrics, per_query, runs, timings, config)
