"""Ingest job progress."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.access import Access
from api.routers import State
from api.schemas import ERROR_RESPONSES, JobOut

router = APIRouter(tags=["documents"], responses=ERROR_RESPONSES)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, state: State, access: Access) -> dict:
    """Status and progress of one ingest job."""
    return access.check_job(await run_in_threadpool(state.worker.get, job_id))
