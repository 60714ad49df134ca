"""Health, readiness, metrics and the OpenAPI schema through HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import LOREM, ingest

pytestmark = [pytest.mark.integration, pytest.mark.both_backends]


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert {"database", "indexes", "embedder"} <= set(body["checks"])
    assert all(check["ok"] for check in body["checks"].values())


def test_readiness_fails_when_the_embedder_cannot_load(client):
    services = client.app.state.rag.services

    class Broken:
        name = "broken"

        def embed_query(self, text: str):
            raise OSError("model folder missing")

    services.embedder = Broken()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert not body["checks"]["embedder"]["ok"]
    assert "model folder missing" in body["checks"]["embedder"]["error"]
    assert body["checks"]["database"]["ok"]


def test_metrics_expose_requests_jobs_and_collections(client, pdfs_dir: Path):
    job = ingest(client, pdfs_dir / LOREM, collection="papers")
    client.get(f"/documents/{job['document_id']}")
    client.get("/documents/unknown-id")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    ok = 'rag_http_requests_total{method="GET",route="/documents/{doc_id}",status="200"} 1.0'
    assert ok in text
    assert 'route="/documents/{doc_id}",status="404"' in text
    assert "rag_http_request_duration_seconds_bucket" in text
    assert 'rag_ingest_jobs{status="succeeded"} 1.0' in text
    assert 'rag_collection_documents{collection="papers"} 1.0' in text
    assert 'rag_collection_chunks{collection="papers"}' in text
    assert "unknown-id" not in text


def test_openapi_schema_has_the_contract_and_examples(client):
    schema = client.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/healthz",
        "/readyz",
        "/metrics",
        "/collections",
        "/collections/{name}",
        "/documents",
        "/documents/{doc_id}",
        "/documents/{doc_id}/chunks",
        "/documents/{doc_id}/file",
        "/jobs/{job_id}",
        "/ask",
        "/chat",
        "/chat/{session_id}",
        "/v1/models",
        "/v1/chat/completions",
    } <= paths
    ask = schema["components"]["schemas"]["AskRequest"]
    assert ask["examples"][0]["question"]
