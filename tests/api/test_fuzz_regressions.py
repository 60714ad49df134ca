"""Regressions for the defects a schemathesis probe and fault probes found (issue 14).

Each test names the defect it guards; all go through HTTP with real files.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.live_server import LiveServer
from api.schemas import MAX_SQL_INT
from tests.api.conftest import LOREM, MULTILANG, NICS, assert_error, ingest, upload, wait_job
from tests.conftest import fast_settings, shared_path

pytestmark = pytest.mark.integration

QUESTION_ROUTES: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("/ask", lambda text: {"question": text}),
    ("/ask", lambda text: {"question": text, "stream": True}),
    ("/chat", lambda text: {"message": text}),
    ("/chat", lambda text: {"message": text, "stream": True}),
    (
        "/v1/chat/completions",
        lambda text: {"model": "default", "messages": [{"role": "user", "content": text}]},
    ),
    (
        "/v1/chat/completions",
        lambda text: {
            "model": "default",
            "messages": [{"role": "user", "content": text}],
            "stream": True,
        },
    ),
]


@pytest.fixture
def lenient(make_client: Callable[..., TestClient]) -> TestClient:
    """A client that turns server exceptions into 500 responses, as a real server does."""
    return make_client(raise_server_exceptions=False)


def _raw_json(client: TestClient, path: str, text: str, **headers: str) -> httpx.Response:
    return client.post(
        path, content=text.encode(), headers={"content-type": "application/json", **headers}
    )


# ------------------------------------------------------------------ defect 1
@pytest.mark.parametrize("offset", [MAX_SQL_INT + 1, 2**63, 9223372036854775808 * 4])
def test_huge_offsets_are_422_not_500(lenient: TestClient, pdfs_dir: Path, offset: int) -> None:
    job = ingest(lenient, pdfs_dir / LOREM)
    doc_id = job["document_id"]
    for path in ("/documents", f"/documents/{doc_id}/chunks"):
        assert_error(lenient.get(path, params={"offset": offset}), 422, "validation_error")
    for path in ("/documents", f"/documents/{doc_id}/chunks"):
        response = lenient.get(path, params={"offset": MAX_SQL_INT})
        assert response.status_code == 200, response.text


def test_huge_page_numbers_are_422_not_500(lenient: TestClient) -> None:
    body = {"question": "what is lorem?", "pages": [1, 2**64]}
    assert_error(lenient.post("/ask", json=body), 422, "validation_error")


# ------------------------------------------------------------------ defect 2
@pytest.mark.parametrize(("path", "body"), QUESTION_ROUTES)
def test_lone_surrogates_are_422_not_500(
    lenient: TestClient, pdfs_dir: Path, path: str, body: Callable[[str], dict[str, Any]]
) -> None:
    ingest(lenient, pdfs_dir / LOREM)
    # json.dumps writes the lone surrogate as the escape "\ud800", as a fuzzer sends it.
    response = _raw_json(lenient, path, json.dumps(body("\ud800 trace")))
    error = assert_error(response, 422, "validation_error")
    assert "Unicode" in error["message"]


def test_lone_surrogates_elsewhere_in_a_body_are_422(lenient: TestClient) -> None:
    bodies = {
        "/ask": {"question": "ok", "collections": ["\udfff"]},
        "/collections": {"name": "a\ud800"},
        "/v1/chat/completions": {
            "model": "default",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}],
        },
    }
    for path, body in bodies.items():
        assert_error(_raw_json(lenient, path, json.dumps(body)), 422, "validation_error")


# ------------------------------------------------------------------ defect 3
def test_same_bytes_posted_twice_while_pending_are_one_document(client, pdfs_dir: Path) -> None:
    path = pdfs_dir / NICS
    first = upload(client, path).json()["jobs"][0]
    second = upload(client, path, names=["again.pdf"]).json()["jobs"][0]
    assert second["document_id"] == first["document_id"]
    assert second["job_id"] == first["job_id"]  # the job that is ingesting those bytes
    assert wait_job(client, first["job_id"])["status"] == "succeeded"
    docs = client.get("/documents").json()
    assert docs["total"] == 1 and docs["documents"][0]["status"] == "ready"


def test_same_bytes_twice_in_one_upload_are_one_document(client, pdfs_dir: Path) -> None:
    refs = upload(client, pdfs_dir / LOREM, pdfs_dir / LOREM).json()["jobs"]
    assert refs[0]["document_id"] == refs[1]["document_id"]
    for ref in refs:
        assert wait_job(client, ref["job_id"])["status"] == "succeeded"
    assert client.get("/documents").json()["total"] == 1


def test_concurrent_uploads_of_the_same_bytes_make_one_document(
    tmp_path: Path, pdfs_dir: Path
) -> None:
    data = (pdfs_dir / MULTILANG).read_bytes()
    with LiveServer(create_app(fast_settings(tmp_path / "live"))) as server:
        barrier = threading.Barrier(6)
        refs: list[dict[str, Any]] = []

        def post(i: int) -> None:
            barrier.wait()
            response = httpx.post(
                f"{server.url}/documents",
                files=[("files", (f"copy{i}.pdf", data, "application/pdf"))],
                timeout=60,
            )
            assert response.status_code == 202, response.text
            refs.extend(response.json()["jobs"])

        threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(refs) == 6 and len({r["document_id"] for r in refs}) == 1
        with httpx.Client(base_url=server.url) as http:
            for ref in refs:
                assert wait_job(http, ref["job_id"])["status"] == "succeeded"
            listing = http.get("/documents").json()
        assert listing["total"] == 1 and listing["documents"][0]["status"] == "ready"


def test_a_failed_upload_can_be_uploaded_again(client, pdfs_dir: Path) -> None:
    path = pdfs_dir / "encrypted_libreoffice-writer-password.pdf"
    assert ingest(client, path)["status"] == "failed"
    job = ingest(client, path, password="openpassword")
    assert job["status"] == "succeeded", job


# ------------------------------------------------------------------ defect 5
def test_deleting_a_collection_mid_ingest_cancels_its_job(client, pdfs_dir: Path) -> None:
    worker = client.app.state.rag.worker
    embedder = worker.ingest.embedder
    started = threading.Event()
    real_embed = embedder.embed_documents

    def slow_embed(texts: list[str]) -> Any:
        started.set()
        time.sleep(0.3)
        return real_embed(texts)

    embedder.embed_documents = slow_embed
    try:
        ref = upload(client, pdfs_dir / NICS, data={"collection": "doomed"}).json()["jobs"][0]
        queued = upload(client, pdfs_dir / LOREM, data={"collection": "doomed"}).json()["jobs"][0]
        assert started.wait(30)
        response = client.delete("/collections/doomed")
        assert response.status_code == 200, response.text
    finally:
        embedder.embed_documents = real_embed
    for job_id in (ref["job_id"], queued["job_id"]):
        job = wait_job(client, job_id)
        assert job["status"] == "failed" and job["error_code"] == "cancelled", job
    assert_error(client.get(f"/documents/{ref['document_id']}"), 404, "document_not_found")
    assert worker.alive
    kb = client.app.state.rag.services.kb
    assert all(check.consistent for check in kb.check())
    assert ingest(client, pdfs_dir / LOREM)["status"] == "succeeded"  # the worker lives on


# ------------------------------------------------------------------ defect 7
def test_a_flood_of_refused_uploads_stores_nothing(lenient: TestClient, pdfs_dir: Path) -> None:
    refused = [
        ("picture.pdf", b"\x89PNG\r\n\x1a\n" + bytes(64), 415, "unsupported_file_type"),
        ("empty.txt", b"", 422, "empty_document"),
        ("archive.zip", b"PK\x03\x04" + bytes(40), 422, "parse_error"),
    ]
    for round_ in range(5):
        for name, data, status, code in refused:
            files = [("files", (name, data, "application/octet-stream"))]
            response = lenient.post("/documents", files=files, data={"collection": f"new{round_}"})
            assert_error(response, status, code)
    assert lenient.get("/documents").json() == {"documents": [], "total": 0}
    # A refused upload does not even create the collection it named.
    assert lenient.get("/collections").json()["collections"] == []


def test_too_large_upload_stores_nothing(make_client, pdfs_dir: Path) -> None:
    client = make_client(ingest={"max_file_mb": 0.01})
    assert_error(upload(client, pdfs_dir / LOREM), 413, "file_too_large")
    assert client.get("/documents").json()["total"] == 0


def test_failure_after_acceptance_keeps_its_row(make_client, pdfs_dir: Path) -> None:
    client = make_client(ingest={"ocr": False})  # with OCR the scan is read, not failed
    job = ingest(client, pdfs_dir / "scanned_image-only_mineru-small-ocr.pdf")
    assert job["status"] == "failed"
    doc = client.get(f"/documents/{job['document_id']}").json()
    assert doc["status"] == "failed" and "OCR" in doc["error"]


# ------------------------------------------------------------------ defect 8
def test_control_characters_are_removed_from_file_names(client) -> None:
    boundary = "fuzzboundary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="files"; filename="nul\x00by\x1bte\u202e.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
        "Plain words about ducks and their feathers.\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    response = client.post(
        "/documents",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 202, response.text
    ref = response.json()["jobs"][0]
    assert ref["filename"] == "nulbyte.txt"
    job = wait_job(client, ref["job_id"])
    assert job["filename"] == "nulbyte.txt"
    doc = client.get(f"/documents/{job['document_id']}").json()
    assert doc["filename"] == "nulbyte.txt"
    disposition = client.get(f"/documents/{doc['id']}/file").headers["content-disposition"]
    assert "nulbyte.txt" in disposition
    assert not any(ord(ch) < 32 for ch in disposition)


# ------------------------------------------------------------------ defect 6
@pytest.mark.parametrize(
    ("name", "code", "word"),
    [
        ("encrypted_docx_testWORD_protected_passtika.docx", "encrypted_document", "encrypted"),
        ("encrypted_xlsx_testEXCEL_protected_passtika.xlsx", "encrypted_document", "encrypted"),
        ("encrypted_odt_testODTEncrypted.odt", "encrypted_document", "encrypted"),
        ("malformed_docx_testWORD_truncated.docx", "parse_error", "corrupt"),
    ],
)
def test_encrypted_and_corrupt_office_files_are_diagnosed(
    client, name: str, code: str, word: str
) -> None:
    path = shared_path("office", name)
    error = assert_error(upload(client, path), 422, code)
    assert word in error["message"]
    assert "legacy Office" not in error["message"] and "ZIP archive:" not in error["message"]
    if code == "encrypted_document":
        assert "password" in error["message"]
    assert client.get("/documents").json()["total"] == 0


# ----------------------------------------------------------------- defect 10
def test_strict_booleans(lenient: TestClient) -> None:
    bodies = {
        "/ask": {"question": "q", "stream": "yes"},
        "/chat": {"message": "q", "stream": "yes"},
        "/v1/chat/completions": {
            "model": "default",
            "messages": [{"role": "user", "content": "q"}],
            "stream": "yes",
        },
    }
    for path, body in bodies.items():
        assert_error(lenient.post(path, json=body), 422, "validation_error")


@pytest.mark.parametrize(
    "extra", [{"n": 5}, {"temperature": "hot"}, {"top_k": -1}, {"temperature": 9}]
)
def test_openai_parameters_it_cannot_honour_are_refused(client, extra: dict[str, Any]) -> None:
    client.post("/collections", json={"name": "default"})
    body = {"model": "default", "messages": [{"role": "user", "content": "q"}], **extra}
    assert_error(client.post("/v1/chat/completions", json=body), 422, "validation_error")


def test_openai_parameters_it_honours_are_accepted(client, pdfs_dir: Path) -> None:
    ingest(client, pdfs_dir / LOREM)
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "What is lorem ipsum?"}],
        "n": 1,
        "temperature": 0.2,
        "top_k": 2,
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["citations"]) <= 2


def test_unknown_document_ids_are_404(client, pdfs_dir: Path) -> None:
    ingest(client, pdfs_dir / LOREM)
    body = {"question": "What is lorem ipsum?", "document_ids": ["0" * 32]}
    assert_error(client.post("/ask", json=body), 404, "document_not_found")
    assert_error(client.post("/ask", json={**body, "stream": True}), 404, "document_not_found")
    chat = {"message": "What is lorem ipsum?", "document_ids": ["nope"]}
    assert_error(client.post("/chat", json=chat), 404, "document_not_found")


def test_json_sent_as_text_is_415(client) -> None:
    bodies = {
        "/ask": {"question": "q"},
        "/chat": {"message": "q"},
        "/collections": {"name": "x"},
        "/v1/chat/completions": {"model": "x", "messages": [{"role": "user", "content": "q"}]},
    }
    for path, body in bodies.items():
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = client.post(
                path, content=json.dumps(body), headers={"content-type": content_type}
            )
            assert_error(response, 415, "unsupported_media_type")
        no_type = client.post(path, content=json.dumps(body).encode(), headers={})
        assert no_type.status_code == 415


# ------------------------------------------------------------------ defect 9
def test_openapi_documents_what_the_routes_answer(client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/ask", "/chat", "/collections", "/v1/chat/completions"):
        assert {"400", "415", "422"} <= set(paths[path]["post"]["responses"]), path
    upload_responses = paths["/documents"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(upload_responses)
    file_types = set(paths["/documents/{doc_id}/file"]["get"]["responses"]["200"]["content"])
    assert {"application/pdf", "text/plain", "text/markdown", "text/html"} <= file_types
    models = schema["components"]["schemas"]
    assert models["CollectionCreate"]["properties"]["name"]["pattern"]
    assert models["AskRequest"]["properties"]["question"]["minLength"] == 1
    assert models["AskRequest"]["properties"]["question"]["maxLength"] == 2000
    assert models["ChatRequest"]["properties"]["message"]["minLength"] == 1


def test_405_lists_every_method_of_the_path(client) -> None:
    for method, path, allowed in [
        ("OPTIONS", "/documents/abc", "GET, DELETE"),
        ("PUT", "/documents", "GET, POST"),
        ("PATCH", "/collections/x", "DELETE"),
        ("GET", "/ask", "POST"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed, (method, path)


def test_requests_the_schema_allows_are_accepted(client, pdfs_dir: Path) -> None:
    job = ingest(client, pdfs_dir / LOREM)
    # Pages given last-first mean the same range.
    ask = {"question": "What is lorem ipsum?", "pages": [3, 1]}
    response = client.post("/ask", json=ask)
    assert response.status_code == 200, response.text
    # The question is the last user message; an assistant message after it is ignored.
    body = {
        "model": "default",
        "messages": [
            {"role": "user", "content": "What is lorem ipsum?"},
            {"role": "assistant", "content": "Let me look."},
        ],
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert job["status"] == "succeeded"


def test_requests_the_schema_refuses_are_422(client) -> None:
    cases = [
        ("/ask", {"question": ""}),
        ("/ask", {"question": "   "}),
        ("/chat", {"message": ""}),
        ("/collections", {"name": "no spaces"}),
        ("/collections", {"name": "-leading-dash"}),
        ("/v1/chat/completions", {"model": "default", "messages": [{"role": "system"}]}),
        ("/v1/chat/completions", {"model": "default", "messages": []}),
    ]
    for path, body in cases:
        assert_error(client.post(path, json=body), 422, "validation_error")
    schema = client.get("/openapi.json").json()
    upload_body = schema["paths"]["/documents"]["post"]["requestBody"]["content"]
    form = upload_body["multipart/form-data"]["schema"]
    ref = form["$ref"].rsplit("/", 1)[-1]
    files = schema["components"]["schemas"][ref]["properties"]["files"]
    assert files["minItems"] == 1
    multipart = client.post(
        "/documents",
        content=b'--b\r\nContent-Disposition: form-data; name="collection"\r\n\r\nx\r\n--b--\r\n',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(multipart, 422, "validation_error")


def test_a_document_deleted_between_read_and_write_is_not_found(
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the stateful run: DELETE /documents/ID racing its job ended internal_error."""
    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from rag.db.models import Document
    from rag.errors import DocumentNotFound

    kb = client.app.state.rag.services.kb
    kb.create_collection("race")
    doc = kb.begin_document("race", "a.txt", media_type="text/plain", size_bytes=1, sha256="r")
    real_get = Session.get

    def get_then_vanish(self: Session, entity: Any, ident: Any, **kwargs: Any) -> Any:
        row = real_get(self, entity, ident, **kwargs)
        if entity is Document and row is not None:
            with kb.engine.begin() as conn:  # the concurrent delete lands right here
                conn.execute(delete(Document).where(Document.id == ident))
        return row

    monkeypatch.setattr(Session, "get", get_then_vanish)
    with pytest.raises(DocumentNotFound):
        kb.update_document(doc.id, status="pending")


