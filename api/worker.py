"""Uploads become ingest jobs, processed by a background thread through the bulk ingest path.

An upload is validated (size, type, emptiness) before anything is queued; its
bytes are kept under ``data_dir/uploads/<job_id>`` (never under the client's
file name) until the job ends, so a restarted server can resume it. Progress
goes to the job's row, which ``GET /jobs/{id}`` reads.

On start, jobs a previous process left ``queued`` or ``running`` are queued
again when their upload file still exists, and failed with the reason when it
does not, so nothing stays in progress forever. The rule is
:func:`rag.knowledge_base.job_resume_blocker`, the same one every stuck-document
check uses, so ``rag doctor`` never fails a document this recovery resumes.

A refused upload stores nothing. The same bytes uploaded again while their
first upload is still queued or running get the first upload's job.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from sqlalchemy import select

from ingest.service import IngestOutcome, IngestProgress, IngestService, Upload, display_name
from rag.db.models import Document, DocumentStatus, IngestJob, JobStatus, new_id
from rag.errors import (
    Conflict,
    DocumentNotFound,
    DuplicateDocument,
    IngestCancelled,
    InvalidInput,
    JobNotFound,
    RagError,
)
from rag.index.atomic import atomic_write_bytes
from rag.knowledge_base import (
    KnowledgeBase,
    job_resume_blocker,
    validate_collection_name,
)

log = logging.getLogger(__name__)

# How often an idle worker looks for a due index checkpoint.
_IDLE_CHECK_S = 1.0

# Most queued uploads taken into one bulk ingest (they share embedding batches).
_GROUP_FILES = 64

INTERRUPTED = "interrupted"
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


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
    upload_path: Path
    has_upload: bool
    replace: bool | None


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
    """Accepts uploads, runs their ingestion in a background thread, reports progress.

    Args:
        kb: The knowledge base.
        ingest: The ingestion service (one writer per collection is guaranteed by the core).
        uploads_dir: Where upload bytes wait until their job ends.
    """

    def __init__(self, kb: KnowledgeBase, ingest: IngestService, uploads_dir: Path) -> None:
        self.kb = kb
        self.ingest = ingest
        self.uploads_dir = uploads_dir
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
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

    # ------------------------------------------------------------- lifecycle
    def recover(self) -> tuple[list[str], list[str]]:
        """Queue again or fail the jobs a previous process left unfinished.

        Returns:
            (ids of re-queued jobs, ids of failed jobs). Both empty when another
            process is ingesting into the same data folder (its jobs are alive).
        """
        if not self.kb.ingest_lock.try_exclusive():
            log.info("another process is ingesting; not recovering jobs")
            return [], []
        requeued: list[str] = []
        failed: list[str] = []
        keep_docs: list[str] = []
        try:
            with self.kb.sessions.begin() as session:
                jobs = session.scalars(
                    select(IngestJob)
                    .where(IngestJob.status.in_(_ACTIVE))
                    .order_by(IngestJob.created_at)
                ).all()
                for job in jobs:
                    reason = job_resume_blocker(session, job)
                    if reason is None:
                        job.status = JobStatus.QUEUED.value
                        requeued.append(job.id)
                        if job.document_id:
                            keep_docs.append(job.document_id)
                            doc = session.get(Document, job.document_id)
                            if doc is not None:
                                doc.status = DocumentStatus.PENDING.value
                    else:
                        job.status = JobStatus.FAILED.value
                        job.error = reason
                        job.error_code = INTERRUPTED
                        failed.append(job.id)
                        doc = session.get(Document, job.document_id) if job.document_id else None
                        if doc is not None and doc.status != DocumentStatus.READY.value:
                            doc.status = DocumentStatus.FAILED.value
                            doc.error = reason
                        if job.upload_path:
                            Path(job.upload_path).unlink(missing_ok=True)
            active = set(requeued)
            for path in self.uploads_dir.iterdir():
                if path.name not in active:
                    path.unlink(missing_ok=True)  # bytes of a job that no longer exists
        finally:
            self.kb.ingest_lock.release()
        # Documents left pending/processing without a job to resume are failed.
        self.kb.fail_interrupted_documents(exclude=keep_docs)
        for job_id in requeued:
            self._queue.put(job_id)
        if requeued or failed:
            log.warning("jobs recovered requeued=%d failed=%d", len(requeued), len(failed))
        return requeued, failed

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
        """Finish the current job and stop; queued jobs stay queued for the next start."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        # Holding ingest.lock shared tells other processes' start-up recovery
        # that this server's pending documents are alive.
        with self.kb.ingest_lock.hold(shared=True):
            while True:
                try:
                    job_id = self._queue.get(timeout=_IDLE_CHECK_S)
                except queue.Empty:
                    self._checkpoint()
                    continue
                if job_id is None:
                    return
                batch, stop = self._drain(job_id)
                try:
                    self._process(batch)
                except Exception:  # noqa: BLE001 - the worker must survive any one job
                    log.exception("ingest jobs crashed job_ids=%s", batch)
                    for crashed in batch:
                        self._finish_if_active(
                            crashed, None, "internal error while ingesting", "internal_error"
                        )
                finally:
                    with self._state:
                        self._current_collection = None
                        self._state.notify_all()
                if stop:
                    return

    def _drain(self, first: str) -> tuple[list[str], bool]:
        """``first`` and the jobs queued behind it (up to a group), and whether stop was asked."""
        batch = [first]
        while len(batch) < _GROUP_FILES:
            try:
                job_id = self._queue.get_nowait()
            except queue.Empty:
                break
            if job_id is None:
                return batch, True
            batch.append(job_id)
        return batch, False

    def _checkpoint(self) -> None:
        """While idle, save index files whose checkpoint is due (the journal covers them)."""
        try:
            self.kb.checkpoint()
        except Exception:  # noqa: BLE001 - a failed save is retried; the journal is durable
            log.exception("index checkpoint failed")

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
                )
            ).all()
            for job in jobs:
                job.status = JobStatus.FAILED.value
                job.error = f"cancelled: collection {collection!r} was deleted"
                job.error_code = IngestCancelled.code
        for job in jobs:
            self._drop_upload(job.id)
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
        path = self.uploads_dir / job_id
        atomic_write_bytes(path, upload.data)  # before the job row that points at it

        def job_row(doc_id: str) -> list[IngestJob]:
            return [
                IngestJob(
                    id=job_id,
                    collection=collection,
                    filename=upload.filename,
                    document_id=doc_id,
                    status=JobStatus.QUEUED.value,
                    upload_path=str(path),
                    options={"replace": replace, "has_password": bool(password)},
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
            path.unlink(missing_ok=True)
            return self._existing_ref(job_id, exc.existing, upload.filename, collection)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if password:
            self._passwords[job_id] = password
        self.start()
        self._queue.put(job_id)
        log.info("job queued job_id=%s doc_id=%s", job_id, doc.id)
        return self._ref(job_id, doc.id, upload.filename, JobStatus.QUEUED.value)

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

    def _update(self, job_id: str, **fields: Any) -> None:
        with self.kb.sessions.begin() as session:
            job = session.get(IngestJob, job_id)
            if job is not None:
                for key, value in fields.items():
                    setattr(job, key, value)

    def _process(self, job_ids: Sequence[str]) -> None:
        """Ingest queued jobs through the one bulk path, grouped by collection and options."""
        groups: dict[tuple[str, bool | None], list[_Job]] = {}
        for job_id in job_ids:
            job = self._runnable(job_id)
            if job is not None:
                groups.setdefault((job.collection, job.replace), []).append(job)
        for (collection, replace), jobs in groups.items():
            with self._state:
                if collection in self._deleting:
                    cancelled = True
                else:
                    cancelled = False
                    self._current_collection = collection
            if cancelled:
                for job in jobs:
                    self._finish(
                        job.id,
                        job.document_id,
                        "cancelled: its collection is being deleted",
                        "cancelled",
                    )
                continue
            try:
                self.ingest.ingest_many(
                    _JobUploads(self, jobs),
                    collection=collection,
                    replace=replace,
                    on_outcome=lambda position, outcome, jobs=jobs: self._complete(
                        jobs[position].id, outcome
                    ),
                    group_chunks=self.ingest.progress_chunks,
                )
            except RagError as exc:  # e.g. the collection was deleted mid-ingestion
                for job in jobs:
                    self._finish_if_active(job.id, job.document_id, exc.message, exc.code)
            finally:
                with self._state:
                    self._current_collection = None
                    self._state.notify_all()

    def _runnable(self, job_id: str) -> _Job | None:
        """The job if it can run now; otherwise it is finished with the reason and None."""
        with self.kb.sessions() as session:
            row = session.get(IngestJob, job_id)
            if row is None or row.status != JobStatus.QUEUED.value:
                return None
            job = _Job(
                row.id,
                row.collection,
                row.filename,
                row.document_id,
                Path(row.upload_path or ""),
                bool(row.upload_path),
                dict(row.options or {}).get("replace"),
            )
        if not job.has_upload or not job.upload_path.is_file():
            self._finish(
                job_id, job.document_id, "the uploaded bytes are gone; upload again", INTERRUPTED
            )
            return None
        try:
            self.kb.get_document(job.document_id or "")
        except DocumentNotFound:
            self._finish(job_id, None, "the document was deleted before ingestion", "cancelled")
            return None
        return job

    def _upload(self, job: _Job) -> Upload:
        """The job's bytes as an ingest item, its progress going to the job's row.

        Raises:
            IngestCancelled: The job stopped being queued while its group waited
                (its collection is being deleted).
        """
        with self.kb.sessions.begin() as session:
            row = session.get(IngestJob, job.id)
            if row is None or row.status != JobStatus.QUEUED.value or not job.upload_path.is_file():
                raise IngestCancelled("cancelled: its collection is being deleted")
            row.status = JobStatus.RUNNING.value

        written = (0, 0, 0)  # what the job row shows; a report that changes none is not written

        def progress(p: IngestProgress) -> None:
            nonlocal written
            if job.collection in self._deleting:
                raise IngestCancelled(f"cancelled: collection {job.collection!r} is being deleted")
            shown = (p.pages_parsed, p.chunks_total, p.chunks_embedded)
            if shown == written or p.stage in ("indexing", "done"):
                return  # one durable transaction fewer; completion writes the final figures
            written = shown
            self._update(
                job.id,
                pages_parsed=p.pages_parsed,
                chunks_total=p.chunks_total,
                chunks_embedded=p.chunks_embedded,
            )

        return Upload(
            job.filename,
            job.upload_path.read_bytes(),
            document_id=job.document_id,
            password=self._passwords.pop(job.id, None),
            progress=progress,
        )

    def _complete(self, job_id: str, outcome: IngestOutcome) -> None:
        if outcome.ok:
            self._update(
                job_id,
                status=JobStatus.SUCCEEDED.value,
                document_id=outcome.document_id,
                pages_parsed=outcome.pages,
                chunks_total=outcome.chunks,
                chunks_embedded=outcome.chunks,
                error=None,
                error_code=None,
            )
            self._drop_upload(job_id)
            log.info("job succeeded job_id=%s doc_id=%s", job_id, outcome.document_id)
        else:
            self._finish(job_id, outcome.document_id, outcome.error or "", outcome.error_code)

    def _finish_if_active(
        self, job_id: str, doc_id: str | None, error: str, code: str | None
    ) -> None:
        """Fail the job unless it already ended (a group's other jobs may have)."""
        with self.kb.sessions() as session:
            job = session.get(IngestJob, job_id)
            active = job is not None and job.status in _ACTIVE
        if active:
            self._finish(job_id, doc_id, error, code)

    def _finish(self, job_id: str, doc_id: str | None, error: str, code: str | None) -> None:
        """Mark a job (and its unfinished document) failed and drop its bytes."""
        self._update(job_id, status=JobStatus.FAILED.value, error=error, error_code=code)
        if doc_id:
            try:
                doc = self.kb.get_document(doc_id)
                if doc.status in (DocumentStatus.PENDING.value, DocumentStatus.PROCESSING.value):
                    self.kb.fail_document(doc_id, error)
            except DocumentNotFound:
                pass
        self._drop_upload(job_id)
        log.info("job failed job_id=%s code=%s", job_id, code)

    def _drop_upload(self, job_id: str) -> None:
        (self.uploads_dir / job_id).unlink(missing_ok=True)
