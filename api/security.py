"""API keys, per-client rate limits and the request body size limit (ASGI middleware).

Each is plain ASGI so it also guards streamed responses and reads the body
without buffering it. Errors are the exceptions of :mod:`rag.errors`, turned
into responses by :func:`api.errors.error_response`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access import KeyPolicy, attach_access
from api.errors import error_response
from rag.errors import FileTooLarge, RateLimited, Unauthorized

# Paths anyone may read even when API keys are set: liveness and the web page
# (which asks the user for a key and sends it with its API calls).
PUBLIC_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)


def is_public(path: str) -> bool:
    """True for routes that need no API key."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if any."""
    value = _header(scope, b"authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def client_identity(scope: Scope) -> str:
    """Rate-limit key: a hash of the bearer token, else the client address."""
    token = bearer_token(scope)
    if token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class ApiKeyMiddleware:
    """Require ``Authorization: Bearer KEY`` on every non-public route when keys are set.

    It also resolves the key to what it may reach (:mod:`api.access`) and
    leaves that in the request scope for the routers' ``Access`` dependency.
    """

    def __init__(self, app: ASGIApp, policy: KeyPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        access = self.policy.resolve(token)
        if access is not None:
            attach_access(scope, access)
        if access is not None or scope.get("method") == "OPTIONS" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        reason = "missing" if token is None else "wrong"
        exc = Unauthorized(
            f"API key {reason}: send 'Authorization: Bearer <key>' with a key from "
            "RAG_API__API_KEYS or RAG_API__KEY_COLLECTIONS"
        )
        await error_response(exc)(scope, receive, send)


class FixedWindowLimiter:
    """At most ``limit`` requests per client in each calendar minute (thread-safe)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Count a request; seconds to wait when over the limit, else None."""
        now = time.time() if now is None else now
        window = int(now // self.window_s)
        with self._lock:
            start, count = self._counts.get(key, (window, 0))
            if start != window:
                start, count = window, 0
                if len(self._counts) > 10_000:  # forget old windows of departed clients
                    self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
            count += 1
            self._counts[key] = (start, count)
        if count > self.limit:
            return (window + 1) * self.window_s - now
        return None


class RateLimitMiddleware:
    """Answer 429 once a key or client exceeds its per-minute budget."""

    def __init__(self, app: ASGIApp, per_minute: int) -> None:
        self.app = app
        self.limiter = FixedWindowLimiter(per_minute) if per_minute > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or self.limiter is None or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        wait = self.limiter.hit(client_identity(scope))
        if wait is not None:
            retry = max(1, int(wait + 0.999))
            exc = RateLimited(
                f"rate limit of {self.limiter.limit} requests per minute exceeded; "
                f"retry in {retry} s",
                details={"limit_per_minute": self.limiter.limit, "retry_after_s": retry},
            )
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 (by header, or while reading)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self, size: int | None) -> FileTooLarge:
        limit_mb = self.max_bytes / 2**20
        said = f"{size / 2**20:.1f} MiB" if size is not None else "larger than the limit"
        return FileTooLarge(
            f"request body is {said}, over the {limit_mb:g} MiB limit; send fewer or smaller "
            "files or raise RAG_API__MAX_REQUEST_MB",
            details={"limit_bytes": self.max_bytes},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            await error_response(self._error(int(length)))(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised into the app, whose error handlers answer 413.
                    raise self._error(None)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except FileTooLarge as exc:
            if started:
                raise
            await error_response(exc)(scope, receive, send)


def scope_summary(scope: Scope) -> dict[str, Any]:
    """Method and path of a request (for log lines)."""
    return {"method": scope.get("method"), "path": scope.get("path")}
