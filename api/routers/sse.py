"""Run a blocking generator in its own thread and stream it as server-sent events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

SSE_MEDIA_TYPE = "text/event-stream"
# Proxies (nginx) buffer responses unless told not to; caches must not keep them.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(event: str, data: Any) -> str:
    """One server-sent event with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def iterate_in_thread(make: Callable[[], Iterator[Any]]) -> AsyncGenerator[Any, None]:
    """Yield the items of a blocking iterator that runs in one dedicated thread.

    One thread for the whole iteration (not one per item) keeps thread-bound
    state of the generator, such as a held lock, on a single thread. When the
    consumer stops early (the client went away) the producer stops at its next
    item and the iterator is closed.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=64)
    stop = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            future = asyncio.run_coroutine_threadsafe(items.put((kind, value)), loop)
        except RuntimeError:  # the event loop is gone (server shutting down)
            stop.set()
            return
        while not stop.is_set():
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                continue
        future.cancel()

    def produce() -> None:
        iterator = None
        try:
            iterator = make()
            for item in iterator:
                if stop.is_set():
                    break
                put("item", item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put("error", exc)
        else:
            put("end", None)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="sse-producer", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = await items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
