"""Fixtures for API tests: fast settings, a TestClient, a live uvicorn server, upload helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.live_server import LiveServer
from tests.conftest import fast_settings

LOREM = "en_multicolumn_latex-lorem.pdf"
ENCRYPTED = "encrypted_libreoffice-writer-password.pdf"
EMPTY = "malformed_empty-0-bytes.pdf"
SCANNED = "scanned_image-only_mineru-small-ocr.pdf"
MULTILANG = "multilang_en-ar-ru-zh-th-ja.pdf"
NICS = "en_table_nics-background-checks-2015-11.pdf"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``both_backends`` run each test on SQLite files and on PostgreSQL."""
    if "backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize("backend", ["files", "postgres"] if both else ["files"])


@pytest.fixture
def backend_overrides(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides of the test's storage backend (a fresh PostgreSQL database each)."""
    if backend == "postgres":
        return {"database_url": request.getfixturevalue("pg_url")}
    return {}


@pytest.fixture
def make_client(
    tmp_path: Path, backend_overrides: dict[str, Any]
) -> Iterator[Callable[..., TestClient]]:
    """Factory of started TestClients over fresh apps (closed at teardown).

    Every app of one test shares the test's backend (one PostgreSQL database
    for all of them when it is ``postgres``, as replicas would).
    """
    clients: list[TestClient] = []

    def make(subdir: str = "data", raise_server_exceptions: bool = True, **overrides: Any):
        app = create_app(fast_settings(tmp_path / subdir, **{**backend_overrides, **overrides}))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A started TestClient over a fresh app with fast settings."""
    return make_client()


def upload(
    client: Any, *paths: Path, data: dict[str, str] | None = None, names: list[str] | None = None
) -> httpx.Response:
    """POST /documents with the files (real bytes), optional form fields and file names."""
    files = [
        ("files", ((names[i] if names else p.name), p.read_bytes(), "application/octet-stream"))
        for i, p in enumerate(paths)
    ]
    return client.post("/documents", files=files, data=data or {})


def wait_job(client: Any, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll GET /jobs/{id} until it succeeds or fails."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
        time.sleep(0.05)


def ingest(client: Any, path: Path, **form: str) -> dict[str, Any]:
    """Upload one file and wait for its job; returns the finished job."""
    response = upload(client, path, data=form or None)
    assert response.status_code == 202, response.text
    return wait_job(client, response.json()["jobs"][0]["job_id"])


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response has the status and the standard error body with the code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        events.append((event, "\n".join(data)))
    return events


@pytest.fixture
def live_server(tmp_path: Path, backend_overrides: dict[str, Any]) -> Iterator[LiveServer]:
    """A live server over a fresh app with fast settings (on the test's backend)."""
    with LiveServer(create_app(fast_settings(tmp_path / "live", **backend_overrides))) as server:
        yield server
