"""Workers claim ingest jobs from the database: disjoint claims, leases, retries, a cap.

Each test runs on SQLite and on the session's PostgreSQL 18. Lease expiry is
made by moving an injected clock past the lease, never by sleeping; a worker
"killed" mid-job is one whose ingestion raises a ``BaseException`` the worker
does not catch, so its job stays running under a lease nobody renews, as
after a kill -9.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.worker import ClaimPolicy, IngestWorker, UploadedFile
from ingest.service import build_ingest_service
from rag.blobs import SqlBlobStore, blobs_table
from rag.db.models import IngestJob, utcnow
from rag.services import Services, build_services
from tests.api.conftest import wait_job
from tests.conftest import fast_settings

pytestmark = pytest.mark.integration

LEASE = 30.0


class Killed(BaseException):
    """Stands for kill -9: nothing in the worker catches it."""


@dataclass
class Clock:
    """A clock the test moves; every worker of a test reads the same one."""

    now: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.now

    def pass_lease(self) -> None:
        self.now += timedelta(seconds=LEASE + 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite in the test's folder, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'rag.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def replicas(tmp_path: Path, database_url: str) -> Iterator[Callable[[], Services]]:
    """Factory of independent Services over the one database (each its own engine)."""
    built: list[Services] = []

    def make() -> Services:
        # One data folder on SQLite (one host); a folder each on PostgreSQL (other hosts).
        folder = "data" if database_url.startswith("sqlite") else f"replica{len(built)}"
        services = build_services(
            fast_settings(tmp_path / folder, database_url=database_url), recover=False
        )
        built.append(services)
        return services

    yield make
    for services in built:
        services.close()


def _worker(services: Services, clock: Clock, name: str, **policy: Any) -> IngestWorker:
    ingest = build_ingest_service(services)
    worker = IngestWorker(
        services.kb,
        ingest,
        services.kb.uploads,
        policy=ClaimPolicy(lease_seconds=LEASE, **policy),
        replica_id=name,
        clock=clock,
    )
    worker.start = lambda: None  # type: ignore[method-assign] # the test drives it
    return worker


def _notes(count: int, tag: str = "") -> list[UploadedFile]:
    return [
        UploadedFile(f"note{tag}-{i}.txt", f"Note {tag}{i}: pump {i} was serviced.".encode())
        for i in range(count)
    ]


def _killed_mid_job(worker: IngestWorker) -> IngestWorker:
    """Make ``worker`` die once its ingestion has started the first job of a group."""

    def ingest_many(files: Any, **_: Any) -> None:
        files[0]  # marks the job running: one attempt
        raise Killed

    worker.ingest.ingest_many = ingest_many  # type: ignore[method-assign]
    return worker


def _job(services: Services, job_id: str) -> IngestJob:
    with services.kb.sessions() as session:
        job = session.get(IngestJob, job_id)
        assert job is not None
        return job


def test_concurrent_claims_take_disjoint_jobs(replicas: Callable[[], Services]) -> None:
    first, second = replicas(), replicas()
    clock = Clock()
    a, b = _worker(first, clock, "replica-a"), _worker(second, clock, "replica-b")
    refs = a.accept(_notes(24), "notes")
    start = threading.Barrier(2)

    def drain(worker: IngestWorker) -> list[str]:
        start.wait()
        taken: list[str] = []
        while claimed := worker.claim(2):
            taken.extend(job.id for job in claimed)
        return taken

    with ThreadPoolExecutor(2) as pool:
        taken_a, taken_b = pool.map(drain, [a, b])
    assert not set(taken_a) & set(taken_b), "a job was claimed by both workers"
    assert sorted(taken_a + taken_b) == sorted(ref["job_id"] for ref in refs)
    for worker, taken in ((a, taken_a), (b, taken_b)):
        assert {_job(first, job_id).claimed_by for job_id in taken} <= {worker.replica_id}


def _claim_in_a_process(data_dir: str, database_url: str, name: str, start: Any) -> list[str]:
    """A second process's worker: claim one job at a time until none is left."""
    services = build_services(
        fast_settings(Path(data_dir), database_url=database_url), recover=False
    )
    try:
        worker = _worker(services, Clock(), name)
        start.wait(120)  # both processes begin claiming together
        taken: list[str] = []
        while claimed := worker.claim(1):
            taken.extend(job.id for job in claimed)
        return taken
    finally:
        services.close()


