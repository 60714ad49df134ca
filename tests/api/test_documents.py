"""Uploads, ingest jobs and document endpoints, with real PDFs, through HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.api.conftest import (
    EMPTY,
    ENCRYPTED,
    LOREM,
    MULTILANG,
    SCANNED,
    assert_error,
    ingest,
    upload,
    wait_job,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_backends]


def test_upload_ingests_in_background_and_document_endpoints_work(client, pdfs_dir: Path):
    path = pdfs_dir / LOREM
    response = upload(client, path, data={"collection": "papers"})
    assert response.status_code == 202
    (ref,) = response.json()["jobs"]
    assert ref["filename"] == LOREM and ref["status"] == "queued" and ref["document_id"]
    job = wait_job(client, ref["job_id"])
    assert job["status"] == "succeeded", job
    assert job["collection"] == "papers" and job["document_id"] == ref["document_id"]
    assert job["pages_parsed"] == 3
    assert job["chunks_total"] == job["chunks_embedded"] > 0
    assert job["error"] is None and job["error_code"] is None
    doc_id = job["document_id"]

    doc = client.get(f"/documents/{doc_id}").json()
    assert doc["status"] == "ready" and doc["pages"] == 3 and doc["chunks"] == job["chunks_total"]
    assert doc["media_type"] == "application/pdf" and doc["collection"] == "papers"
    assert doc["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    listing = client.get("/documents", params={"collection": "papers", "status": "ready"}).json()
    assert listing["total"] == 1 and listing["documents"][0]["id"] == doc_id
    for key in ("id", "filename", "status", "pages", "chunks", "error", "collection"):
        assert key in listing["documents"][0]

    chunks = client.get(f"/documents/{doc_id}/chunks", params={"limit": 2}).json()
    assert chunks["total"] == doc["chunks"] and len(chunks["chunks"]) == 2
    first = chunks["chunks"][0]
    assert first["ordinal"] == 0 and first["text"] and first["page_start"] == 1
    rest = client.get(f"/documents/{doc_id}/chunks", params={"offset": 2}).json()["chunks"]
    assert [c["ordinal"] for c in rest] == list(range(2, doc["chunks"]))

    file = client.get(f"/documents/{doc_id}/file")
    assert file.status_code == 200 and file.content == path.read_bytes()
    assert file.headers["content-type"] == "application/pdf"
    assert LOREM in file.headers["content-disposition"]

    assert client.delete(f"/documents/{doc_id}").json() == {"deleted": doc_id}
    assert_error(client.get(f"/documents/{doc_id}"), 404, "document_not_found")
    assert client.get("/documents").json()["total"] == 0


def test_same_bytes_return_the_existing_document_at_once(client, pdfs_dir: Path):
    first = ingest(client, pdfs_dir / MULTILANG)
    again = upload(client, pdfs_dir / MULTILANG, names=["renamed.pdf"])
    assert again.status_code == 202
    (ref,) = again.json()["jobs"]
    assert ref["status"] == "succeeded" and ref["document_id"] == first["document_id"]
    assert client.get(f"/jobs/{ref['job_id']}").json()["status"] == "succeeded"
    assert client.get("/documents").json()["total"] == 1


def test_several_files_in_one_upload(client, pdfs_dir: Path):
    response = upload(client, pdfs_dir / LOREM, pdfs_dir / MULTILANG)
    assert response.status_code == 202
    jobs = [wait_job(client, ref["job_id"]) for ref in response.json()["jobs"]]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert [j["filename"] for j in jobs] == [LOREM, MULTILANG]


def test_file_name_is_never_used_as_a_path(client, pdfs_dir: Path, tmp_path: Path):
    response = upload(client, pdfs_dir / MULTILANG, names=["../../evil/../x.pdf"])
    job = wait_job(client, response.json()["jobs"][0]["job_id"])
    assert job["status"] == "succeeded" and job["filename"] == "x.pdf"
    assert not (tmp_path / "evil").exists()
    # Processed uploads are removed from the spool folder.
    assert client.app.state.rag.worker.uploads.keys() == []


def test_encrypted_pdf_fails_without_password_and_works_with_it(client, pdfs_dir: Path):
    job = ingest(client, pdfs_dir / ENCRYPTED)
    assert job["status"] == "failed" and job["error_code"] == "encrypted_document"
    assert "password" in job["error"].lower()
    doc = client.get(f"/documents/{job['document_id']}").json()
    assert doc["status"] == "failed" and doc["error"]

    job = ingest(client, pdfs_dir / ENCRYPTED, password="openpassword")
    assert job["status"] == "succeeded", job
    assert job["chunks_total"] > 0


def test_scanned_pdf_job_fails_with_the_ocr_message_when_ocr_is_off(make_client, pdfs_dir: Path):
    client = make_client(ingest={"ocr": False})
    job = ingest(client, pdfs_dir / SCANNED)
    assert job["status"] == "failed"
    assert job["error_code"] == "empty_document"
    assert "ocr" in job["error"].lower(), job["error"]


def test_wrong_type_is_415_and_stores_nothing(client, pdfs_dir: Path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    response = client.post("/documents", files=[("files", ("picture.pdf", png, "image/png"))])
    error = assert_error(response, 415, "unsupported_file_type")
    assert "PNG" in error["message"]
    assert client.get("/documents").json()["total"] == 0


def test_empty_file_is_refused(client, pdfs_dir: Path):
    assert_error(upload(client, pdfs_dir / EMPTY), 422, "empty_document")


def test_one_bad_file_queues_nothing(client, pdfs_dir: Path):
    response = upload(client, pdfs_dir / LOREM, pdfs_dir / EMPTY)
    assert_error(response, 422, "empty_document")
    assert client.get("/documents").json()["total"] == 0


def test_oversized_file_is_413_with_the_limit(make_client, pdfs_dir: Path):
    client = make_client(ingest={"max_file_mb": 0.01})
    error = assert_error(upload(client, pdfs_dir / LOREM), 413, "file_too_large")
    assert "0.01 MiB" in error["message"] and error["details"]["limit_bytes"] == 10485
    assert client.get("/documents").json()["total"] == 0


def test_upload_input_errors(client, pdfs_dir: Path):
    # A urlencoded form cannot carry files: the media type is wrong (multipart without files: 422).
    assert_error(client.post("/documents", data={"collection": "x"}), 415, "unsupported_media_type")
    bad = upload(client, pdfs_dir / MULTILANG, data={"collection": "no spaces allowed"})
    assert_error(bad, 422, "validation_error")
    bad = upload(client, pdfs_dir / MULTILANG, data={"replace": "maybe"})
    assert_error(bad, 422, "validation_error")


def test_unknown_ids_are_404(client):
    assert_error(client.get("/jobs/nope"), 404, "job_not_found")
    for path in ("/documents/nope", "/documents/nope/chunks", "/documents/nope/file"):
        assert_error(client.get(path), 404, "document_not_found")
    assert_error(client.delete("/documents/nope"), 404, "document_not_found")
    missing = client.get("/documents", params={"collection": "nope"})
    assert_error(missing, 404, "collection_not_found")


def test_listing_parameters_are_validated(client):
    assert_error(client.get("/documents", params={"limit": 0}), 422, "validation_error")
    assert_error(client.get("/documents", params={"offset": -1}), 422, "validation_error")
    assert_error(client.get("/documents", params={"status": "done"}), 422, "validation_error")
