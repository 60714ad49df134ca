"""Uploads become ingest jobs, claimed from the database by any replica's worker.

An upload is validated (size, type, emptiness) before anything is queued; its
bytes go to a :class:`rag.blobs.BlobStore` under the job's id (never under the
client's file name): files in ``data_dir/uploads`` on one host, the ``blobs``
table where replicas share a PostgreSQL database, so any replica can ingest
it. Progress goes to the job's row, which ``GET /jobs/{id}`` reads.

The ``ingest_jobs`` table is the queue. A worker claims up to a group of
unheld jobs at a time (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
two replicas never take the same job; one atomic ``UPDATE ... RETURNING`` on
SQLite) and holds them with a lease (``claimed_by``, ``lease_until``) that a
heartbeat thread renews while the process lives. A job whose lease has passed
(its holder was killed) is taken back by any worker and ingested again from
its upload bytes; ``attempts`` counts the starts, and a job started
``max_attempts`` times without finishing fails with the reason instead of
killing workers forever. Every write a worker makes to a job it processes is
fenced by ``claimed_by``, so a worker that lost its lease changes nothing.
Local uploads wake the local worker at once; other replicas' uploads are found
by polling every ``poll_seconds``.

A job uploaded with a password stays with the replica that received it
(passwords live in its memory only): it is held by that replica from the
start, and fails with the reason when that replica dies.

On start (SQLite, no other process ingesting into the data folder) jobs a
previous process left ``queued`` or ``running`` are queued again when their
upload bytes still exist, and failed with the reason when they do not, so
nothing stays in progress forever. On PostgreSQL only jobs nobody holds are
settled this way; held ones are left to their lease.

A refused upload stores nothing. The same bytes uploaded again while their
first upload is still queued or running get the first upload's job.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, overload

from sqlalchemy import ColumnElement, Table, and_, or_, select, update

from ingest.service import IngestOutcome, IngestProgress, IngestService, Upload, display_name
from rag.blobs import BlobNotFound, BlobStore, LocalBlobStore
from rag.consistency import job_resume_blocker
from rag.db.models import Document, DocumentStatus, IngestJob, JobStatus, new_id, utcnow
from rag.errors import (
    Conflict,
    DocumentNotFound,
    DuplicateDocument,
    IngestCancelled,
    InvalidInput,
    JobNotFound,
    RagError,
)
from rag.knowledge_base import KnowledgeBase, validate_collection_name

log = logging.getLogger(__name__)

# How often an idle worker looks for a due index checkpoint.
_IDLE_CHECK_S = 1.0

# Most queued uploads taken into one bulk ingest (they share embedding batches).
_GROUP_FILES = 64

INTERRUPTED = "interrupted"
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_JOBS: Table = IngestJob.__table__  # type: ignore[assignment]


def new_replica_id() -> str:
    """``host:pid:random``: names the worker holding a job, unique across hosts and restarts."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ClaimPolicy:
    """How workers share the job table.

    Attributes:
        poll_seconds: How often an idle worker looks for jobs other replicas
            received (its own uploads wake it at once).
        lease_seconds: How long a claim holds without renewal; the holder
            renews it every third of that, so a job of a killed replica is
            taken back after at most this long.
        max_attempts: Starts after which a job that never finished fails.
        claim_batch: Most jobs one claim takes (they share embedding batches;
            fewer spreads a burst of uploads over more replicas).
    """

    poll_seconds: float = 0.5
    lease_seconds: float = 30.0
    max_attempts: int = 3
    claim_batch: int = _GROUP_FILES

    def __post_init__(self) -> None:
        if not 0 < self.poll_seconds <= 60:
            raise InvalidInput(
                f"poll_seconds must be above 0 and at most 60, got {self.poll_seconds}"
            )
        if not self.lease_seconds >= 1:
            raise InvalidInput(f"lease_seconds must be at least 1, got {self.lease_seconds}")
        if not 1 <= self.max_attempts <= 100:
            raise InvalidInput(f"max_attempts must be between 1 and 100, got {self.max_attempts}")


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload: the client's name (display only) and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class _Job:
    """What processing needs of one queued job's row."""

    id: str
    collection: str
    filename: str
    document_id: str | None
    has_upload: bool
    replace: bool | None
    has_password: bool
    attempts: int


