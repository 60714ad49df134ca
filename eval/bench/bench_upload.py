"""Upload to searchable over REST: a live `rag serve`, as the web page and scripts use it.

Rows:
- **folder over REST**: every file of a folder uploaded to a running server
  (16 files per request, as the web page sends a multi-file drop), timed from
  the first request to the last job ending; next to the raw embedder on the
  same chunk texts in this process afterwards. The server's start-up is not
  counted (a server is long-lived); the ratio shows what the upload path adds
  to embedding.
- **at scale** (``--scale N``): the same server over a data folder that
  already holds N chunks (synthetic vectors, real SciFact text, loaded once
  through the knowledge base's write path): a 100-page PDF upload → ``ready``,
  and the per-document overhead of small uploads at that size:
  (wall − raw embedding of their chunks) / documents.

Run: ``python -m eval.bench.bench_upload [--quick] [--scale 100000]``.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from api.live_server import ServerProcess
from eval.bench.common import (
    bulk_load,
    clustered_unit_vectors,
    load_scifact_passages,
    machine_note,
    make_chunk_texts,
    progress,
)
from rag.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
CMRC_DOCS = SHARED / "qa" / "cmrc2018-trial" / "docs"
# Text-layer PDFs cycled into one long document for the 100-page row.
LONG_PDF_SOURCES = (
    "en_academic_two-column_tracemonkey-pldi09.pdf",
    "en_multicolumn_federal-register-2020-17221.pdf",
    "en_academic_tables_tableformer-arxiv2203.00274.pdf",
)
FILES_PER_REQUEST = 16
NAME = "bench_upload"
COLLECTION = "bench"


def long_pdf(pages: int) -> bytes:
    """A ``pages``-page PDF made of the shared text PDFs' pages, cycled."""
    from pypdf import PdfReader, PdfWriter

    readers = [PdfReader(SHARED / "pdfs" / name) for name in LONG_PDF_SOURCES]
    writer = PdfWriter()
    source = (page for _ in range(pages) for reader in readers for page in reader.pages)
    for _, page in zip(range(pages), source, strict=False):
        writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _env(data_dir: Path, embedding: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_GENERATOR__BACKEND": "extractive"}
    for key, value in embedding.items():
        env[f"RAG_EMBEDDING__{key.upper()}"] = value
    return env


def upload_all(url: str, files: Sequence[tuple[str, bytes]], timeout: float = 3600) -> list[dict]:
    """Upload ``files`` in multi-file requests, wait for every job; returns the final jobs."""
    job_ids: list[str] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(files), FILES_PER_REQUEST):
            part = files[start : start + FILES_PER_REQUEST]
            response = client.post(
                "/documents",
                files=[("files", (name, data)) for name, data in part],
                data={"collection": COLLECTION},
            )
            response.raise_for_status()
            job_ids += [job["job_id"] for job in response.json()["jobs"]]
        deadline = time.monotonic() + timeout
        pending = list(job_ids)
        done: dict[str, dict] = {}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} uploads still running after {timeout:.0f} s")
            job = client.get(f"/jobs/{pending[0]}").json()
            if job["status"] in ("succeeded", "failed"):
                done[pending.pop(0)] = job
            else:
                time.sleep(0.05)
    return [done[job_id] for job_id in job_ids]


def _raw_seconds(data_dir: Path, embedding: dict[str, str], doc_ids: Sequence[str]) -> tuple:
    """(chunks, seconds the raw embedder takes for those documents' chunk texts, best of 2)."""
    from rag.services import build_services

    services = build_services(load_settings(data_dir=data_dir, embedding=embedding))
    try:
        texts = [c.text for d in doc_ids for c in services.kb.document_chunks(d)]
        services.embedder.embed_documents(texts[:64])  # warm up
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            services.embedder.embed_documents(texts)
            runs.append(time.perf_counter() - started)
        return len(texts), min(runs)
    finally:
        services.close()


