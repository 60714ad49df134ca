"""Re-embedding jobs: a collection's vectors replaced by another model's, in the background.

``POST /collections/{name}/reembed`` answers 202 with a job; the job is a row
of the same ``ingest_jobs`` table uploads use, so ``GET /jobs/{id}`` reports
its progress (``chunks_embedded`` of ``chunks_total``) and outcome. Jobs run
one at a time in their own thread; the swap itself is
:meth:`rag.knowledge_base.KnowledgeBase.reembed_collection`, which leaves the
old vectors searchable until one transaction puts in the new ones.

A job a dead process left queued or running is settled on start by what the
collection records: the target model means the swap committed (succeeded),
anything else means the old vectors are intact (failed, run it again).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy import select

from api.worker import job_to_dict
from rag.db.models import IngestJob, JobStatus, new_id
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
    """

    def __init__(self, kb: KnowledgeBase, embedders: EmbedderProvider, batch_chunks: int) -> None:
        self.kb = kb
        self.embedders = embedders
        self.batch_chunks = batch_chunks
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

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
        """Settle the re-embedding jobs a previous process left unfinished; returns their ids."""
        settled: list[str] = []
        with self.kb.sessions.begin() as session:
            jobs = session.scalars(select(IngestJob).where(IngestJob.status.in_(_ACTIVE))).all()
            for job in jobs:
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
        """Finish the running job and stop the thread."""
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
        self._update(job_id, status=JobStatus.RUNNING.value)

        def progress(done: int, total: int) -> None:
            self._update(job_id, chunks_embedded=done, chunks_total=total)

        info = self.kb.reembed_collection(
            collection,
            self.embedders.get(model),
            batch_chunks=self.batch_chunks,
            progress=progress,
        )
        self._update(
            job_id,
            status=JobStatus.SUCCEEDED.value,
            chunks_total=info.chunks,
            chunks_embedded=info.chunks,
        )
        log.info("reembed succeeded job_id=%s collection=%s", job_id, collection)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self.kb.sessions.begin() as session:
            job = session.get(IngestJob, job_id)
            if job is not None:
                for key, value in fields.items():
                    setattr(job, key, value)


__all__ = ["ReembedJobs"]
