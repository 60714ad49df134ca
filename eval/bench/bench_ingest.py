"""Ingest throughput of the whole pipeline next to the raw embedder on the same texts.

Embedding is 93-96% of ingest time here (PERFORMANCE.md), so the pipeline's
speed is the embedder's speed: the figure that matters is the ratio
pipeline / raw, which shows the overhead of parsing, cleaning, chunking, SQL
and both indexes. Targets: >= 35 chunks/s of 256-token chunks on 2 cores and
>= 90% of the raw embedder's rate.

The ``rag ingest`` rows run the real CLI in a child process on a folder of
files (what users run, start-up and model load included) and embed the same
chunk texts raw in this process afterwards.

Run: ``python -m eval.bench.bench_ingest [--quick]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest.parsers import parse_bytes
from ingest.service import build_ingest_service
from rag.settings import load_settings
from rag.text.terms import tokenize

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "datasets"
PDFS = [
    "en_academic_two-column_tracemonkey-pldi09.pdf",
    "en_academic_tables_tableformer-arxiv2203.00274.pdf",
    "en_multicolumn_federal-register-2020-17221.pdf",
    "zh_academic_paper-page.pdf",
    "zh_tables_bond-prospectus-page.pdf",
]
# The shared office and e-book files, one row per format (file-name prefix).
OFFICE_FORMATS = ("docx", "pptx", "xlsx", "csv", "epub", "odt", "html")
# Of those, the formats whose shared files hold pictures read by OCR.
OFFICE_PICTURE_FORMATS = ("docx", "pptx", "epub")


def _office_files(kind: str) -> list[tuple[str, bytes]]:
    """The readable (not encrypted or broken) shared files of one format."""
    folder = SHARED / "office"
    return [
        (path.name, path.read_bytes())
        for path in sorted(folder.glob(f"*_{kind}*"))
        if path.name.startswith(("en_", "zh_")) and path.suffix != ".md"
    ]


def _scifact_files(limit: int) -> list[tuple[str, bytes]]:
    path = SHARED / "scifact" / "corpus.jsonl.gz"
    files = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            files.append((f"{row['_id']}.txt", f"{row['title']}\n\n{row['text']}".encode()))
            if len(files) >= limit:
                break
    return files


def _run(
    name: str,
    files: list[tuple[str, bytes]],
    embedding: dict,
    ingest: dict | None = None,
    passes: int = 1,
) -> dict:
    """Ingest ``files`` into a fresh knowledge base, then embed the same chunk texts raw.

    The raw embedder's time is the best of two runs, so its second run finds
    oneDNN's kernels for those batch shapes compiled. With ``passes=2`` the
    pipeline gets the same: the files go into two fresh knowledge bases in
    turn, sharing one loaded embedder, and the faster pass counts. On the small
    office corpora (a few seconds of work) the first pass's kernel compilation
    is otherwise a third of the row; on SciFact it is noise.
    """
    from rag.services import build_embedder, build_services

    embedder = None
    best: tuple[float, list[str], int] | None = None
    for _ in range(passes):
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(data_dir=Path(tmp), embedding=embedding, ingest=ingest or {})
            embedder = embedder or build_embedder(settings)
            services = build_services(settings, embedder=embedder)
            services.kb.autoflush = False
            service = build_ingest_service(services)
            embedder.embed_query("warm up")
            warm_texts = [data.decode("utf-8", "ignore")[:1500] for _, data in files[:64]]
            embedder.embed_documents(warm_texts)
            parse_bytes(files[0][1], files[0][0])  # imports the format's parser library once
            # Once per process, not per document: jieba's dictionary (~1 s), the
            # traditional-to-simplified table and the stemmer. The office corpora
            # are a few seconds of work, so a one-time load inside the window would
            # be most of a row's overhead; the "(rag ingest)" rows pay it as users do.
            tokenize("warm up 预热 預熱 running")
            started = time.perf_counter()
            outcomes = service.ingest_many(files)
            services.kb.flush()
            seconds = time.perf_counter() - started
            texts = []
            for outcome in outcomes:
                if outcome.ok:
                    texts += [c.text for c in services.kb.document_chunks(outcome.document_id)]
            pages = sum(o.pages for o in outcomes if o.ok)
            services.close()
        if best is None or seconds < best[0]:
            best = (seconds, texts, pages)
    assert best is not None and embedder is not None
    seconds, texts, pages = best
    tokens = sum(embedder.token_counter.count_tokens(texts))
    raw_runs = []
    for _ in range(2):
        started = time.perf_counter()
        embedder.embed_documents(texts)
        raw_runs.append(time.perf_counter() - started)
    raw_seconds = min(raw_runs)
    return _row(name, len(files), pages, len(texts), tokens, seconds, raw_seconds)


def _row(
    name: str, files: int, pages: int, chunks: int, tokens: int, seconds: float, raw: float
) -> dict:
    """One table row: the pipeline's rates next to the raw embedder's on the same chunks."""
    return {
        "corpus": name,
        "files": files,
        "pages": pages,
        "chunks": chunks,
        "mean_tokens": tokens / max(chunks, 1),
        "seconds": seconds,
        "pages_s": pages / seconds,
        "chunks_s": chunks / seconds,
        "raw_chunks_s": chunks / raw,
        "ratio": raw / seconds,
    }


def _raw_rate(services, texts: list[str]) -> float:
    """Seconds the embedder alone takes for ``texts`` (best of two, after a warm-up)."""
    services.embedder.embed_documents(texts[:64])
    runs = []
    for _ in range(2):
        started = time.perf_counter()
        services.embedder.embed_documents(texts)
        runs.append(time.perf_counter() - started)
    return min(runs)


def _run_cli(name: str, folder: Path, embedding: dict) -> dict:
    """``rag ingest FOLDER --json`` in a child process, then the raw embedder on its chunks."""
    from rag.services import build_services

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RAG_DATA_DIR": tmp}
        for key, value in embedding.items():
            env[f"RAG_EMBEDDING__{key.upper()}"] = str(value)
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "ingest", str(folder), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"rag ingest failed: {proc.stderr[-2000:]}")
        documents = json.loads(proc.stdout)["documents"]
        services = build_services(load_settings(data_dir=Path(tmp), embedding=embedding))
        texts = []
        for doc in documents:
            if doc["status"] == "ready":
                texts += [c.text for c in services.kb.document_chunks(doc["id"])]
        tokens = sum(services.embedder.token_counter.count_tokens(texts))
        raw_seconds = _raw_rate(services, texts)
        services.close()
    pages = sum(d["pages"] for d in documents if d["status"] == "ready")
    return _row(
        f"{name} (rag ingest)", len(documents), pages, len(texts), tokens, seconds, raw_seconds
    )


def _write_files(files: list[tuple[str, bytes]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        (folder / name).write_bytes(data)
    return folder


def main(argv: list[str] | None = None) -> list[dict]:
    """Print the ingest table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small corpora (smoke run)")
    parser.add_argument("--scifact-docs", type=int, default=1000)
    parser.add_argument(
        "--cli-scifact-docs", type=int, default=2000, help="abstracts written as files"
    )
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=None)
    parser.add_argument(
        "--office-only", action="store_true", help="only the office and e-book format rows"
    )
    args = parser.parse_args(argv)
    embedding: dict = {"model": "hashing:256"} if args.quick else {}
    if args.precision:
        embedding["precision"] = args.precision
    rows = []
    # The query encoder plays no part in ingest; torch spares each row an ONNX export.
    office_embedding = {**embedding, "query_backend": "torch"}
    # Each row is printed as it is measured: a busy host is slow, and a run stopped
    # at its time limit keeps the rows it finished.
    _print_header()

    def add(row: dict) -> None:
        rows.append(row)
        _print_row(row)

    # The format rows leave pictures unread: OCR is the one exception to the 80%
    # target (bench_ocr times it); the formats whose files hold pictures get a
    # second row with OCR on, the default, as users ingest them.
    for kind in OFFICE_FORMATS:
        files = _office_files(kind)
        if files:
            row = _run(
                f"shared {kind.upper()} files", files, office_embedding, {"ocr": False}, passes=2
            )
            add({**row, "target": 0.8})
            if kind in OFFICE_PICTURE_FORMATS:
                name = f"shared {kind.upper()} files, pictures OCR'd"
                row = _run(name, files, office_embedding, passes=2)
                add({**row, "target": None})
    if args.office_only:
        return rows
    pdfs = [(p, (SHARED / "pdfs" / p).read_bytes()) for p in (PDFS[:1] if args.quick else PDFS)]
    add(_run("shared PDFs", pdfs, embedding, passes=2))
    add(_run("SciFact corpus", _scifact_files(50 if args.quick else args.scifact_docs), embedding))
    cmrc_docs = SHARED / "qa" / "cmrc2018-trial" / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            cmrc = sorted(cmrc_docs.iterdir())[:20]
            cmrc_docs = _write_files([(p.name, p.read_bytes()) for p in cmrc], Path(tmp) / "cmrc")
        add(_run_cli("CMRC 2018 trial docs", cmrc_docs, embedding))
        scifact = _scifact_files(50 if args.quick else args.cli_scifact_docs)
        add(_run_cli("SciFact abstracts", _write_files(scifact, Path(tmp) / "sf"), embedding))
    return rows


def _print_header() -> None:
    print("\n### Ingest throughput (pipeline vs raw embedder on the same chunk texts)\n")
    print(
        "| corpus | files | pages | chunks | tokens/chunk | pages/s | chunks/s "
        "| raw embedder chunks/s | pipeline/raw | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")


def _print_row(r: dict) -> None:
    # Office rows: the bar is 80% of the raw rate (their chunks are
    # few and short, so fixed per-file costs weigh more than for PDFs).
    if "target" in r and r["target"] is None:
        target = "reported (OCR)"
    else:
        target = f">= {r.get('target', 0.9):.0%}" + ("" if "target" in r else ", >= 35 chunks/s")
    print(
        f"| {r['corpus']} | {r['files']} | {r['pages']} | {r['chunks']} | "
        f"{r['mean_tokens']:.0f} | {r['pages_s']:.1f} | {r['chunks_s']:.1f} | "
        f"{r['raw_chunks_s']:.1f} | {r['ratio']:.0%} | {target} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