class _JobUploads(Sequence[Upload]):
    """Jobs as ingest items, each read from disk (and marked running) when reached."""

    def __init__(self, worker: IngestWorker, jobs: Sequence[_Job]) -> None:
        self._worker = worker
        self._jobs = jobs

    def __len__(self) -> int:
        return len(self._jobs)

    @overload
    def __getitem__(self, index: int) -> Upload: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Upload]: ...
    def __getitem__(self, index: int | slice) -> Upload | Sequence[Upload]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._worker._upload(self._jobs[index])


def job_to_dict(job: IngestJob) -> dict[str, Any]:
    """The API shape of a job row."""
    return {
        "id": job.id,
        "status": job.status,
        "filename": job.filename,
        "collection": job.collection,
        "document_id": job.document_id,
        "pages_parsed": job.pages_parsed,
        "chunks_total": job.chunks_total,
        "chunks_embedded": job.chunks_embedded,
        "error": job.error,
        "error_code": job.error_code,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


class IngestWorker:
    """Accepts uploads, claims jobs from the database, ingests them in a background thread.

    Args:
        kb: The knowledge base.
        ingest: The ingestion service (one writer per collection is guaranteed by the core).
        uploads: Where upload bytes wait until their job ends, keyed by job id
            (a folder means a :class:`rag.blobs.LocalBlobStore` on it).
        policy: Polling, lease and retry settings.
        replica_id: Names this worker on the jobs it holds (default: host, pid, random).
        clock: The time leases are measured with (tests move it forward).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        ingest: IngestService,
        uploads: BlobStore | Path,
        *,
        policy: ClaimPolicy | None = None,
        replica_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.kb = kb
        self.ingest = ingest
        self.uploads: BlobStore = LocalBlobStore(uploads) if isinstance(uploads, Path) else uploads
        self.policy = policy or ClaimPolicy()
        self.replica_id = replica_id or new_replica_id()
        self.clock = clock
        # Wake-up signals: a local upload's job id, or None to stop. The table is the truth.
        self._queue: queue.Queue[str | None] = queue.Queue()
        # Passwords stay in memory only: they are never written to disk.
        self._passwords: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # The collection of the job being processed, and collections being
        # deleted (their running job stops at its next progress report).
        self._state = threading.Condition()
        self._current_collection: str | None = None
        self._deleting: set[str] = set()
        # Jobs claimed and not yet ended: never claimed again by this worker.
        self._in_hand: set[str] = set()

    @property
    def _dialect(self) -> str:
        return self.kb.engine.dialect.name

    def _lease_end(self) -> datetime:
        return self.clock() + timedelta(seconds=self.policy.lease_seconds)

    # ------------------------------------------------------------- lifecycle
    def recover(self) -> tuple[list[str], list[str]]:
        """Queue again or fail the upload jobs a previous process left unfinished.

        Alone (no other process holds the ingest lock: on SQLite a file lock in
        the data folder, on PostgreSQL an advisory lock every replica holds
        while it runs) every unfinished job is settled and documents left
        without a job are failed. On PostgreSQL with other replicas alive only
        jobs nobody holds (no lease, or a lapsed one) are settled, and
        documents are not touched beyond those jobs'. On SQLite with another
        process ingesting nothing is done.

        Returns:
            (ids of re-queued jobs, ids of failed jobs). Both empty on SQLite when
            another process is ingesting into the same data folder (its jobs are alive).
        """
        exclusive = self.kb.ingest_lock.try_exclusive()
        if self._dialect == "sqlite" and not exclusive:
            log.info("another process is ingesting; not recovering jobs")
            return [], []
        requeued: list[str] = []
        failed: list[str] = []
        keep_docs: list[str] = []
        now = self.clock()
        try:
            with self.kb.sessions.begin() as session:
                query = (
                    select(IngestJob)
                    .where(IngestJob.status.in_(_ACTIVE), IngestJob.upload_path.is_not(None))
                    .order_by(IngestJob.created_at)
                )
                if not exclusive:
                    query = query.where(unheld(now)).with_for_update(skip_locked=True)
                for job in session.scalars(query).all():
                    reason = job_resume_blocker(
                        session, job, self.uploads, passwords=self._passwords
                    )
                    if reason is None:
                        job.status = JobStatus.QUEUED.value
                        job.claimed_by = None
                        job.lease_until = None
                        requeued.append(job.id)
                        if job.document_id:
                            keep_docs.append(job.document_id)
                            doc = session.get(Document, job.document_id)
                            if doc is not None:
                                doc.status = DocumentStatus.PENDING.value
                    else:
                        self._fail_row(session, job, reason, INTERRUPTED)
                        failed.append(job.id)
            if exclusive:
                self._sweep_uploads(set(requeued))
        finally:
            if exclusive:
                self.kb.ingest_lock.release()
        for job_id in failed:
            self.uploads.delete(job_id)
        if exclusive:
            # Documents left pending/processing without a job to resume are failed.
            self.kb.fail_interrupted_documents(exclude=keep_docs)
        for job_id in requeued:
            self._queue.put(job_id)
        if requeued or failed:
            log.warning("jobs recovered requeued=%d failed=%d", len(requeued), len(failed))
        return requeued, failed

    def _sweep_uploads(self, keep: set[str]) -> None:
        """Delete upload bytes no unfinished job needs (single host, nobody else ingesting)."""
        with self.kb.sessions() as session:
            live = set(session.scalars(select(IngestJob.id).where(IngestJob.status.in_(_ACTIVE))))
        for key in self.uploads.keys():
            if key not in keep and key not in live:
                self.uploads.delete(key)  # bytes of a job that no longer exists

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs signalled so far and stop; the others stay queued for any worker.

        The jobs this worker still holds are released (their lease cleared),
        so another replica takes them at once instead of after the lease.
        """
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        # Holding ingest.lock shared tells other processes' start-up recovery
        # that this server's pending documents are alive.
        beating = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(beating,), name="ingest-lease", daemon=True
        )
        with self.kb.ingest_lock.hold(shared=True):
            heartbeat.start()
            try:
                self._loop()
            finally:
                beating.set()
                heartbeat.join()
                self._release_held()

    def _loop(self) -> None:
        found_work = True  # look at once on start
        last_checkpoint = time.monotonic()
        while True:
            signalled, stop = self._wait(block=not found_work)
            if stop and not signalled:
                return
            try:
                found_work = self.run_once() > 0
            except Exception:  # noqa: BLE001 - the database may be back on the next poll
                log.exception("claiming ingest jobs failed replica=%s", self.replica_id)
                found_work = False
            if not found_work and time.monotonic() - last_checkpoint >= _IDLE_CHECK_S:
                last_checkpoint = time.monotonic()
                self._checkpoint()
            if stop:
                return

    def _wait(self, *, block: bool) -> tuple[bool, bool]:
        """Wait up to a poll interval for a signal (not at all unless ``block``), then drain.

        Returns:
            (whether a job was signalled before any stop, whether stop was asked).
        """
        signalled = False
        try:
            first = self._queue.get(timeout=self.policy.poll_seconds) if block else None
        except queue.Empty:
            return False, False
        if block:
            if first is None:
                return False, True
            signalled = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return signalled, False
            if item is None:
                return signalled, True
            signalled = True

    def run_once(self) -> int:
        """Claim one group of free jobs and ingest it (what the worker thread repeats).

        Returns:
            How many jobs were claimed (0: nothing to do).
        """
        jobs = self.claim(self.policy.claim_batch)
        if jobs:
            try:
                self._process_claimed(jobs)
            finally:
                self._in_hand.difference_update(job.id for job in jobs)
        return len(jobs)

    def _process_claimed(self, jobs: Sequence[_Job]) -> None:
        try:
            self._process(jobs)
        except Exception:  # noqa: BLE001 - the worker must survive any one job
            log.exception("ingest jobs crashed job_ids=%s", [job.id for job in jobs])
            for crashed in jobs:
                self._finish_if_active(
                    crashed.id, None, "internal error while ingesting", "internal_error"
                )
        finally:
            with self._state:
                self._current_collection = None
                self._state.notify_all()

    def _heartbeat(self, done: threading.Event) -> None:
        """Renew the leases of every job this worker holds until ``done``."""
        interval = self.policy.lease_seconds / 3
        while not done.wait(interval):
            try:
                self.renew_leases()
            except Exception:  # noqa: BLE001 - retried next beat; the lease covers two misses
                log.exception("renewing job leases failed replica=%s", self.replica_id)

    def renew_leases(self) -> int:
        """Push the lease of every unfinished job this worker holds forward; returns how many."""
        with self.kb.sessions.begin() as session:
            result = session.execute(
                update(_JOBS)
                .where(_JOBS.c.claimed_by == self.replica_id, _JOBS.c.status.in_(_ACTIVE))
                .values(lease_until=self._lease_end())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def _release_held(self) -> None:
        """Let go of queued jobs this worker claimed but did not start (a clean stop)."""
        try:
            with self.kb.sessions.begin() as session:
                session.execute(
                    update(_JOBS)
                    .where(
                        _JOBS.c.claimed_by == self.replica_id,
                        _JOBS.c.status == JobStatus.QUEUED.value,
                        # A password job stays with this process, which holds its password.
                        _JOBS.c.id.not_in(list(self._passwords)),
                    )
                    .values(claimed_by=None, lease_until=None)
                )
        except Exception:  # noqa: BLE001 - the leases lapse on their own
            log.exception("releasing held jobs failed replica=%s", self.replica_id)

    def _checkpoint(self) -> None:
        """While idle, save index files whose checkpoint is due (the journal covers them)."""
        try:
            self.kb.checkpoint()
        except Exception:  # noqa: BLE001 - a failed save is retried; the journal is durable
            log.exception("index checkpoint failed")

    # -------------------------------------------------------------- claiming
    def claim(self, limit: int) -> list[_Job]:
        """Take up to ``limit`` jobs nobody holds, oldest first, and hold them.

        A job is free when it is queued and unheld (or held by this worker
        and not in hand: its own password uploads), or running under a lease
        that has passed (its worker died). Claimed jobs are ``queued``
        and held by this worker until it starts them. On PostgreSQL the
        candidates are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
        claims take disjoint jobs; SQLite runs the one ``UPDATE`` under its
        database write lock, which makes it a compare-and-set.

        Returns:
            The claimed jobs, oldest first.
        """
        now = self.clock()
        free = (
            select(_JOBS.c.id)
            .where(self._claimable(now))
            .order_by(_JOBS.c.created_at, _JOBS.c.id)
            .limit(limit)
        )
        if self._dialect == "postgresql":
            free = free.with_for_update(skip_locked=True)
        statement = (
            update(_JOBS)
            .where(_JOBS.c.id.in_(free.scalar_subquery()), self._claimable(now))
            .values(
                status=JobStatus.QUEUED.value,
                claimed_by=self.replica_id,
                lease_until=now + timedelta(seconds=self.policy.lease_seconds),
            )
            .returning(_JOBS.c.id)
        )
        with self.kb.sessions() as session:
            # A read first: an idle poll then takes no write lock (SQLite) or row locks.
            if session.scalar(select(_JOBS.c.id).where(self._claimable(now)).limit(1)) is None:
                return []
        with self.kb.sessions.begin() as session:
            ids = list(session.execute(statement).scalars())
            if not ids:
                return []
            rows = session.scalars(
                select(IngestJob)
                .where(IngestJob.id.in_(ids))
                .order_by(IngestJob.created_at, IngestJob.id)
            ).all()
            jobs = [
                _Job(
                    row.id,
                    row.collection,
                    row.filename,
                    row.document_id,
                    bool(row.upload_path),
                    dict(row.options or {}).get("replace"),
                    bool(dict(row.options or {}).get("has_password")),
                    row.attempts or 0,
                )
                for row in rows
            ]
        self._in_hand.update(job.id for job in jobs)
        log.info("jobs claimed replica=%s count=%d", self.replica_id, len(jobs))
        return jobs

    def _claimable(self, now: datetime) -> ColumnElement[bool]:
        return and_(
            _JOBS.c.upload_path.is_not(None),  # upload jobs (re-embedding jobs have none)
            or_(
                and_(
                    _JOBS.c.status == JobStatus.QUEUED.value,
                    or_(
                        unheld(now),
                        and_(
                            _JOBS.c.claimed_by == self.replica_id,
                            _JOBS.c.id.not_in(sorted(self._in_hand)),
                        ),
                    ),
                ),
                and_(
                    _JOBS.c.status == JobStatus.RUNNING.value,
                    or_(_JOBS.c.lease_until.is_(None), _JOBS.c.lease_until < now),
                ),
            ),
        )

    # ----------------------------------------------------------- collections
    def delete_collection(self, name: str, timeout: float = 120.0) -> int:
        """Delete a collection after cancelling its queued and running jobs.

        Queued jobs of the collection fail with code ``cancelled``; a running
        one stops at its next progress report (per page or embedding batch)
        and this waits for it, so no job ever finds its collection gone.

        Returns:
            The number of documents removed.

        Raises:
            CollectionNotFound: No such collection.
            Conflict: The running job did not stop within ``timeout`` seconds.
        """
        self.kb.get_collection(name)
        with self._state:
            self._deleting.add(name)
        try:
            self._cancel_queued(name)
            deadline = time.monotonic() + timeout
            with self._state:
                while self._current_collection == name:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Conflict(
                            f"collection {name!r} is busy ingesting a file; try again shortly"
                        )
                    self._state.wait(left)
            return self.kb.delete_collection(name)
        finally:
            with self._state:
                self._deleting.discard(name)

    def _cancel_queued(self, collection: str) -> None:
        with self.kb.sessions.begin() as session:
            jobs = session.scalars(
                select(IngestJob).where(
                    IngestJob.collection == collection,
                    IngestJob.status == JobStatus.QUEUED.value,
                    IngestJob.upload_path.is_not(None),
                )
            ).all()
            for job in jobs:
                job.status = JobStatus.FAILED.value
                job.error = f"cancelled: collection {collection!r} was deleted"
                job.error_code = IngestCancelled.code
                job.claimed_by = None
                job.lease_until = None
        for job in jobs:
            self.uploads.delete(job.id)
            self._passwords.pop(job.id, None)

    # --------------------------------------------------------------- uploads
    def accept(
        self,
        files: Sequence[UploadedFile],
        collection: str | None,
        *,
        password: str | None = None,
        replace: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Validate every file, then queue them all (or none).

        Returns:
            One ``{"job_id", "document_id", "filename", "status"}`` per file.

        Raises:
            InvalidInput: No files or a bad collection name.
            FileTooLarge, UnsupportedFileType, EmptyDocument, EncryptedDocument,
                ParseError: A file is refused at the door (nothing is stored or queued).
        """
        if not files:
            raise InvalidInput("no files: send one or more files in the multipart field 'files'")
        name = collection or self.ingest.settings.default_collection
        validate_collection_name(name)
        files = [UploadedFile(display_name(f.filename), f.data) for f in files]
        for upload in files:
            try:
                self.ingest.admit(upload.data, upload.filename, password)
            except RagError as exc:
                log.info("upload refused filename=%s code=%s", upload.filename, exc.code)
                raise
        self.kb.create_collection(name, exist_ok=True)
        return [self._enqueue(upload, name, password, replace) for upload in files]

    def _enqueue(
        self, upload: UploadedFile, collection: str, password: str | None, replace: bool | None
    ) -> dict[str, Any]:
        job_id = new_id()
        self.uploads.put(job_id, upload.data)  # before the job row that points at it
        if password:
            # Before the row exists: a worker that claims it must find the password.
            self._passwords[job_id] = password

        def job_row(doc_id: str) -> list[IngestJob]:
            return [
                IngestJob(
                    id=job_id,
                    collection=collection,
                    filename=upload.filename,
                    document_id=doc_id,
                    status=JobStatus.QUEUED.value,
                    upload_path=self.uploads.locate(job_id),
                    options={"replace": replace, "has_password": bool(password)},
                    # Only this process knows the password: it holds the job from the start.
                    claimed_by=self.replica_id if password else None,
                    lease_until=self._lease_end() if password else None,
                )
            ]

        try:
            doc = self.ingest.begin(
                upload.data,
                upload.filename,
                collection,
                status=DocumentStatus.PENDING.value,
                extra_rows=job_row,
            )
        except DuplicateDocument as exc:
            self._forget_upload(job_id)
            return self._existing_ref(job_id, exc.existing, upload.filename, collection)
        except BaseException:
            self._forget_upload(job_id)
            raise
        self.start()
        self._queue.put(job_id)
        log.info("job queued job_id=%s doc_id=%s", job_id, doc.id)
        return self._ref(job_id, doc.id, upload.filename, JobStatus.QUEUED.value)

    def _forget_upload(self, job_id: str) -> None:
        self._passwords.pop(job_id, None)
        self.uploads.delete(job_id)

    def _existing_ref(
        self, job_id: str, existing: Any, filename: str, collection: str
    ) -> dict[str, Any]:
        """The job for bytes already in the collection: the one ingesting them, if any.

        Otherwise (the document is ready, or another process ingests it) a
        job that succeeded at once with the ``existing`` option is recorded.
        """
        with self.kb.sessions.begin() as session:
            live = session.scalar(
                select(IngestJob)
                .where(IngestJob.document_id == existing.id, IngestJob.status.in_(_ACTIVE))
                .order_by(IngestJob.created_at)
            )
            if live is not None:
                return self._ref(live.id, existing.id, live.filename, live.status)
            session.add(
                IngestJob(
                    id=job_id,
                    collection=collection,
                    filename=filename,
                    document_id=existing.id,
                    status=JobStatus.SUCCEEDED.value,
                    pages_parsed=existing.pages,
                    chunks_total=existing.chunks,
                    chunks_embedded=existing.chunks,
                    options={"existing": True},
                )
            )
        return self._ref(job_id, existing.id, filename, JobStatus.SUCCEEDED.value)

    @staticmethod
    def _ref(job_id: str, doc_id: str | None, filename: str, status: str) -> dict[str, Any]:
        return {"job_id": job_id, "document_id": doc_id, "filename": filename, "status": status}

    # ------------------------------------------------------------------ jobs
    def get(self, job_id: str) -> dict[str, Any]:
        """One job as a dict (JobNotFound if unknown)."""
        with self.kb.sessions() as session:
            job = session.get(IngestJob, job_id)
            if job is None:
                raise JobNotFound(f"no ingest job with id {job_id!r}")
            return job_to_dict(job)

    def _update_held(self, job_id: str, **fields: Any) -> bool:
        """Write ``fields`` to a job this worker still holds; False (nothing written) if not."""
        with self.kb.sessions.begin() as session:
            result = session.execute(
                update(_JOBS)
                .where(
                    _JOBS.c.id == job_id,
                    _JOBS.c.claimed_by == self.replica_id,
                    _JOBS.c.status.in_(_ACTIVE),
                )
                .values(updated_at=utcnow(), **fields)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _process(self, jobs: Sequence[_Job]) -> None:
        """Ingest claimed jobs through the one bulk path, grouped by collection and options."""
        groups: dict[tuple[str, bool | None], list[_Job]] = {}
        for job in jobs:
            if self._runnable(job):
                groups.setdefault((job.collection, job.replace), []).append(job)
        for (collection, replace), group in groups.items():
            with self._state:
                if collection in self._deleting:
                    cancelled = True
                else:
                    cancelled = False
                    self._current_collection = collection
            if cancelled:
                for job in group:
                    self._finish(
                        job.id,
                        job.document_id,
                        "cancelled: its collection is being deleted",
                        "cancelled",
                    )
                continue

            def on_outcome(
                position: int, outcome: IngestOutcome, group: list[_Job] = group
            ) -> None:
                self._complete(group[position].id, outcome)

            try:
                self.ingest.ingest_many(
                    _JobUploads(self, group),
                    collection=collection,
                    replace=replace,
                    on_outcome=on_outcome,
                    group_chunks=self.ingest.progress_chunks,
                )
            except RagError as exc:  # e.g. the collection was deleted mid-ingestion
                for job in group:
                    self._finish_if_active(job.id, job.document_id, exc.message, exc.code)
            finally:
                with self._state:
                    self._current_collection = None
                    self._state.notify_all()

    def _runnable(self, job: _Job) -> bool:
        """True if the claimed job can run now; otherwise it is finished with the reason."""
        if job.attempts >= self.policy.max_attempts:
            self._finish(
                job.id,
                job.document_id,
                f"ingestion was started {job.attempts} times and its worker stopped each time "
                "before it finished; upload the file again (the server log says what stopped it)",
                INTERRUPTED,
            )
            return False
        try:
            doc = self.kb.get_document(job.document_id or "")
        except DocumentNotFound:
            self._finish(job.id, None, "the document was deleted before ingestion", "cancelled")
            return False
        if doc.status == DocumentStatus.READY.value:
            # Its last worker was killed after committing the document, before ending the job.
            self._succeed(job.id, doc.id, doc.pages, doc.chunks)
            return False
        if not job.has_upload or not self.uploads.exists(job.id):
            self._finish(
                job.id, job.document_id, "the uploaded bytes are gone; upload again", INTERRUPTED
            )
            return False
        if job.has_password and job.id not in self._passwords:
            self._finish(
                job.id,
                job.document_id,
                "ingestion was interrupted; passwords are not kept across restarts, so upload "
                "the file again with its password",
                INTERRUPTED,
            )
            return False
        return True

    def _upload(self, job: _Job) -> Upload:
        """The job's bytes as an ingest item, its progress going to the job's row.

        Marks the job running (one more attempt) if this worker still holds it.

        Raises:
            IngestCancelled: The job stopped being queued or held by this worker
                while its group waited (its collection is being deleted, or its
                lease lapsed and another worker took it).
            BlobNotFound: Its upload bytes are gone.
        """
        with self.kb.sessions.begin() as session:
            started = session.execute(
                update(_JOBS)
                .where(
                    _JOBS.c.id == job.id,
                    _JOBS.c.claimed_by == self.replica_id,
                    _JOBS.c.status == JobStatus.QUEUED.value,
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    attempts=_JOBS.c.attempts + 1,
                    lease_until=self._lease_end(),
                    updated_at=utcnow(),
                )
            ).rowcount  # type: ignore[attr-defined]
        if not started:
            raise IngestCancelled(
                "cancelled: the job was cancelled or taken over by another worker while it waited"
            )
        try:
            data = self.uploads.get(job.id)
        except BlobNotFound as exc:
            raise BlobNotFound("the uploaded bytes are gone; upload again") from exc

        written = (0, 0, 0)  # what the job row shows; a report that changes none is not written

        def progress(p: IngestProgress) -> None:
            nonlocal written
            if job.collection in self._deleting:
                raise IngestCancelled(f"cancelled: collection {job.collection!r} is being deleted")
            shown = (p.pages_parsed, p.chunks_total, p.chunks_embedded)
            if shown == written or p.stage in ("indexing", "done"):
                return  # one durable transaction fewer; completion writes the final figures
            written = shown
            held = self._update_held(
                job.id,
                pages_parsed=p.pages_parsed,
                chunks_total=p.chunks_total,
                chunks_embedded=p.chunks_embedded,
                lease_until=self._lease_end(),
            )
            if not held:
                raise IngestCancelled(
                    "cancelled: this worker's lease on the job lapsed and another worker took it"
                )

        return Upload(
            job.filename,
            data,
            document_id=job.document_id,
            password=self._passwords.get(job.id),
            progress=progress,
        )

    def _complete(self, job_id: str, outcome: IngestOutcome) -> None:
        if outcome.ok:
            self._succeed(job_id, outcome.document_id, outcome.pages, outcome.chunks)
        else:
            self._finish(job_id, outcome.document_id, outcome.error or "", outcome.error_code)

    def _holds(self, job_id: str) -> bool:
        """True while this worker holds the unfinished job."""
        with self.kb.sessions() as session:
            found = session.scalar(
                select(_JOBS.c.id).where(
                    _JOBS.c.id == job_id,
                    _JOBS.c.claimed_by == self.replica_id,
                    _JOBS.c.status.in_(_ACTIVE),
                )
            )
        return found is not None

    def _drop_upload(self, job_id: str) -> None:
        """Delete a held job's bytes before its row ends, so an ended job never has any.

        A worker killed in between leaves a held job whose bytes are gone: the
        next claim finds its document ready (succeeded) or fails it (bytes gone).
        """
        if self._holds(job_id):
            self.uploads.delete(job_id)

    def _succeed(self, job_id: str, doc_id: str | None, pages: int, chunks: int) -> None:
        self._drop_upload(job_id)
        ended = self._update_held(
            job_id,
            status=JobStatus.SUCCEEDED.value,
            document_id=doc_id,
            pages_parsed=pages,
            chunks_total=chunks,
            chunks_embedded=chunks,
            error=None,
            error_code=None,
            claimed_by=None,
            lease_until=None,
        )
        self._passwords.pop(job_id, None)
        if ended:
            log.info("job succeeded job_id=%s doc_id=%s", job_id, doc_id)

    def _finish_if_active(
        self, job_id: str, doc_id: str | None, error: str, code: str | None
    ) -> None:
        """Fail the job unless it already ended (a group's other jobs may have)."""
        self._finish(job_id, doc_id, error, code)

    def _finish(self, job_id: str, doc_id: str | None, error: str, code: str | None) -> None:
        """Fail a job this worker holds (and its unfinished document) and drop its bytes.

        A job that already ended, or that another worker took over, is left alone.
        """
        self._drop_upload(job_id)
        ended = self._update_held(
            job_id,
            status=JobStatus.FAILED.value,
            error=error,
            error_code=code,
            claimed_by=None,
            lease_until=None,
        )
        self._passwords.pop(job_id, None)
        if not ended:
            return
        if doc_id:
            self._fail_document(doc_id, error)
        log.info("job failed job_id=%s code=%s", job_id, code)

    def _fail_document(self, doc_id: str, error: str) -> None:
        try:
            doc = self.kb.get_document(doc_id)
            if doc.status in (DocumentStatus.PENDING.value, DocumentStatus.PROCESSING.value):
                self.kb.fail_document(doc_id, error)
        except DocumentNotFound:
            pass

    @staticmethod
    def _fail_row(session: Any, job: IngestJob, reason: str, code: str) -> None:
        """Fail ``job`` and its unfinished document inside ``session`` (start-up recovery)."""
        job.status = JobStatus.FAILED.value
        job.error = reason
        job.error_code = code
        job.claimed_by = None
        job.lease_until = None
        doc = session.get(Document, job.document_id) if job.document_id else None
        if doc is not None and doc.status != DocumentStatus.READY.value:
            doc.status = DocumentStatus.FAILED.value
            doc.error = reason


def unheld(now: datetime) -> ColumnElement[bool]:
    """Jobs no live worker holds: never claimed, released, or the lease has passed."""
    return or_(
        IngestJob.claimed_by.is_(None),
        IngestJob.lease_until.is_(None),
        IngestJob.lease_until < now,
    )
