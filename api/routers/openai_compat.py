"""OpenAI-compatible endpoints, so OpenAI clients and chat UIs can talk to the knowledge base.

``model`` names the collection. The last user message is the question and the
earlier user/assistant messages are the history. The answer text ends with
its numbered sources, and the structured citations ride along in an extra
top-level ``citations`` field that OpenAI clients ignore.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.access import Access
from api.errors import body_for
from api.routers import JSON_BODY, State
from api.routers.sse import SSE_HEADERS, SSE_MEDIA_TYPE, iterate_in_thread
from api.schemas import (
    ERROR_RESPONSES,
    GENERATOR_RESPONSES,
    JSON_BODY_RESPONSES,
    ChatCompletionRequest,
    ModelList,
    UserMessage,
)
from rag.db.models import new_id
from rag.errors import InvalidInput
from rag.generation import estimate_tokens
from rag.types import Answer, ChatTurn

router = APIRouter(prefix="/v1", tags=["openai"], responses=ERROR_RESPONSES)


def sources_block(answer: Answer) -> str:
    """The numbered sources appended to the answer text ('' when there are none)."""
    if not answer.citations:
        return ""
    lines = [f"[{c.number}] {c.filename}, page {c.page}" for c in answer.citations]
    return "\n\nSources:\n" + "\n".join(lines)


def split_messages(request: ChatCompletionRequest) -> tuple[str, tuple[ChatTurn, ...]]:
    """The question (the last user message) and the user/assistant turns before it.

    Messages after the last user message (an assistant prefix) are ignored:
    the answer comes from the documents, not from a continuation.
    """
    last = max(
        (i for i, m in enumerate(request.messages) if isinstance(m, UserMessage)), default=None
    )
    if last is None:  # the schema requires one; kept for callers building requests in code
        raise InvalidInput("messages must hold a user message with the question")
    turns = [
        ChatTurn(role=m.role, content=m.text())
        for m in request.messages[:last]
        if m.role in ("user", "assistant")
    ]
    return request.messages[last].text(), tuple(turns)


def _usage(prompt: str, completion: str) -> dict[str, int]:
    # Estimated: the retrieval pipeline's true prompt is not the client's messages.
    p, c = estimate_tokens(prompt), estimate_tokens(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None) -> str:
    data = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/models", response_model=ModelList)
async def list_models(state: State, access: Access) -> dict:
    """Every collection the API key may use, presented as a model."""
    infos = access.visible(await run_in_threadpool(state.services.kb.list_collections))
    return {
        "object": "list",
        "data": [
            {
                "id": info.name,
                "object": "model",
                "created": int(info.created_at.timestamp()),
                "owned_by": "rag",
            }
            for info in infos
        ],
    }


@router.post(
    "/chat/completions",
    responses={
        200: {
            "description": "An OpenAI chat completion; with `stream`: `chat.completion.chunk` "
            "server-sent events ending with `data: [DONE]`.",
            "content": {"application/json": {}, SSE_MEDIA_TYPE: {}},
        },
        **JSON_BODY_RESPONSES,
        **GENERATOR_RESPONSES,
    },
    dependencies=JSON_BODY,
)
async def chat_completions(body: ChatCompletionRequest, state: State, access: Access) -> Any:
    """OpenAI chat completion answered from the collection named by ``model``."""
    question, history = split_messages(body)
    access.check_collection(body.model)
    await run_in_threadpool(state.services.kb.get_collection, body.model)
    kwargs: dict[str, Any] = {
        "history": history,
        "collections": (body.model,),
        "max_new_tokens": body.max_completion_tokens or body.max_tokens,
        "top_k": body.top_k,
    }
    pipeline = state.pipeline
    cid = "chatcmpl-" + new_id()
    created = int(time.time())
    if not body.stream:
        answer = await run_in_threadpool(lambda: pipeline.ask(question, **kwargs))
        content = answer.answer + sources_block(answer)
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(question, content),
            "citations": answer.to_dict()["citations"],
        }

    items = iterate_in_thread(lambda: pipeline.stream(question, **kwargs))
    first = await items.__anext__()  # errors before the first piece get their HTTP status

    async def events() -> AsyncIterator[str]:
        yield _chunk(cid, created, body.model, {"role": "assistant", "content": ""})
        item: Any = first
        try:
            while True:
                if isinstance(item, Answer):
                    # The pieces were the answer's text (the pipeline streams its final
                    # text); its numbered sources follow.
                    tail = sources_block(item)
                    if tail:
                        yield _chunk(cid, created, body.model, {"content": tail})
                    final = json.loads(_chunk(cid, created, body.model, {}, "stop")[6:])
                    final["citations"] = item.to_dict()["citations"]
                    yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
                elif item:
                    yield _chunk(cid, created, body.model, {"content": item})
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
        except Exception as exc:  # noqa: BLE001 - in-band: the headers are already sent
            yield f"data: {json.dumps(body_for(exc))}\n\n"
        finally:
            await items.aclose()
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
