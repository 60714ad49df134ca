"""HTTP routers, one per resource; each is a thin layer over the services in :class:`AppState`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from api.chat_store import ChatStore
from api.metrics import Metrics
from api.worker import IngestWorker
from rag.services import Services


@dataclass
class AppState:
    """Everything one app instance owns, built by :func:`api.app.create_app`."""

    services: Services
    worker: IngestWorker
    chats: ChatStore
    metrics: Metrics
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
