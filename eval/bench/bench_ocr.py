"""OCR and PDF table detection speed: pages per second on this machine.

Usage: ``python -m eval.bench.bench_ocr [--quick] [--pages N]``

OCR row: the shared image-only PDF parsed by :class:`PdfParser` with the
RapidOCR engine (render at 150 dpi, detection, orientation, recognition),
models loaded before timing. Table rows: the shared PDFs with ruled tables
parsed with and without pdfplumber's table pass, which reads only pages that
draw enough paths. The issue exempts OCR from the ingest-rate target; its
rate is reported, not judged.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from eval.bench.common import ROOT, fmt_s, machine_note, markdown_table, progress
from ingest.ocr import RapidOcrEngine
from ingest.parsers.pdf import PdfParser

PDFS = ROOT.parent / "shared" / "datasets" / "pdfs"
SCANNED = "scanned_image-only_mineru-small-ocr.pdf"
TABLE_PDFS = (
    "en_table_nics-background-checks-2015-11.pdf",
    "zh_tables_bond-prospectus-page.pdf",
    "en_academic_tables_tableformer-arxiv2203.00274.pdf",
    "en_multicolumn_federal-register-2020-17221.pdf",
)


def _first_pages(data: bytes, pages: int) -> bytes:
    """The PDF cut to its first ``pages`` pages (pypdf writer)."""
    import io

    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(io.BytesIO(data))
    writer = PdfWriter()
    for page in reader.pages[:pages]:
        writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def bench_ocr(pages: int | None) -> dict:
    """OCR rate on the scanned PDF (all pages, or the first ``pages``)."""
    data = (PDFS / SCANNED).read_bytes()
    if pages is not None:
        data = _first_pages(data, pages)
    engine = RapidOcrEngine()
    parser = PdfParser(ocr=engine, tables=False)
    started = time.perf_counter()
    engine.read(np.full((64, 256, 3), 255, dtype=np.uint8))  # load the models
    load_s = time.perf_counter() - started
    progress("bench_ocr", f"models loaded in {fmt_s(load_s)}; reading {SCANNED}")
    started = time.perf_counter()
    document = parser.parse(
        data, on_page=lambda done, total: progress("bench_ocr", f"page {done}/{total}")
    )
    seconds = time.perf_counter() - started
    chars = sum(len(page.text) for page in document.pages)
    confidences = [p.ocr_confidence for p in document.pages if p.ocr_confidence is not None]
    return {
        "what": f"OCR, {SCANNED} ({engine.threads} threads)",
        "pages": document.page_count,
        "seconds": seconds,
        "rate": document.page_count / seconds,
        "note": f"{chars:,} chars, mean confidence {sum(confidences) / len(confidences):.3f}, "
        f"model load {fmt_s(load_s)}",
    }


def bench_tables(names: Sequence[str]) -> list[dict]:
    """Parse rate of the table PDFs with and without the table pass."""
    rows = []
    for tables in (False, True):
        parser = PdfParser(tables=tables)
        pages, seconds, found = 0, 0.0, 0
        for name in names:
            data = (PDFS / name).read_bytes()
            started = time.perf_counter()
            document = parser.parse(data)
            seconds += time.perf_counter() - started
            pages += document.page_count
            found += sum(page.text.count("\n|-") for page in document.pages)
        rows.append(
            {
                "what": f"PDF parse, {len(names)} table PDFs, tables {'on' if tables else 'off'}",
                "pages": pages,
                "seconds": seconds,
                "rate": pages / seconds,
                "note": f"{found} tables found" if tables else "pypdf text only",
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Print the OCR and table table; returns its rows."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scanned page, one table PDF")
    parser.add_argument("--pages", type=int, default=None, help="OCR only the first N pages")
    args = parser.parse_args(argv)
    if not (PDFS / SCANNED).exists():
        print(f"> bench_ocr: {PDFS} is absent, skipped.")
        return []
    pages = 1 if args.quick else args.pages
    rows = [bench_ocr(pages), *bench_tables(TABLE_PDFS[:1] if args.quick else TABLE_PDFS)]
    print(
        markdown_table(
            "OCR and PDF tables (pages per second, 2 cores)",
            ["what", "pages", "time", "pages/s", "target", "notes"],
            [
                [
                    r["what"],
                    r["pages"],
                    fmt_s(r["seconds"]),
                    f"{r['rate']:.2f}",
                    "reported",
                    r["note"],
                ]
                for r in rows
            ],
        )
    )
    print(machine_note())
    return rows


if __name__ == "__main__":
    main()
