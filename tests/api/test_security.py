"""API keys, CORS, rate limits, body size limits and opaque 500s, through HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import MULTILANG, assert_error, upload

pytestmark = pytest.mark.integration


def test_api_keys_guard_every_route_but_health_and_the_web_page(make_client):
    client = make_client(api={"api_keys": ["k1", "k2"]})
    assert client.get("/healthz").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    for method, path in [
        ("GET", "/collections"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("POST", "/ask"),
        ("GET", "/v1/models"),
        ("GET", "/nope"),
    ]:
        error = assert_error(client.request(method, path), 401, "unauthorized")
        assert "Authorization: Bearer" in error["message"]
    wrong = client.get("/collections", headers={"Authorization": "Bearer k3"})
    assert_error(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert_error(client.get("/collections", headers={"Authorization": "k1"}), 401, "unauthorized")
    for key in ("k1", "k2"):
        ok = client.get("/collections", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200


def test_cors_headers_and_preflight(make_client):
    client = make_client(api={"cors_origins": ["http://app.example"], "api_keys": ["k"]})
    preflight = client.options(
        "/ask",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://app.example"
    denied = client.get("/collections", headers={"Origin": "http://app.example"})
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == "http://app.example"
    other = client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_rate_limit_per_key(make_client):
    client = make_client(api={"rate_limit_per_minute": 3, "api_keys": ["a", "b"]})
    key_a = {"Authorization": "Bearer a"}
    codes = [client.get("/collections", headers=key_a).status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200]
    limited = client.get("/collections", headers=key_a)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # Another key has its own budget; health checks are never limited.
    assert client.get("/collections", headers={"Authorization": "Bearer b"}).status_code == 200
    assert all(client.get("/healthz").status_code == 200 for _ in range(5))


def test_request_body_limit(make_client, pdfs_dir: Path):
    client = make_client(api={"max_request_mb": 0.01})
    error = assert_error(upload(client, pdfs_dir / MULTILANG), 413, "file_too_large")
    assert "RAG_API__MAX_REQUEST_MB" in error["message"]
    # A chunked body (no Content-Length) is cut off while it is read.
    response = client.post(
        "/ask",
        content=iter([b'{"question": "', b"x" * 20000, b'"}']),
        headers={"content-type": "application/json"},
    )
    assert_error(response, 413, "file_too_large")
    assert client.post("/ask", json={"question": "small"}).status_code == 200


def test_unexpected_errors_are_opaque_500s(make_client):
    client = make_client(raise_server_exceptions=False)
    kb = client.app.state.rag.services.kb

    def broken() -> list:
        raise RuntimeError("secret internal detail")

    kb.list_collections = broken
    response = client.get("/collections")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert error["details"] == {}


def test_unknown_route_and_method_use_the_error_shape(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.put("/collections"), 405, "method_not_allowed")
