"""Re-embedding jobs: a collection's vectors replaced by another model's, in the background.

``POST /collections/{name}/reembed`` answers 202 with a job; the job is a row
of the same ``ingest_jobs`` table uploads use, so ``GET /jobs/{id}`` reports
its progress (``chunks_embedded`` of ``chunks_total``) and outcome. Jobs run
one at a time in their own thread; the swap itself is
:meth:`rag.knowledge_base.KnowledgeBase.reembed_collection`, which leaves the
old vectors searchable until one transaction puts in the new ones.

A job a dead process left queued or running is settled by what the
collection records: the target model means the swap committed (succeeded),
anything else means the old vectors are intact (failed, run it again). On
SQLite (one host) that happens on start. Over PostgreSQL several replicas
share the jobs table, so a job carries its replica's id and a lease the
replica renews while it works, and only a job whose lease has passed is
settled, by any replica, at start and then every lease period.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from api.worker import job_to_dict, new_replica_id, unheld
from rag.db.models import IngestJob, JobStatus, new_id, utcnow
from rag.embedding import load_embedder
from rag.errors import RagError
from rag.knowledge_base import KnowledgeBase
from rag.protocols import EmbedderProvider

log = logging.getLogger(__name__)

KIND = "reembed"
INTERRUPTED = "interrupted"
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class ReembedJobs:
    """Queues re-embedding jobs and runs them one at a time.

    Args:
        kb: The knowledge base.
        embedders: Builds the target model's embedder.
        batch_chunks: Chunks per embedding call (progress granularity).
        replica_id: This process's id on its jobs (the ingest worker's).
        lease_seconds: How long a job stays this replica's without renewal.
        clock: The time leases are measured with (tests move it forward).
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        embedders: EmbedderProvider,
        batch_chunks: int,
        *,
        replica_id: str | None = None,
        lease_seconds: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.kb = kb
        self.embedders = embedders
        self.batch_chunks = batch_chunks
        self.replica_id = replica_id or new_replica_id()
        self.lease_seconds = lease_seconds
        self.clock = clock
        # Several replicas share one PostgreSQL jobs table; SQLite has one server.
        self.shared = kb.engine.dialect.name == "postgresql"
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = threading.Event()
        self._settler: threading.Thread | None = None

    def _lease_end(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease_seconds)

    def submit(self, collection: str, model: str) -> dict[str, Any]:
        """Queue a re-embedding of ``collection`` with ``model``; returns the job.

        Raises:
            CollectionNotFound: No such collection.
            EmbeddingModelNotFound: The model cannot be loaded.
        """
        info = self.kb.get_collection(collection)
        embedder = load_embedder(self.embedders, model)
        job = IngestJob(
            id=new_id(),
            collection=info.name,
            filename=f"re-embed with {embedder.name}",
            status=JobStatus.QUEUED.value,
            chunks_total=info.chunks,
            options={"kind": KIND, "model": embedder.name},
            claimed_by=self.replica_id,
            lease_until=self._lease_end(),
        )
        with self.kb.sessions.begin() as session:
            session.add(job)
            session.flush()
            result = job_to_dict(job)
        self._start()
        self._queue.put(job.id)
        log.info("reembed queued job_id=%s collection=%s model=%s", job.id, info.name, model)
        return result

    def recover(self) -> list[str]:
        """Settle the re-embedding jobs a dead process left unfinished; returns their ids.

        Over PostgreSQL only jobs whose lease has passed (their replica died)
        are settled, now and then every lease period, in a background thread.
        """
        settled = self.settle_abandoned()
        if self.shared and self._settler is None:
            self._settler = threading.Thread(
                target=self._settle_loop, name="reembed-settle", daemon=True
            )
            self._settler.start()
        return settled

    def _settle_loop(self) -> None:
        while not self._stopped.wait(self.lease_seconds):
            try:
                self.settle_abandoned()
            except Exception:  # noqa: BLE001 - retried next period
                log.exception("settling abandoned reembed jobs failed")

    def settle_abandoned(self) -> list[str]:
        """One pass of :meth:`recover`: settle every abandoned re-embedding job."""
        settled: list[str] = []
        with self.kb.sessions.begin() as session:
            query = select(IngestJob).where(
                IngestJob.status.in_(_ACTIVE), IngestJob.upload_path.is_(None)
            )
            if self.shared:
                query = query.where(unheld(self.clock())).with_for_update(skip_locked=True)
            for job in session.scalars(query).all():
                options = job.options or {}
                if options.get("kind") != KIND:
                    continue
                try:
                    recorded = self.kb.get_collection(job.collection).embedding_model
                except RagError:
                    recorded = ""
                if recorded and recorded == options.get("model"):
                    job.status = JobStatus.SUCCEEDED.value
                    job.chunks_embedded = job.chunks_total
                else:
                    job.status = JobStatus.FAILED.value
                    job.error = (
                        "re-embedding was interrupted before its swap; the collection kept its "
                        "old vectors: start it again"
                    )
                    job.error_code = INTERRUPTED
                settled.append(job.id)
        if settled:
            log.warning("reembed jobs settled count=%d", len(settled))
        return settled

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the running job and stop the threads."""
        self._stopped.set()
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="reembed", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self._process(job_id)
            except RagError as exc:
                self._update(
                    job_id, status=JobStatus.FAILED.value, error=exc.message, error_code=exc.code
                )
            except Exception:  # noqa: BLE001 - the thread must survive any one job
                log.exception("reembed job crashed job_id=%s", job_id)
                self._update(
                    job_id,
                    status=JobStatus.FAILED.value,
                    error="internal error while re-embedding",
                    error_code="internal_error",
                )

    def _process(self, job_id: str) -> None:
        with self.kb.sessions() as session:
            job = session.get(IngestJob, job_id)
            if job is None or job.status != JobStatus.QUEUED.value:
                return  # cancelled (its collection was deleted) or settled
            collection, model = job.collection, str((job.options or {})["model"])
        self._update(job_id, status=JobStatus.RUNNING.value, lease_until=self._lease_end())

        def progress(done: int, total: int) -> None:
            self._update(job_id, chunks_embedded=done, chunks_total=total)

        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, done), daemon=True)
        beat.start()
        try:
            info = self.kb.reembed_collection(
                collection,
                self.embedders.get(model),
                batch_chunks=self.batch_chunks,
                progress=progress,
            )
        finally:
            done.set()
            beat.join()
        self._update(
            job_id,
            status=JobStatus.SUCCEEDED.value,
            chunks_total=info.chunks,
            chunks_embedded=info.chunks,
        )
        log.info("reembed succeeded job_id=%s collection=%s", job_id, collection)

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        """Renew the job's lease every third of it until ``done`` (the swap may take minutes)."""
        while not done.wait(self.lease_seconds / 3):
            try:
                self._update(job_id, lease_until=self._lease_end())
            except Exception:  # noqa: BLE001 - retried next beat; the lease covers two misses
                log.exception("renewing the reembed lease failed job_id=%s", job_id)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self.kb.sessions.begin() as session:
            job = session.get(IngestJob, job_id)
            if job is not None:
                for key, value in fields.items():
                    setattr(job, key, value)


__all__ = ["ReembedJobs"]
