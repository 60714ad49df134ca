"""A `rag serve` process killed mid-upload and mid-delete restarts consistent.

The server kills itself at a named point of the write path (``rag.faults``),
so the kill lands inside the work whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.live_server import ServerProcess
from rag.faults import ENV_VAR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RAG = [sys.executable, "-m", "cli.main"]


def _env(data: Path, kill: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_EMBEDDING__MODEL": "hashing:64",
        "RAG_GENERATOR__BACKEND": "extractive",
        "RAG_INGEST__EMBED_BATCH_CHUNKS": "16",
    }
    env.pop(ENV_VAR, None)
    if kill:
        env[ENV_VAR] = kill
    return env


def Server(data: Path, kill: str | None = None) -> ServerProcess:  # noqa: N802 - reads as a class
    """A `rag serve` child over ``data`` that kills itself at ``kill`` (point:N), if given."""
    return ServerProcess(_env(data, kill))


def _big_text(seed: int) -> bytes:
    rng = random.Random(seed)
    words = "solar wind battery inverter grid storage panel energy current cell".split()
    return " ".join(
        f"Sentence {i} says {' '.join(rng.choices(words, k=12))}." for i in range(1_500)
    ).encode()


def _doctor(data: Path) -> dict:
    proc = subprocess.run([*RAG, "doctor", "--json"], env=_env(data, None), capture_output=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    return json.loads(proc.stdout)


def _wait_job(url: str, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


@pytest.mark.parametrize("point", ["embed.batch:2", "commit.sql_done:1"])
def test_server_killed_mid_upload_resumes_or_fails_with_reason(tmp_path: Path, point: str) -> None:
    data = tmp_path / "data"
    server = Server(data, kill=point)
    try:
        response = httpx.post(
            f"{server.url}/documents",
            files=[("files", ("big.txt", _big_text(1), "text/plain"))],
            timeout=30,
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["jobs"][0]["job_id"]
        assert server.wait() == -signal.SIGKILL
    finally:
        server.kill()
    assert _doctor(data)["consistent"]

    server = Server(data)
    try:
        job = _wait_job(server.url, job_id)
        doc = httpx.get(f"{server.url}/documents/{job['document_id']}", timeout=10).json()
        assert doc["status"] in ("ready", "failed"), doc
        if doc["status"] == "failed":
            assert doc["error"], doc
        else:
            assert doc["chunks"] > 0
            hits = httpx.post(
                f"{server.url}/ask", json={"question": "solar battery inverter"}, timeout=30
            ).json()
            assert hits["citations"], hits
        for status in ("pending", "processing"):
            listed = httpx.get(f"{server.url}/documents", params={"status": status}, timeout=10)
            assert listed.json()["total"] == 0, (status, listed.json())
    finally:
        server.stop()
    assert _doctor(data)["consistent"]


@pytest.mark.parametrize("point", ["delete.sql_done:1"])
def test_server_killed_mid_delete_restarts_without_the_document(tmp_path: Path, point: str) -> None:
    data = tmp_path / "data"
    server = Server(data)
    try:
        ids = []
        for seed in (1, 2):
            response = httpx.post(
                f"{server.url}/documents",
                files=[("files", (f"doc{seed}.txt", _big_text(seed), "text/plain"))],
                timeout=30,
            )
            assert response.status_code == 202, response.text
            job = _wait_job(server.url, response.json()["jobs"][0]["job_id"])
            assert job["status"] == "succeeded", job
            ids.append(job["document_id"])
    finally:
        server.stop()

    server = Server(data, kill=point)
    try:
        with pytest.raises(httpx.TransportError):
            httpx.delete(f"{server.url}/documents/{ids[0]}", timeout=60)
        assert server.wait() == -signal.SIGKILL
    finally:
        server.kill()
    assert _doctor(data)["consistent"]

    server = Server(data)
    try:
        assert httpx.get(f"{server.url}/documents/{ids[0]}", timeout=10).status_code == 404
        kept = httpx.get(f"{server.url}/documents/{ids[1]}", timeout=10).json()
        assert kept["status"] == "ready"
    finally:
        server.stop()
    assert _doctor(data)["consistent"]
