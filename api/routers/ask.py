"""Questions: a JSON answer, or server-sent events as the answer is generated."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.access import Access, CallerAccess
from api.errors import body_for
from api.routers import JSON_BODY, AppState, State
from api.routers.sse import SSE_HEADERS, SSE_MEDIA_TYPE, iterate_in_thread, sse_event
from api.schemas import (
    ERROR_RESPONSES,
    GENERATOR_RESPONSES,
    JSON_BODY_RESPONSES,
    AnswerOut,
    AskRequest,
)
from rag.types import Answer

router = APIRouter(tags=["ask"], responses=ERROR_RESPONSES)

_SSE_DOC = {
    "description": "The answer; with `stream` or `Accept: text/event-stream`: events "
    '`token` ({"text"}), then `answer` (the answer object) or `error` (the error body).',
    "content": {SSE_MEDIA_TYPE: {}},
}


async def check_documents(state: AppState, access: CallerAccess, document_ids: list[str]) -> None:
    """Raise DocumentNotFound (404) for the first id that names no document the key may see.

    Filtering by an unknown id would otherwise answer "not found in the
    documents", which hides a typo in the id.
    """
    kb = state.services.kb
    for doc_id in dict.fromkeys(document_ids):
        await run_in_threadpool(access.document, kb, doc_id)


def wants_stream(request: Request, flag: bool) -> bool:
    """True when the body asks for streaming or the client accepts only events."""
    return flag or SSE_MEDIA_TYPE in request.headers.get("accept", "")


async def answer_events(
    run: Callable[[], Iterator[Any]],
    finish: Callable[[Answer], dict[str, Any]] = Answer.to_dict,
) -> StreamingResponse:
    """Stream pipeline output as SSE: ``token`` events, then ``answer`` (or ``error``).

    The first item is awaited before the response starts, so a rejected
    question or an unknown collection still gets its HTTP error status.
    ``finish`` turns the final answer into the ``answer`` payload (and may
    store it, for chat); it runs in a worker thread.
    """
    items = iterate_in_thread(run)
    first = await items.__anext__()

    async def body() -> AsyncIterator[str]:
        item = first
        try:
            while True:
                if isinstance(item, Answer):
                    yield sse_event("answer", await run_in_threadpool(finish, item))
                elif item:
                    yield sse_event("token", {"text": item})
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    return
        except Exception as exc:  # noqa: BLE001 - reported in-band, headers are sent
            yield sse_event("error", body_for(exc))
        finally:
            await items.aclose()

    return StreamingResponse(body(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)


@router.post(
    "/ask",
    response_model=AnswerOut,
    responses={200: _SSE_DOC, **JSON_BODY_RESPONSES, **GENERATOR_RESPONSES},
    dependencies=JSON_BODY,
)
async def ask(body: AskRequest, request: Request, state: State, access: Access) -> Any:
    """Answer a question with numbered citations to documents and pages."""
    await check_documents(state, access, body.document_ids)
    kb = state.services.kb
    collections = await run_in_threadpool(access.search_collections, kb, body.collections)
    kwargs: dict[str, Any] = {
        "collections": collections,
        "document_ids": tuple(body.document_ids),
        "pages": body.pages,
        "top_k": body.top_k,
        "generator": body.generator,
        "max_new_tokens": body.max_new_tokens,
    }
    pipeline = state.pipeline
    if wants_stream(request, body.stream):
        return await answer_events(lambda: pipeline.stream(body.question, **kwargs))
    answer = await run_in_threadpool(lambda: pipeline.ask(body.question, **kwargs))
    return answer.to_dict()
