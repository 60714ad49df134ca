"""Queued uploads go through the one bulk ingest path, sharing embedding batches.

The worker takes every job queued behind the one it reaches (up to a group)
and hands them to ``IngestService.ingest_many`` together, so many small
uploads are embedded in one call, as ``rag ingest`` of a folder does. Each
job still ends on its own: ``succeeded`` with its document ``ready`` the
moment that document is committed, or ``failed`` with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from api.worker import IngestWorker, UploadedFile
from ingest.service import IngestService
from rag.protocols import Embedder
from rag.query.retrieval import RetrievalFilter
from rag.services import Services, build_services
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration


class CountingEmbedder:
    """The real test embedder, counting how many calls embed documents."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.embed_documents(texts)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(fast_settings(tmp_path / "data"))
    yield built
    built.close()


def _worker(services: Services, embedder: CountingEmbedder, tmp_path: Path) -> IngestWorker:
    ingest = IngestService(services.kb, embedder, services.settings.ingest)  # type: ignore[arg-type]
    return IngestWorker(services.kb, ingest, tmp_path / "uploads")


def _notes(count: int) -> list[UploadedFile]:
    return [
        UploadedFile(f"note-{i}.txt", f"Note {i}: the pump in room {i} was serviced.".encode())
        for i in range(count)
    ]


def test_queued_uploads_share_one_embedding_call_and_each_job_ends_on_its_own(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = CountingEmbedder(services.embedder)
    worker = _worker(services, embedder, tmp_path)
    monkeypatch.setattr(worker, "start", lambda: None)  # queue everything before the thread runs
    refs = worker.accept(_notes(10), "notes")
    monkeypatch.undo()
    worker.start()
    try:
        worker.stop(timeout=120)
    finally:
        worker.stop()
    jobs = [worker.get(ref["job_id"]) for ref in refs]
    assert [job["status"] for job in jobs] == ["succeeded"] * 10
    assert all(job["chunks_embedded"] == job["chunks_total"] == 1 for job in jobs)
    assert embedder.calls == [10], "ten one-chunk uploads should be embedded in one call"
    docs = {d.id: d for d in services.kb.list_documents("notes")[0]}
    assert {ref["document_id"] for ref in refs} == set(docs)
    assert {d.status for d in docs.values()} == {"ready"}
    found = services.retriever().retrieve(
        "which room was serviced? room 7", where=RetrievalFilter(collections=("notes",))
    )
    assert any("room 7" in hit.text for hit in found.hits)


def test_a_bad_upload_in_a_group_fails_alone(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdfs_dir: Path
) -> None:
    embedder = CountingEmbedder(services.embedder)
    worker = _worker(services, embedder, tmp_path)
    monkeypatch.setattr(worker, "start", lambda: None)
    files = _notes(3)
    # Admitted at the door (a PDF), refused when parsed: it needs a password.
    locked = (pdfs_dir / "encrypted_libreoffice-writer-password.pdf").read_bytes()
    files.insert(1, UploadedFile("locked.pdf", locked))
    refs = worker.accept(files, "notes")
    monkeypatch.undo()
    worker.start()
    worker.stop(timeout=120)
    statuses = {ref["filename"]: worker.get(ref["job_id"])["status"] for ref in refs}
    assert statuses.pop("locked.pdf") == "failed"
    assert set(statuses.values()) == {"succeeded"}
    locked_ref = next(r for r in refs if r["filename"] == "locked.pdf")
    job = worker.get(locked_ref["job_id"])
    assert job["error_code"] == "encrypted_document" and "password" in job["error"], job
    assert services.kb.get_document(locked_ref["document_id"]).status == "failed"


def test_collection_deleted_while_its_group_waits_cancels_the_rest(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = CountingEmbedder(services.embedder)
    worker = _worker(services, embedder, tmp_path)
    monkeypatch.setattr(worker, "start", lambda: None)
    refs = worker.accept(_notes(4), "notes")
    monkeypatch.undo()
    removed = worker.delete_collection("notes")  # the worker thread has not run yet
    worker.start()
    worker.stop(timeout=120)
    assert removed == 4
    jobs = [worker.get(ref["job_id"]) for ref in refs]
    assert {job["status"] for job in jobs} == {"failed"}
    assert {job["error_code"] for job in jobs} == {"cancelled"}
    assert not list((tmp_path / "uploads").iterdir())
