"""A generator backed by any OpenAI-compatible chat server (llama.cpp server, vLLM, Ollama).

Talks plain HTTP through httpx, so the ``openai`` package is not needed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from rag.errors import GeneratorUnavailable, InvalidInput
from rag.generation import estimate_tokens
from rag.settings import GeneratorSettings

log = logging.getLogger(__name__)

# Used when the settings do not say: the smallest window common servers default to.
DEFAULT_CONTEXT_LENGTH = 4096


class OpenAIGenerator:
    """Generator calling ``POST {base_url}/chat/completions`` on an OpenAI-compatible server.

    The server's tokenizer is not available locally, so :meth:`count_tokens`
    is an estimate (see :func:`rag.generation.estimate_tokens`); leave some
    margin when budgeting the context.
    """

    def __init__(self, settings: GeneratorSettings, client: httpx.Client | None = None) -> None:
        """Prepare the HTTP client; nothing is sent until the first request.

        Args:
            settings: Generator settings (``openai_*`` fields, temperature, context_length).
            client: An httpx client to use instead of a new one (tests, shared pools).
        """
        self.settings = settings
        self.base_url = settings.openai_base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.name = f"openai:{settings.openai_model}"
        self.context_length = settings.context_length or DEFAULT_CONTEXT_LENGTH
        headers = {"Accept": "application/json"}
        if settings.openai_api_key:
            headers["Authorization"] = f"Bearer {settings.openai_api_key}"
        self._headers = headers
        self._client = client or httpx.Client(timeout=settings.openai_timeout_s)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def count_tokens(self, text: str) -> int:
        """Estimated tokens of ``text`` (one per CJK character, one per 4 other characters)."""
        return estimate_tokens(text)

    def _payload(
        self, messages: Sequence[dict[str, str]], max_new_tokens: int, stream: bool
    ) -> dict[str, Any]:
        if not messages:
            raise InvalidInput("messages must hold at least one chat message, got none")
        if max_new_tokens < 1:
            raise InvalidInput(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        return {
            "model": self.settings.openai_model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_new_tokens,
            "temperature": self.settings.temperature,
            "stream": stream,
        }

    def _unreachable(self, exc: Exception) -> GeneratorUnavailable:
        return GeneratorUnavailable(
            f"could not reach the OpenAI-compatible server at {self.url}: "
            f"{type(exc).__name__}: {exc}; check that the server is running and that "
            f"RAG_GENERATOR__OPENAI_BASE_URL points at it (it usually ends in /v1)",
            details={"url": self.url},
        )

    def _check_status(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        body = response.read().decode("utf-8", errors="replace")[:300]
        hint = {
            401: "check RAG_GENERATOR__OPENAI_API_KEY",
            403: "check RAG_GENERATOR__OPENAI_API_KEY",
            404: "check RAG_GENERATOR__OPENAI_BASE_URL (it usually ends in /v1) and "
            "RAG_GENERATOR__OPENAI_MODEL",
        }.get(response.status_code, "check the server's log")
        raise GeneratorUnavailable(
            f"the OpenAI-compatible server at {self.url} answered HTTP {response.status_code}: "
            f"{body!r}; {hint}",
            details={"url": self.url, "status": response.status_code},
        )

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> str:
        """The whole completion (``choices[0].message.content``).

        Raises:
            GeneratorUnavailable: the server is unreachable, answers non-2xx or malformed JSON.
        """
        payload = self._payload(messages, max_new_tokens, stream=False)
        try:
            response = self._client.post(self.url, json=payload, headers=self._headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check_status(response)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GeneratorUnavailable(
                f"the server at {self.url} answered without choices[0].message.content "
                f"({response.text[:200]!r}); is it OpenAI-compatible?",
                details={"url": self.url},
            ) from exc
        return str(content or "").strip()

    def stream(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int) -> Iterator[str]:
        """The completion as pieces (``choices[0].delta.content`` of each server-sent event).

        Raises:
            GeneratorUnavailable: the server is unreachable, answers non-2xx, or sends
                an error event.
        """
        payload = self._payload(messages, max_new_tokens, stream=True)
        try:
            with self._client.stream(
                "POST", self.url, json=payload, headers=self._headers
            ) as response:
                self._check_status(response)
                for line in response.iter_lines():
                    piece = self._parse_event(line)
                    if piece is None:
                        return
                    if piece:
                        yield piece
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def _parse_event(self, line: str) -> str | None:
        """Text of one SSE line: '' for lines without text, None at ``data: [DONE]``."""
        line = line.strip()
        if not line.startswith("data:"):
            return ""  # blank separators, ": keep-alive" comments, "event:" lines
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return None
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise GeneratorUnavailable(
                f"the server at {self.url} sent an event that is not JSON: {data[:200]!r}",
                details={"url": self.url},
            ) from exc
        if isinstance(event, dict) and event.get("error"):
            raise GeneratorUnavailable(
                f"the server at {self.url} reported an error while streaming: {event['error']}",
                details={"url": self.url},
            )
        try:
            choices = event.get("choices") or []
            delta = (choices[0].get("delta") or {}) if choices else {}
            return str(delta.get("content") or "")
        except (AttributeError, TypeError):
            log.warning("unexpected stream event url=%s event=%.200s", self.url, data)
            return ""