def test_two_processes_claim_disjoint_jobs(
    replicas: Callable[[], Services], tmp_path: Path, database_url: str
) -> None:
    services = replicas()
    refs = _worker(services, Clock(), "replica-a").accept(_notes(30), "notes")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(2) as pool:
        start = manager.Barrier(3)
        folders = [str(services.settings.data_dir)] * 2
        if database_url.startswith("postgresql"):
            folders = [str(tmp_path / "process0"), str(tmp_path / "process1")]
        results = [
            pool.apply_async(_claim_in_a_process, (folder, database_url, f"process-{i}", start))
            for i, folder in enumerate(folders)
        ]
        start.wait(120)
        first, second = (result.get(timeout=120) for result in results)
    assert not set(first) & set(second), "a job was claimed by both processes"
    assert sorted(first + second) == sorted(ref["job_id"] for ref in refs)


def test_two_running_workers_process_every_job_exactly_once(
    replicas: Callable[[], Services],
) -> None:
    first, second = replicas(), replicas()
    clock = Clock()
    workers = [
        _worker(first, clock, "replica-a", claim_batch=2, poll_seconds=0.05),
        _worker(second, clock, "replica-b", claim_batch=2, poll_seconds=0.05),
    ]
    processed: dict[str, list[str]] = {"replica-a": [], "replica-b": []}
    for worker in workers:
        reached = worker._upload

        def recording(job: Any, worker: IngestWorker = worker, reached: Any = reached) -> Any:
            processed[worker.replica_id].append(job.id)
            return reached(job)

        worker._upload = recording  # type: ignore[method-assign]
    refs = workers[0].accept(_notes(8, "a"), "notes") + workers[1].accept(_notes(8, "b"), "notes")
    for worker in workers:
        IngestWorker.start(worker)
    try:
        for ref in refs:
            worker = workers[0]
            deadline = utcnow() + timedelta(seconds=120)
            while worker.get(ref["job_id"])["status"] in ("queued", "running"):
                assert utcnow() < deadline, ref
                threading.Event().wait(0.05)
    finally:
        for worker in workers:
            worker.stop()
    every = processed["replica-a"] + processed["replica-b"]
    assert sorted(every) == sorted(ref["job_id"] for ref in refs), "each job exactly once"
    for ref in refs:
        job = _job(first, ref["job_id"])
        assert (job.status, job.attempts, job.claimed_by) == ("succeeded", 1, None), ref
    assert {d.status for d in first.kb.list_documents("notes")[0]} == {"ready"}


def test_a_dead_workers_job_is_taken_back_after_its_lease_and_finished(
    replicas: Callable[[], Services],
) -> None:
    first, second = replicas(), replicas()
    clock = Clock()
    dead = _killed_mid_job(_worker(first, clock, "replica-dead"))
    (ref,) = dead.accept(_notes(1), "notes")
    with pytest.raises(Killed):
        dead.run_once()
    assert (_job(first, ref["job_id"]).status, _job(first, ref["job_id"]).attempts) == (
        "running",
        1,
    )

    other = _worker(second, clock, "replica-b")
    assert other.run_once() == 0, "a running job under a live lease is not taken"
    clock.pass_lease()
    assert other.run_once() == 1
    job = _job(second, ref["job_id"])
    assert (job.status, job.attempts, job.claimed_by, job.error) == ("succeeded", 2, None, None)
    assert second.kb.get_document(ref["document_id"]).status == "ready"
    assert not other.uploads.exists(ref["job_id"]), "the upload bytes are dropped once done"
    # The dead worker's leases are gone: a late heartbeat from it renews nothing.
    assert dead.renew_leases() == 0


