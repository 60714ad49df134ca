"""Multi-turn chat: sessions stored in SQL, follow-ups answered with their history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.access import Access
from api.routers import JSON_BODY, State
from api.routers.ask import _SSE_DOC, answer_events, check_documents, wants_stream
from api.schemas import (
    ERROR_RESPONSES,
    GENERATOR_RESPONSES,
    JSON_BODY_RESPONSES,
    ChatDeleted,
    ChatHistory,
    ChatRequest,
    ChatResponse,
)
from rag.db.models import new_id
from rag.types import Answer

router = APIRouter(tags=["chat"], responses=ERROR_RESPONSES)


def _reply(session_id: str, answer: Answer) -> dict[str, Any]:
    data = answer.to_dict()
    return {
        "session_id": session_id,
        "answer": data["answer"],
        "citations": data["citations"],
        "flags": data["flags"],
        "timings": data["timings"],
    }


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={200: _SSE_DOC, **JSON_BODY_RESPONSES, **GENERATOR_RESPONSES},
    dependencies=JSON_BODY,
)
async def chat(body: ChatRequest, request: Request, state: State, access: Access) -> Any:
    """Send a message; a new session starts when ``session_id`` is absent."""
    chats = state.chats
    kb = state.services.kb
    await check_documents(state, access, body.document_ids)

    def prepare() -> tuple[str, list, list[str], tuple[str, ...]]:
        if body.session_id is None:
            named = list(body.collections or [])
            searched = access.search_collections(kb, named)
            return new_id(), [], access.session_collections(named), searched
        stored = chats.collections(body.session_id)
        access.check_session(body.session_id, stored)
        if body.collections is not None:
            collections = list(body.collections)
            searched = access.search_collections(kb, collections)
        else:
            collections = stored
            searched = access.search_collections(kb, stored, existing_only=True)
        return body.session_id, chats.history(body.session_id), collections, searched

    session_id, history, collections, searched = await run_in_threadpool(prepare)
    new_session = body.session_id is None
    kwargs: dict[str, Any] = {
        "history": tuple(history),
        "collections": searched,
        "document_ids": tuple(body.document_ids),
        "generator": body.generator,
    }

    def store(answer: Answer) -> dict[str, Any]:
        reply = _reply(session_id, answer)
        chats.append_exchange(
            session_id,
            body.message,
            reply["answer"],
            reply["citations"],
            reply["flags"],
            collections=collections if new_session else None,
        )
        return reply

    pipeline = state.pipeline
    if wants_stream(request, body.stream):
        return await answer_events(lambda: pipeline.stream(body.message, **kwargs), store)
    answer = await run_in_threadpool(lambda: pipeline.ask(body.message, **kwargs))
    return await run_in_threadpool(store, answer)


@router.get("/chat/{session_id}", response_model=ChatHistory)
async def chat_history(session_id: str, state: State, access: Access) -> dict:
    """The session's messages with the citations given, oldest first."""
    chats = state.chats

    def read() -> list:
        access.check_session(session_id, chats.collections(session_id))
        return chats.messages(session_id)

    messages = await run_in_threadpool(read)
    return {"session_id": session_id, "messages": messages}


@router.delete("/chat/{session_id}", response_model=ChatDeleted)
async def delete_chat(session_id: str, state: State, access: Access) -> dict:
    """Delete a session and its messages."""
    chats = state.chats

    def delete() -> None:
        access.check_session(session_id, chats.collections(session_id))
        chats.delete(session_id)

    await run_in_threadpool(delete)
    return {"deleted": session_id}
