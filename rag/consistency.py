"""The consistency checker: SQL, the vector index and the keyword index hold the same chunks.

It also owns the one rule for documents an interrupted ingestion left
``pending`` or ``processing``: such a document is *resumable* when its upload
job can be taken up again by a server (the bytes are stored, the document
exists, no password is needed), and *stuck* otherwise; stuck documents are
failed with the reason, never left hanging. The rule is the same for the
embedded backend and PostgreSQL: only the search store (``indexed_ids``,
``restore``) and the ingest lock differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from rag.blobs import BlobStore
from rag.db.models import ChunkRow, Document, DocumentStatus, IngestJob, JobStatus
from rag.locks import InterProcessLock
from rag.protocols import SearchStore
from rag.records import CollectionCheck, CollectionInfo

log = logging.getLogger(__name__)

_LIVE_JOB = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
UNFINISHED = (DocumentStatus.PROCESSING.value, DocumentStatus.PENDING.value)


def job_resume_blocker(
    session: Session, job: IngestJob, uploads: BlobStore, *, passwords: Container[str] = ()
) -> str | None:
    """Why an unfinished ingest job cannot be resumed by a server (None when it can).

    The one rule shared by the servers' recovery and every check that decides
    a document is stuck, so they never disagree: a job resumes when its
    uploaded bytes are still stored, its document exists, and it needs no
    password (passwords are never stored; ``passwords`` holds the ids of jobs
    whose password the calling process still has in memory).
    """
    if not job.upload_path or not uploads.exists(job.id):
        return "ingestion was interrupted and the uploaded bytes are gone; upload it again"
    if job.document_id is None or session.get(Document, job.document_id) is None:
        return "ingestion was interrupted and its document was deleted; upload the file again"
    if (job.options or {}).get("has_password") and job.id not in passwords:
        return (
            "ingestion was interrupted; passwords are not kept across restarts, so upload "
            "the file again with its password"
        )
    return None


def resumable_documents(session: Session, uploads: BlobStore) -> set[str]:
    """Ids of unfinished documents whose ingest job a server will resume."""
    jobs = session.scalars(
        select(IngestJob).where(IngestJob.status.in_(_LIVE_JOB), IngestJob.document_id.is_not(None))
    ).all()
    return {
        job.document_id
        for job in jobs
        if job.document_id is not None and job_resume_blocker(session, job, uploads) is None
    }


class ConsistencyChecker:
    """Checks and repairs one knowledge base's stores; fails its stuck documents.

    Args:
        sessions: The knowledge base's SQL sessions.
        store: Its search store.
        uploads: Where upload bytes wait (decides which jobs can resume).
        ingest_lock: Held shared by every ingesting process.
        collections: Lists the collections to check.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: SearchStore,
        uploads: BlobStore,
        ingest_lock: InterProcessLock,
        collections: Callable[[], list[CollectionInfo]],
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.uploads = uploads
        self.ingest_lock = ingest_lock
        self.collections = collections

    def fail_interrupted_documents(self, exclude: Iterable[str] = ()) -> list[str]:
        """Mark documents stuck in processing/pending as failed; returns their ids.

        A document whose ingest job a server will resume (see
        :func:`job_resume_blocker`) is not stuck and stays as it is, so a
        ``rag doctor`` or ``rag ingest`` between a crash and the server's
        restart never fails what the restart would finish. Does nothing while
        another process is ingesting (it holds the ingest lock).
        """
        if not self.ingest_lock.try_exclusive():
            log.info("another process is ingesting; not failing processing documents")
            return []
        try:
            return self._fail_stuck(set(exclude))
        finally:
            self.ingest_lock.release()

    def _fail_stuck(self, skip: set[str]) -> list[str]:
        with self.sessions.begin() as session:
            rows = session.scalars(select(Document).where(Document.status.in_(UNFINISHED))).all()
            skip = skip | resumable_documents(session, self.uploads) if rows else skip
            stuck = [row for row in rows if row.id not in skip]
            for row in stuck:
                row.status = DocumentStatus.FAILED.value
                row.error = "ingestion was interrupted (process stopped); upload the file again"
            return [row.id for row in stuck]

    def check(self) -> list[CollectionCheck]:
        """Compare the chunk ids of SQL and the search store's two indexes per collection."""
        return [self.check_collection(info) for info in self.collections()]

    def repair(self) -> list[CollectionCheck]:
        """Bring the search indexes back to what SQL holds; fail stuck documents.

        Missing chunks are re-added from their stored text and vectors (no
        re-embedding); extra ids are removed; indexes are saved. Returns the
        checks after repair.
        """
        self.fail_interrupted_documents()
        for info in self.collections():
            with self.store.writing(info.id):
                report = self.check_collection(info)
                if report.consistent:
                    continue
                missing = sorted(set(report.missing_in_faiss) | set(report.missing_in_bm25))
                extra = sorted(set(report.extra_in_faiss) | set(report.extra_in_bm25))
                self.store.restore(info.id, missing, extra)
                log.warning(
                    "repaired collection=%s added=%d removed=%d",
                    info.name,
                    len(missing),
                    len(extra),
                )
        return self.check()

    def check_collection(self, info: CollectionInfo) -> CollectionCheck:
        """One collection's check (ready chunks in SQL against both indexes)."""
        with self.sessions() as session:
            sql_ids = set(
                session.scalars(
                    select(ChunkRow.id)
                    .join(Document)
                    .where(
                        ChunkRow.collection_id == info.id,
                        Document.status == DocumentStatus.READY.value,
                    )
                ).all()
            )
            unfinished = session.scalars(
                select(Document.id).where(
                    Document.collection_id == info.id, Document.status.in_(UNFINISHED)
                )
            ).all()
            resumable = resumable_documents(session, self.uploads) if unfinished else set()
            stuck = tuple(d for d in unfinished if d not in resumable)
            waiting = tuple(d for d in unfinished if d in resumable)
        faiss_ids, bm25_ids = self.store.indexed_ids(info.id)
        return CollectionCheck(
            collection=info.name,
            sql_chunks=len(sql_ids),
            faiss_chunks=len(faiss_ids),
            bm25_chunks=len(bm25_ids),
            missing_in_faiss=tuple(sorted(sql_ids - faiss_ids)),
            extra_in_faiss=tuple(sorted(faiss_ids - sql_ids)),
            missing_in_bm25=tuple(sorted(sql_ids - bm25_ids)),
            extra_in_bm25=tuple(sorted(bm25_ids - sql_ids)),
            stuck_documents=stuck,
            resumable_documents=waiting,
        )