# ------------------------------------------------- progress granularity (also)
def test_job_progress_moves_per_page_and_per_small_embedding_batch(client, pdfs_dir: Path) -> None:
    """A 14-page PDF used to jump from 0 to 88 chunks in one step."""
    worker = client.app.state.rag.worker
    seen: list[tuple[int, int, int]] = []
    real_update = worker._update_held

    def record(job_id: str, **fields: Any) -> bool:
        if "pages_parsed" in fields:
            seen.append((fields["pages_parsed"], fields["chunks_total"], fields["chunks_embedded"]))
        return real_update(job_id, **fields)

    worker._update_held = record  # type: ignore[method-assign]
    job = ingest(client, pdfs_dir / "en_academic_two-column_tracemonkey-pldi09.pdf")
    assert job["status"] == "succeeded" and job["pages_parsed"] == 14
    pages = [p for p, total, _ in seen if total == 0 and p]
    assert list(range(1, 15)) == sorted(set(pages)) and pages == sorted(pages)
    embedded = [e for _, total, e in seen if total]
    steps = [b - a for a, b in zip([0, *embedded], embedded, strict=False) if b > a]
    assert len(steps) >= 2 and max(steps) <= 32, steps


def test_an_upload_that_is_not_multipart_is_415(client) -> None:
    response = client.post("/documents", json={"files": ["report.pdf"]})
    assert_error(response, 415, "unsupported_media_type")
    assert client.get("/documents").json()["total"] == 0


def test_a_form_field_sent_twice_is_422(client) -> None:
    """Found by schemathesis: 'replace' sent twice (an array) was accepted."""
    files = [("files", ("a.txt", b"Ducks have waterproof feathers.", "text/plain"))]
    response = client.post("/documents", files=files, data={"replace": ["true", "false"]})
    assert_error(response, 422, "invalid_input")
    assert client.get("/documents").json()["total"] == 0
