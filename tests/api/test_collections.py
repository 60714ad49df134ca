"""Collection endpoints through HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.reembed import ReembedJobs
from rag.db.models import IngestJob, JobStatus
from tests.api.conftest import LOREM, assert_error, ingest, wait_job

pytestmark = [pytest.mark.integration, pytest.mark.both_backends]


def test_collection_lifecycle(client, pdfs_dir: Path):
    assert client.get("/collections").json() == {"collections": [], "default_collection": "default"}
    created = client.post("/collections", json={"name": "handbook"})
    assert created.status_code == 201
    assert created.json()["name"] == "handbook" and created.json()["documents"] == 0
    assert_error(client.post("/collections", json={"name": "handbook"}), 409, "conflict")

    ingest(client, pdfs_dir / LOREM, collection="handbook")
    (info,) = client.get("/collections").json()["collections"]
    assert info["name"] == "handbook" and info["documents"] == 1 and info["chunks"] > 0

    assert client.delete("/collections/handbook").json() == {"deleted": "handbook", "documents": 1}
    assert client.get("/collections").json() == {"collections": [], "default_collection": "default"}
    assert client.get("/documents").json()["total"] == 0


def test_collection_input_errors(client):
    # The name pattern is in the schema, so a bad name is a validation error.
    assert_error(client.post("/collections", json={"name": "bad name!"}), 422, "validation_error")
    assert_error(client.post("/collections", json={"name": ""}), 422, "validation_error")
    assert_error(client.post("/collections", json={}), 422, "validation_error")
    response = client.post(
        "/collections", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "malformed_json")
    assert_error(client.delete("/collections/nope"), 404, "collection_not_found")


def test_reembed_route_swaps_the_model_in_a_job(client, pdfs_dir: Path):
    ingest(client, pdfs_dir / LOREM, collection="handbook")
    (before,) = client.get("/collections").json()["collections"]
    assert (before["embedding_model"], before["embedding_dim"]) == ("hashing-256", 256)
    question = {"question": "What is lorem ipsum?", "collections": ["handbook"]}
    cited = client.post("/ask", json=question).json()["citations"]

    response = client.post("/collections/handbook/reembed", json={"model": "hashing:32"})
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["collection"] == "handbook" and job["chunks_embedded"] == before["chunks"]
    (after,) = client.get("/collections").json()["collections"]
    assert (after["embedding_model"], after["embedding_dim"]) == ("hashing-32", 32)
    assert after["chunks"] == before["chunks"]
    # Still answers, now embedding questions with the new model.
    again = client.post("/ask", json=question)
    assert again.status_code == 200 and again.json()["citations"]
    assert cited  # the same document answers before and after
    assert {c["document_id"] for c in again.json()["citations"]} == {
        c["document_id"] for c in cited
    }


def test_reembed_route_errors(client, pdfs_dir: Path):
    assert_error(
        client.post("/collections/nope/reembed", json={"model": "hashing:32"}),
        404,
        "collection_not_found",
    )
    client.post("/collections", json={"name": "handbook"})
    assert_error(
        client.post("/collections/handbook/reembed", json={"model": "./no/such/folder"}),
        404,
        "model_not_found",
    )
    assert_error(client.post("/collections/handbook/reembed", json={}), 422, "validation_error")
    response = client.post(
        "/collections/handbook/reembed", content=b"model", headers={"content-type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


def test_interrupted_reembed_jobs_are_settled_by_what_the_collection_records(client):
    state = client.app.state.rag
    kb = state.services.kb
    kb.create_collection("handbook")
    with kb.sessions.begin() as session:
        for job_id, model in (("a" * 32, "hashing-256"), ("b" * 32, "hashing-32")):
            session.add(
                IngestJob(
                    id=job_id,
                    collection="handbook",
                    filename=f"re-embed with {model}",
                    status=JobStatus.RUNNING.value,
                    options={"kind": "reembed", "model": model},
                )
            )
    jobs = ReembedJobs(kb, state.services.embedders, 16)
    assert sorted(jobs.recover()) == ["a" * 32, "b" * 32]
    jobs.stop()
    # The collection records hashing-256: the first job's swap committed, the second's did not.
    assert client.get(f"/jobs/{'a' * 32}").json()["status"] == "succeeded"
    failed = client.get(f"/jobs/{'b' * 32}").json()
    assert failed["status"] == "failed" and failed["error_code"] == "interrupted"
    assert "old vectors" in failed["error"]


def test_a_live_replicas_reembed_job_is_left_to_it_until_its_lease_passes(client, backend):
    kb = client.app.state.rag.services.kb
    kb.create_collection("handbook")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with kb.sessions.begin() as session:
        session.add(
            IngestJob(
                id="c" * 32,
                collection="handbook",
                filename="re-embed with hashing-32",
                status=JobStatus.RUNNING.value,
                options={"kind": "reembed", "model": "hashing-32"},
                claimed_by="other-replica",
                lease_until=now + timedelta(seconds=30),
            )
        )
    clock = [now]
    jobs = ReembedJobs(
        kb, client.app.state.rag.services.embedders, 16, lease_seconds=30, clock=lambda: clock[0]
    )
    try:
        if backend == "postgres":  # replicas share the table: the holder is alive
            assert jobs.settle_abandoned() == []
            assert client.get(f"/jobs/{'c' * 32}").json()["status"] == "running"
            clock[0] = now + timedelta(seconds=31)  # its lease passed: that replica died
        assert jobs.settle_abandoned() == ["c" * 32]  # (SQLite: one server, so at once)
        assert client.get(f"/jobs/{'c' * 32}").json()["error_code"] == "interrupted"
    finally:
        jobs.stop()
