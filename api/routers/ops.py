"""Operations: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.access import ADMIN_ONLY
from api.metrics import CONTENT_TYPE
from api.routers import AppState, State
from api.schemas import ERROR_RESPONSES, HealthResponse, ReadyResponse

router = APIRouter(tags=["ops"])

# /readyz and /metrics report on every collection: unrestricted keys only.
_ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: ERROR_RESPONSES[401],
    403: {**ERROR_RESPONSES[401], "description": "A tenant key (limited to collections)"},
}


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> dict:
    """Liveness: the process answers (no dependencies checked)."""
    return {"status": "ok"}


def _check(fn: Any) -> dict[str, Any]:
    try:
        return {"ok": True, **(fn() or {})}
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def readiness(state: AppState) -> dict[str, dict[str, Any]]:
    """Run the readiness checks; each reports ok and what it saw."""
    kb = state.services.kb

    def database() -> None:
        with kb.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def indexes() -> dict[str, Any]:
        infos = kb.list_collections()
        chunks = sum(kb.collection_size(info.id) for info in infos)  # loads each index
        return {"collections": len(infos), "indexed_chunks": chunks}

    def embedder() -> dict[str, Any]:
        vector = state.services.embedder.embed_query("readiness check")
        return {"model": getattr(state.services.embedder, "name", ""), "dimension": len(vector)}

    def worker() -> dict[str, Any]:
        if not state.worker.alive:
            raise RuntimeError("the ingest worker thread is not running")
        return {}

    return {
        "database": _check(database),
        "indexes": _check(indexes),
        "embedder": _check(embedder),
        "ingest_worker": _check(worker),
    }


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready"}, **_ADMIN_RESPONSES},
    dependencies=ADMIN_ONLY,
)
async def readyz(state: State) -> Any:
    """Readiness: database reachable, indexes and embedder loadable (generator not loaded)."""
    checks = await run_in_threadpool(readiness, state)
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics", response_class=Response, responses=_ADMIN_RESPONSES, dependencies=ADMIN_ONLY
)
async def metrics(state: State) -> Response:
    """Prometheus metrics of this server."""
    data = await run_in_threadpool(state.metrics.render)
    return Response(data, media_type=CONTENT_TYPE)