def test_a_job_that_keeps_killing_its_workers_fails_after_the_attempt_cap(
    replicas: Callable[[], Services],
) -> None:
    services = replicas()
    clock = Clock()
    first = _killed_mid_job(_worker(services, clock, "replica-0", max_attempts=3))
    (ref,) = first.accept(_notes(1), "notes")
    for attempt in range(3):
        worker = _killed_mid_job(_worker(services, clock, f"replica-{attempt}", max_attempts=3))
        with pytest.raises(Killed):
            worker.run_once()
        assert _job(services, ref["job_id"]).attempts == attempt + 1
        clock.pass_lease()

    last = _worker(replicas(), clock, "replica-last", max_attempts=3)
    assert last.run_once() == 1
    job = _job(services, ref["job_id"])
    assert (job.status, job.error_code, job.claimed_by) == ("failed", "interrupted", None)
    assert "3 times" in (job.error or "")
    doc = services.kb.get_document(ref["document_id"])
    assert doc.status == "failed" and "3 times" in (doc.error or "")
    assert not last.uploads.exists(ref["job_id"])
    assert last.run_once() == 0, "a failed job is never claimed again"


def test_a_password_upload_stays_with_its_replica_and_fails_when_it_dies(
    replicas: Callable[[], Services],
) -> None:
    services = replicas()
    clock = Clock()
    holder = _worker(services, clock, "replica-holder")
    (ref,) = holder.accept(_notes(1), "notes", password="secret")
    other = _worker(replicas(), clock, "replica-b")
    assert other.run_once() == 0, "only the replica holding the password may take it"
    clock.pass_lease()  # the holder died: nobody renewed its hold
    assert other.run_once() == 1
    job = _job(services, ref["job_id"])
    assert job.status == "failed" and "password" in (job.error or "")


def test_an_upload_through_http_is_ingested_and_its_bytes_dropped(
    tmp_path: Path, database_url: str, pdfs_dir: Path
) -> None:
    settings = fast_settings(tmp_path / "data", database_url=database_url)
    with TestClient(create_app(settings)) as client:
        pdf = pdfs_dir / "en_multicolumn_latex-lorem.pdf"
        response = client.post(
            "/documents", files=[("files", (pdf.name, pdf.read_bytes(), "application/pdf"))]
        )
        assert response.status_code == 202, response.text
        (ref,) = response.json()["jobs"]
        job = wait_job(client, ref["job_id"])
        assert job["status"] == "succeeded", job
        kb = client.app.state.rag.services.kb
        if database_url.startswith("postgresql"):
            with kb.sessions() as session:  # the bytes waited in the table every replica reads
                keys = session.scalars(select(blobs_table.c.key)).all()
            assert keys == [f"files/{job['document_id']}"]  # only the original stays
            assert isinstance(client.app.state.rag.worker.uploads.inner, SqlBlobStore)
        else:
            assert list((settings.data_dir / "uploads").iterdir()) == []


def test_a_renewed_lease_keeps_the_job_from_other_workers(
    replicas: Callable[[], Services],
) -> None:
    services = replicas()
    clock = Clock()
    holder = _worker(services, clock, "replica-holder")
    (ref,) = holder.accept(_notes(1), "notes")
    assert [job.id for job in holder.claim(5)] == [ref["job_id"]]
    other = _worker(replicas(), clock, "replica-b")
    clock.now += timedelta(seconds=LEASE * 2 / 3)
    assert holder.renew_leases() == 1  # what the heartbeat does every third of the lease
    clock.now += timedelta(seconds=LEASE * 2 / 3)  # past the first lease, within the renewed one
    assert other.claim(5) == []
    clock.pass_lease()
    assert [job.id for job in other.claim(5)] == [ref["job_id"]]
