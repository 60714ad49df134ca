"""Two `rag serve` replicas over one PostgreSQL: no process-local state that matters.

Each replica has its own data folder (as on two hosts); everything they share
is in the database: rows, vectors (pgvector), BM25 postings, upload bytes and
originals (the blobs table), and the ingest jobs any worker may claim. A
replica killed mid-ingest (a kill point, by progress) leaves its job to the
other once the job's lease runs out.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.live_server import ServerProcess
from rag.faults import ENV_VAR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAG = [sys.executable, "-m", "cli.main"]
WORDS = "solar wind battery inverter grid storage panel energy current cell".split()


def _env(data: Path, url: str, kill: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_DATABASE_URL": url,
        "RAG_EMBEDDING__MODEL": "hashing:64",
        "RAG_GENERATOR__BACKEND": "extractive",
        "RAG_INGEST__EMBED_BATCH_CHUNKS": "16",
        "RAG_INGEST__JOB_POLL_SECONDS": "0.2",
        # Short enough that the kill test's takeover comes soon, long enough that a
        # busy machine's late heartbeat never loses a live replica its job; a lost
        # lease would only mean a retry, and the attempts cap is far away.
        "RAG_INGEST__JOB_LEASE_SECONDS": "3",
        "RAG_INGEST__JOB_MAX_ATTEMPTS": "20",
    }
    env.pop(ENV_VAR, None)
    if kill:
        env[ENV_VAR] = kill
    return env


def _text(seed: int, sentences: int, marker: str) -> bytes:
    rng = random.Random(seed)
    body = " ".join(
        f"Sentence {i} says {' '.join(rng.choices(WORDS, k=12))}." for i in range(sentences)
    )
    return f"{marker}. {body}".encode()


def _marker(n: int) -> str:
    """A letters-only word the tokeniser keeps whole, found in exactly one file."""
    return "replicamarker" + "".join(chr(97 + int(d)) for d in str(n))


def _upload(url: str, name: str, data: bytes) -> str:
    response = httpx.post(
        f"{url}/documents", files=[("files", (name, data, "text/plain"))], timeout=60
    )
    assert response.status_code == 202, response.text
    return str(response.json()["jobs"][0]["job_id"])


def _wait_job(url: str, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def _top_document(url: str, query: str) -> str | None:
    response = httpx.post(f"{url}/ask", json={"question": query}, timeout=60)
    assert response.status_code == 200, response.text
    citations = response.json()["citations"]
    return citations[0]["document_id"] if citations else None


def _doctor(data: Path, url: str) -> dict[str, Any]:
    proc = subprocess.run(
        [*RAG, "doctor", "--json"], env=_env(data, url), capture_output=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(proc.stdout)


def test_upload_through_one_replica_is_answered_and_deleted_through_the_other(
    tmp_path: Path, pg_url: str
) -> None:
    a = ServerProcess(_env(tmp_path / "a", pg_url))
    b = ServerProcess(_env(tmp_path / "b", pg_url))
    try:
        data = _text(1, 60, _marker(1))
        job = _wait_job(b.url, _upload(a.url, "one.txt", data))  # B sees A's job row
        assert job["status"] == "succeeded", job
        doc_id = job["document_id"]
        # B answers from it at once: no restart, no reload, no copy of A's files.
        assert _top_document(b.url, _marker(1)) == doc_id
        assert httpx.get(f"{b.url}/documents/{doc_id}/file", timeout=30).content == data
        page = httpx.get(f"{b.url}/documents/{doc_id}/pages/1", timeout=30)
        assert page.status_code == 200 and _marker(1) in page.json()["text"]

        assert httpx.delete(f"{b.url}/documents/{doc_id}", timeout=60).status_code == 200
        assert httpx.get(f"{a.url}/documents/{doc_id}", timeout=30).status_code == 404
        assert _top_document(a.url, _marker(1)) != doc_id
    finally:
        a.stop()
        b.stop()
    assert _doctor(tmp_path / "a", pg_url)["consistent"]


def test_a_replica_killed_mid_ingest_leaves_its_job_to_the_other(
    tmp_path: Path, pg_url: str
) -> None:
    a = ServerProcess(_env(tmp_path / "a", pg_url, kill="embed.batch:2"))
    try:
        job_id = _upload(a.url, "big.txt", _text(2, 1_500, _marker(2)))
        assert a.wait() == -signal.SIGKILL  # A died holding the job, mid-embedding
    finally:
        a.kill()
    # B is another host: its own empty data folder, only the database in common.
    b = ServerProcess(_env(tmp_path / "b", pg_url))
    try:
        job = _wait_job(b.url, job_id)
        assert job["status"] == "succeeded", job
        doc = httpx.get(f"{b.url}/documents/{job['document_id']}", timeout=30).json()
        assert doc["status"] == "ready" and doc["chunks"] > 0, doc
        assert _top_document(b.url, _marker(2)) == job["document_id"]
    finally:
        b.stop()
    report = _doctor(tmp_path / "b", pg_url)
    assert report["consistent"], report


def test_sixteen_clients_over_two_replicas_lose_nothing(tmp_path: Path, pg_url: str) -> None:
    servers = [ServerProcess(_env(tmp_path / name, pg_url)) for name in ("a", "b")]
    errors: list[str] = []
    kept: dict[int, str] = {}  # file number -> job id, for files that stay
    lock = threading.Lock()

    def client(n: int) -> None:
        url = servers[n % 2].url
        other = servers[(n + 1) % 2].url
        try:
            for step in range(3):
                number = n * 10 + step
                job = _wait_job(
                    other, _upload(url, f"f{number}.txt", _text(number, 20, _marker(number)))
                )
                if job["status"] != "succeeded":
                    errors.append(f"job {job}")
                    continue
                if step == 1:  # delete one of each client's files, through the other replica
                    response = httpx.delete(f"{other}/documents/{job['document_id']}", timeout=60)
                    if response.status_code != 200:
                        errors.append(f"delete {response.status_code} {response.text[:200]}")
                else:
                    with lock:
                        kept[number] = job["document_id"]
                response = httpx.post(f"{url}/ask", json={"question": "solar inverter"}, timeout=60)
                if response.status_code != 200:
                    errors.append(f"ask {response.status_code} {response.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(f"client {n}: {exc!r}")

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(kept) == 32
        for number, doc_id in kept.items():
            for server in servers:
                doc = httpx.get(f"{server.url}/documents/{doc_id}", timeout=30).json()
                assert doc["status"] == "ready", (number, doc)
        listed = httpx.get(f"{servers[0].url}/documents", params={"limit": 100}, timeout=30)
        assert listed.json()["total"] == 32
    finally:
        for server in servers:
            server.stop()
    assert _doctor(tmp_path / "a", pg_url)["consistent"]
