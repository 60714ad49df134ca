"""The OCR benchmark runs in its --quick configuration (timings are the report's, not checked)."""

from __future__ import annotations

import pytest

from eval.bench import bench_ocr, run_all
from tests.conftest import shared_path

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bench_ocr_quick_measures_ocr_and_the_table_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shared_path("pdfs", bench_ocr.SCANNED)
    rows = bench_ocr.main(["--quick"])
    ocr, tables_off, tables_on = rows
    assert ocr["pages"] == 1 and ocr["rate"] > 0 and "mean confidence" in ocr["note"]
    assert tables_off["pages"] == tables_on["pages"] == 1
    assert tables_on["note"] == "1 tables found"
    out = capsys.readouterr().out
    assert "### OCR and PDF tables (pages per second, 2 cores)" in out
    assert "bench_ocr" in run_all.BENCHMARKS
