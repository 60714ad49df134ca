"""The FastAPI application factory: ``create_app(settings)`` builds everything it uses.

Run it with ``uvicorn --factory api.app:create_app`` (settings from the
environment) or pass settings explicitly (tests, embedding in other code).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.access import KeyPolicy
from api.chat_store import ChatStore
from api.errors import install_error_handlers
from api.metrics import Metrics, MetricsMiddleware
from api.reembed import ReembedJobs
from api.routers import AppState, ask, chat, collections, documents, jobs, openai_compat, ops
from api.security import ApiKeyMiddleware, BodySizeLimitMiddleware, RateLimitMiddleware
from api.worker import ClaimPolicy, IngestWorker
from ingest.service import build_ingest_service
from rag.services import build_services
from rag.settings import Settings, load_settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """\
Upload PDFs, text, Markdown or HTML; ask questions; get answers that cite
documents and pages. Errors have one shape:
`{"error": {"code", "message", "details"}}`. When API keys are configured,
send `Authorization: Bearer <key>` (every route but `/healthz` and the web page).
A tenant key (`RAG_API__KEY_COLLECTIONS`) reaches only its collections: anything
else answers 404 as an unknown id would, and `/readyz` and `/metrics` answer 403.
"""


def build_state(settings: Settings) -> AppState:
    """Wire services, the ingest worker and the chat store; recover interrupted jobs.

    Start-up recovery runs here rather than in ``build_services`` so that jobs
    that can be resumed keep their documents pending instead of failed.
    """
    services = build_services(settings, recover=False)
    kb = services.kb
    for info in kb.list_collections():
        kb.collection_size(info.id)  # load indexes now: replays the journal after a crash
    worker = IngestWorker(
        kb,
        build_ingest_service(services),
        kb.uploads,
        policy=ClaimPolicy(
            poll_seconds=settings.ingest.job_poll_seconds,
            lease_seconds=settings.ingest.job_lease_seconds,
            max_attempts=settings.ingest.job_max_attempts,
            claim_batch=settings.ingest.job_claim_batch,
        ),
    )
    reembeds = ReembedJobs(
        kb,
        services.embedders,
        settings.ingest.embed_batch_chunks,
        replica_id=worker.replica_id,
        lease_seconds=settings.ingest.job_lease_seconds,
    )
    reembeds.recover()  # before the worker's recovery, which would read them as uploads
    worker.recover()
    worker.start()
    return AppState(
        services=services,
        worker=worker,
        chats=ChatStore(kb.sessions),
        metrics=Metrics(kb),
        reembeds=reembeds,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application and everything it owns.

    Args:
        settings: All settings (default: :func:`rag.settings.load_settings`).

    Returns:
        The app; its lifespan stops the ingest worker and closes the database.
    """
    settings = settings or load_settings()
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.worker.start()
        try:
            yield
        finally:
            state.worker.stop()
            state.reembeds.stop()
            state.services.close()

    app = FastAPI(
        title="RAG knowledge base",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.rag = state
    install_error_handlers(app)
    for module in (ops, collections, documents, jobs, ask, chat, openai_compat):
        app.include_router(module.router)
    _mount_web_page(app)
    _state_question_limit(app, settings.rules.max_question_chars)

    api = settings.api
    # Added innermost first: CORS ends up outermost so even 401/413/429 carry its headers.
    app.add_middleware(RateLimitMiddleware, per_minute=api.rate_limit_per_minute)
    app.add_middleware(ApiKeyMiddleware, policy=KeyPolicy.from_settings(settings))
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=int(api.max_request_mb * 2**20))
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    if api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=api.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    return app


def _state_question_limit(app: FastAPI, max_chars: int) -> None:
    """Put the configured question length limit into the OpenAPI schema.

    The limit is a setting, so the request models cannot carry it; without it
    the schema would allow questions the rules then refuse with a 422.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            models = schema.get("components", {}).get("schemas", {})
            for model, field in (("AskRequest", "question"), ("ChatRequest", "message")):
                prop = models.get(model, {}).get("properties", {}).get(field)
                if prop is not None:
                    prop["maxLength"] = max_chars
            content = models.get("UserMessage", {}).get("properties", {}).get("content", {})
            for variant in content.get("anyOf", []):
                if variant.get("type") == "string":
                    variant["maxLength"] = max_chars
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _mount_web_page(app: FastAPI) -> None:
    """Serve the single-page web UI at ``/`` and its assets at ``/static`` when present."""
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        return FileResponse(index, media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
