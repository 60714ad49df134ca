"""Jobs left unfinished by a dead process are resumed or failed when the next app starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag.db.models import IngestJob
from rag.services import build_services
from tests.api.conftest import LOREM, MULTILANG, fast_settings, wait_job

pytestmark = pytest.mark.integration


def _leave_running_job(services, data: bytes, filename: str, upload_dir: Path, keep: bool) -> str:
    """What a process killed mid-ingestion leaves: a processing document and a running job."""
    kb = services.kb
    kb.create_collection("papers", exist_ok=True)
    doc = kb.begin_document(
        "papers",
        filename,
        media_type="application/pdf",
        size_bytes=len(data),
        sha256=filename,
        data=data,
    )
    job = IngestJob(
        collection="papers",
        filename=filename,
        document_id=doc.id,
        status="running",
        pages_parsed=1,
        options={"replace": None, "has_password": False},
    )
    with kb.sessions.begin() as session:
        session.add(job)
        session.flush()
        path = upload_dir / job.id
        if keep:
            path.write_bytes(data)
        job.upload_path = str(path)
        return job.id


def test_running_jobs_of_a_dead_process_are_requeued_or_failed(tmp_path: Path, pdfs_dir: Path):
    settings = fast_settings(tmp_path / "data")
    upload_dir = settings.data_dir / "uploads"
    upload_dir.mkdir(parents=True)
    services = build_services(settings)
    resumable = _leave_running_job(
        services, (pdfs_dir / LOREM).read_bytes(), LOREM, upload_dir, keep=True
    )
    lost = _leave_running_job(
        services, (pdfs_dir / MULTILANG).read_bytes(), MULTILANG, upload_dir, keep=False
    )
    services.close()

    with TestClient(create_app(settings)) as client:
        job = wait_job(client, resumable)
        assert job["status"] == "succeeded", job
        assert job["chunks_total"] == job["chunks_embedded"] > 0
        assert client.get(f"/documents/{job['document_id']}").json()["status"] == "ready"

        failed = client.get(f"/jobs/{lost}").json()
        assert failed["status"] == "failed" and failed["error_code"] == "interrupted"
        assert "upload" in failed["error"]
        doc = client.get(f"/documents/{failed['document_id']}").json()
        assert doc["status"] == "failed" and doc["error"]

        for status in ("pending", "processing"):
            assert client.get("/documents", params={"status": status}).json()["total"] == 0
        assert list(upload_dir.iterdir()) == []
        kb = client.app.state.rag.services.kb
        assert all(check.consistent for check in kb.check())


def test_doctor_between_a_crash_and_the_restart_leaves_resumable_work(
    tmp_path: Path, pdfs_dir: Path
) -> None:
    """Issue 14, defect 4: `rag doctor` must not fail a document the server will resume."""
    from typer.testing import CliRunner

    from cli.main import app as cli

    settings = fast_settings(tmp_path / "data")
    upload_dir = settings.data_dir / "uploads"
    upload_dir.mkdir(parents=True)
    services = build_services(settings)
    job_id = _leave_running_job(
        services, (pdfs_dir / LOREM).read_bytes(), LOREM, upload_dir, keep=True
    )
    services.close()
    env = {
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_EMBEDDING__MODEL": "hashing:256",
        "RAG_GENERATOR__BACKEND": "extractive",
    }

    result = CliRunner().invoke(cli, ["doctor", "--json"], env=env)
    assert result.exit_code == 0, result.stdout
    (check,) = json.loads(result.stdout)["collections"]
    assert check["consistent"] and check["stuck_documents"] == []
    assert len(check["resumable_documents"]) == 1
    listing = CliRunner().invoke(cli, ["docs", "list", "--json"], env=env)
    (doc,) = json.loads(listing.stdout)["documents"]
    assert doc["status"] in ("pending", "processing") and not doc["error"]

    with TestClient(create_app(settings)) as client:
        job = wait_job(client, job_id)
        assert job["status"] == "succeeded", job
        docs = client.get("/documents").json()
        assert docs["total"] == 1 and docs["documents"][0]["status"] == "ready"


def test_doctor_still_fails_documents_nothing_will_resume(tmp_path: Path, pdfs_dir: Path) -> None:
    settings = fast_settings(tmp_path / "data")
    upload_dir = settings.data_dir / "uploads"
    upload_dir.mkdir(parents=True)
    services = build_services(settings)
    _leave_running_job(
        services, (pdfs_dir / MULTILANG).read_bytes(), MULTILANG, upload_dir, keep=False
    )
    assert services.kb.check()[0].stuck_documents  # bytes gone: nothing will finish it
    assert len(services.kb.fail_interrupted_documents()) == 1
    assert all(c.consistent for c in services.kb.check())
    services.close()