def folder_row(files: Sequence[tuple[str, bytes]], embedding: dict[str, str]) -> dict:
    """The folder uploaded to a fresh server, next to the raw embedder."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        server = ServerProcess(_env(data_dir, embedding))
        try:
            progress(NAME, f"uploading {len(files)} files over REST")
            started = time.perf_counter()
            jobs = upload_all(server.url, files)
            seconds = time.perf_counter() - started
        finally:
            server.stop()
        ready = [j["document_id"] for j in jobs if j["status"] == "succeeded"]
        chunks, raw = _raw_seconds(data_dir, embedding, ready)
    return {
        "row": f"{len(files)} files over REST ({len(ready)} ready)",
        "seconds": seconds,
        "chunks": chunks,
        "chunks_s": chunks / seconds,
        "raw_chunks_s": chunks / raw,
        "ratio": raw / seconds,
    }


def preload(data_dir: Path, size: int, embedding: dict[str, str]) -> None:
    """Fill ``data_dir``'s collection with ``size`` chunks through the knowledge base."""
    from rag.services import build_services

    services = build_services(load_settings(data_dir=data_dir, embedding=embedding))
    try:
        rng = np.random.default_rng(7)
        texts = make_chunk_texts(load_scifact_passages(), size, rng)
        dim = services.embedder.dimension
        vectors = clustered_unit_vectors(size, dim, rng)
        step = max(1, size // 10)
        bulk_load(
            services.kb,
            COLLECTION,
            texts,
            vectors,
            on_progress=lambda n: n % step < 500 and progress(NAME, f"preloaded {n:,} chunks"),
        )
    finally:
        services.close()


def scale_rows(size: int, pages: int, small: Sequence[tuple[str, bytes]], embedding: dict) -> list:
    """A long PDF and small files uploaded into a collection of ``size`` chunks."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        progress(NAME, f"preloading {size:,} chunks")
        preload(data_dir, size, embedding)
        server = ServerProcess(_env(data_dir, embedding), start_timeout_s=900)
        try:
            pdf = long_pdf(pages)
            started = time.perf_counter()
            [job] = upload_all(server.url, [(f"long-{pages}-pages.pdf", pdf)])
            pdf_seconds = time.perf_counter() - started
            started = time.perf_counter()
            jobs = upload_all(server.url, small)
            small_seconds = time.perf_counter() - started
        finally:
            server.stop()
        chunks, raw = _raw_seconds(data_dir, embedding, [job["document_id"]])
        rows.append(
            {
                "row": f"{pages}-page PDF into {size:,} chunks, upload → ready",
                "seconds": pdf_seconds,
                "chunks": chunks,
                "chunks_s": chunks / pdf_seconds,
                "raw_chunks_s": chunks / raw,
                "ratio": raw / pdf_seconds,
                "target": "≤ 10 s",
            }
        )
        ready = [j["document_id"] for j in jobs if j["status"] == "succeeded"]
        chunks, raw = _raw_seconds(data_dir, embedding, ready)
        overhead_ms = max(0.0, small_seconds - raw) / max(len(ready), 1) * 1000
        rows.append(
            {
                "row": f"{len(ready)} small files into {size:,} chunks: per-document overhead",
                "seconds": small_seconds,
                "chunks": chunks,
                "chunks_s": chunks / small_seconds,
                "raw_chunks_s": chunks / raw,
                "ratio": raw / small_seconds,
                "overhead_ms": overhead_ms,
                "target": "≤ 20 ms per document",
            }
        )
    return rows


HEADER = (
    "\n### Upload to searchable over REST (live `rag serve`; raw embedder, same chunks)\n\n"
    "| upload | wall | chunks | chunks/s | raw embedder chunks/s | REST/raw | figure | target |\n"
    "|---|---|---|---|---|---|---|---|"
)


def render_row(r: dict) -> str:
    """One table row with its target."""
    figure = f"{r['overhead_ms']:.1f} ms/doc" if "overhead_ms" in r else f"{r['seconds']:.1f} s"
    return (
        f"| {r['row']} | {r['seconds']:.1f} s | {r['chunks']} | {r['chunks_s']:.1f} | "
        f"{r['raw_chunks_s']:.1f} | {r['ratio']:.0%} | {figure} | {r.get('target', '≥ 90%')} |"
    )


def render(rows: Sequence[dict]) -> str:
    """The Markdown table with each row's target."""
    return "\n".join([HEADER, *map(render_row, rows), "\n" + machine_note()])


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Print the upload table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 files, hashing embedder")
    parser.add_argument("--scale", type=int, default=100_000, help="chunks already indexed")
    parser.add_argument("--pages", type=int, default=100, help="pages of the long PDF")
    parser.add_argument("--no-scale", action="store_true", help="skip the at-scale rows")
    args = parser.parse_args(argv)
    embedding = {"model": "hashing:256"} if args.quick else {}
    paths = sorted(CMRC_DOCS.iterdir())
    files = [(p.name, p.read_bytes()) for p in (paths[:20] if args.quick else paths)]
    # Rows are printed as measured: a run stopped at its time limit keeps them.
    print(HEADER, flush=True)
    rows = [folder_row(files, embedding)]
    print(render_row(rows[0]), flush=True)
    if not args.no_scale:
        size, pages = (2_000, 10) if args.quick else (args.scale, args.pages)
        rows += scale_rows(size, pages, files[:64], embedding)
        for row in rows[1:]:
            print(render_row(row), flush=True)
    print("\n" + machine_note())
    return rows


if __name__ == "__main__":
    main()
