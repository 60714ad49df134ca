"""One upload-to-answer path through HTTP with the bundled embedder and generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.settings import load_settings
from tests.api.conftest import LOREM, ingest, parse_sse

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bundled_models_answer_with_citations(tmp_path: Path, pdfs_dir: Path):
    settings = load_settings(
        data_dir=tmp_path / "data", generator={"backend": "transformers", "max_new_tokens": 48}
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        job = ingest(client, pdfs_dir / LOREM)
        assert job["status"] == "succeeded", job
        body = client.post("/ask", json={"question": "What is Lorem Ipsum?"}).json()
        assert body["answer"] and body["generator"] == "transformers"
        assert body["citations"] and body["citations"][0]["filename"] == LOREM
        stream = client.post("/ask", json={"question": "What is Lorem Ipsum?", "stream": True})
        events = parse_sse(stream.text)
        assert events[-1][0] == "answer", events[-3:]
        assert json.loads(events[-1][1])["answer"]
