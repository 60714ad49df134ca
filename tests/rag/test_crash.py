"""Kill -9 at random points during ingestion; every restart finds the stores consistent."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.services import build_services
from tests.conftest import fast_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAG = [sys.executable, "-m", "rag.cli.main"]


def _corpus(folder: Path) -> None:
    """One large file and many small ones, so kills land inside and between documents."""
    folder.mkdir()
    rng = random.Random(7)
    words = "solar wind battery inverter grid storage panel energy current cell".split()
    big = " ".join(
        f"Sentence {i} says {' '.join(rng.choices(words, k=12))}." for i in range(40_000)
    )
    (folder / "big.txt").write_text(big)
    for n in range(30):
        text = " ".join(f"Note {n}.{i}: {' '.join(rng.choices(words, k=10))}." for i in range(300))
        (folder / f"note{n:02d}.txt").write_text(text)


def test_sigkill_during_ingest_leaves_consistent_stores(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _corpus(corpus)
    data = tmp_path / "data"
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_EMBEDDING__MODEL": "hashing:64",
        "RAG_GENERATOR__BACKEND": "extractive",
    }
    rng = random.Random(2026)
    interrupted = 0
    for attempt in range(4):
        proc = subprocess.Popen(
            [*RAG, "ingest", str(corpus), "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(3.0, 8.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        services = build_services(fast_settings(data, embedding={"model": "hashing:64"}))
        try:
            checks = services.kb.check()
            assert all(c.consistent for c in checks), (attempt, [c.to_dict() for c in checks])
            docs, _ = services.kb.list_documents()
            interrupted += any("interrupted" in (d.error or "") for d in docs)
            for doc in docs:
                assert doc.status in ("ready", "failed"), doc
                stored = len(services.kb.document_chunks(doc.id))
                assert stored == (doc.chunks if doc.status == "ready" else 0), doc
        finally:
            services.close()
        doctor = subprocess.run([*RAG, "doctor", "--json"], env=env, capture_output=True)
        assert doctor.returncode == 0, doctor.stdout
    assert interrupted, "no kill landed inside an ingestion; lengthen the corpus"
    final = subprocess.run(
        [*RAG, "ingest", str(corpus), "--json"], env=env, capture_output=True, timeout=600
    )
    assert final.returncode == 0, final.stdout[-2000:]
    result = json.loads(final.stdout)
    assert len(result["documents"]) == 31 and result["failed"] == 0
    assert subprocess.run([*RAG, "doctor"], env=env, capture_output=True).returncode == 0
