"""HTTP routers, one per resource; each is a thin layer over the services in :class:`AppState`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from api.chat_store import ChatStore
from api.metrics import Metrics
from api.reembed import ReembedJobs
from api.worker import IngestWorker
from rag.errors import UnsupportedMediaType
from rag.services import Services


@dataclass
class AppState:
    """Everything one app instance owns, built by :func:`api.app.create_app`."""

    services: Services
    worker: IngestWorker
    chats: ChatStore
    metrics: Metrics
    reembeds: ReembedJobs
    _pipeline: Any = None

    @property
    def pipeline(self) -> Any:
        """The answer pipeline (built on first use; its generators load lazily)."""
        if self._pipeline is None:
            self._pipeline = self.services.pipeline()
        return self._pipeline


def get_state(request: Request) -> AppState:
    """FastAPI dependency: the state of the app serving this request."""
    return request.app.state.rag


State = Annotated[AppState, Depends(get_state)]


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def require_json(request: Request) -> None:
    """FastAPI dependency: a route's body must be sent as JSON (415 otherwise).

    Without it FastAPI reads a JSON body sent as ``text/plain`` as bytes and
    answers 422, which tells the client its data is wrong when only the header is.
    """
    content_type = request.headers.get("content-type", "")
    if _is_json(content_type):
        return
    if not content_type and not await request.body():
        return  # no body at all: validation reports the missing fields
    raise UnsupportedMediaType(
        f"send the body as JSON with 'Content-Type: application/json', got "
        f"{content_type or 'no Content-Type'}",
        details={"content_type": content_type or None},
    )


JSON_BODY = [Depends(require_json)]


async def require_multipart(request: Request) -> None:
    """FastAPI dependency: an upload must be ``multipart/form-data`` (415 otherwise)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return
    raise UnsupportedMediaType(
        "send the files as multipart/form-data (e.g. curl -F files=@report.pdf), got "
        f"{content_type or 'no Content-Type'}",
        details={"content_type": content_type or None},
    )


MULTIPART_BODY = [Depends(require_multipart)]
