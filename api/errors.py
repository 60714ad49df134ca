"""The one table that maps errors to HTTP statuses, and the handlers that apply it.

Every error body has the same shape::

    {"error": {"code": "document_not_found", "message": "...", "details": {}}}

Routers raise the exceptions of :mod:`rag.errors` and never build error
responses themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from rag.errors import (
    ConfigError,
    Conflict,
    EmptyDocument,
    EncryptedDocument,
    FileTooLarge,
    Forbidden,
    GeneratorUnavailable,
    IndexInconsistent,
    InvalidInput,
    NotFound,
    ParseError,
    QueryRejected,
    RagError,
    RateLimited,
    Unauthorized,
    UnsupportedFileType,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

# The one mapping table. Lookup walks the exception's MRO, so a subclass not
# listed (e.g. a new NotFound) takes its parent's status.
STATUS_BY_ERROR: dict[type[RagError], int] = {
    InvalidInput: 422,
    QueryRejected: 422,
    ParseError: 422,
    EncryptedDocument: 422,
    EmptyDocument: 422,
    FileTooLarge: 413,
    UnsupportedFileType: 415,
    UnsupportedMediaType: 415,
    NotFound: 404,
    Conflict: 409,
    Unauthorized: 401,
    Forbidden: 403,
    RateLimited: 429,
    GeneratorUnavailable: 503,
    ConfigError: 500,
    IndexInconsistent: 500,
    RagError: 500,
}

# Framework-level HTTP errors (unknown route, wrong method) get codes too.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: BaseException) -> int:
    """HTTP status of an exception (500 for anything not in the table)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    return 500


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    """The JSON error body shared by every error response (and SSE error events)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def body_for(exc: BaseException) -> dict:
    """Error body for any exception; unexpected ones reveal no internals."""
    if isinstance(exc, RagError):
        return error_body(exc.code, exc.message, exc.details)
    return error_body("internal_error", "internal server error; see the server log for details")


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON response for an exception, with its status from the table."""
    if isinstance(exc, RateLimited) and headers is None:
        retry = exc.details.get("retry_after_s")
        headers = {"Retry-After": str(retry)} if retry is not None else None
    if isinstance(exc, Unauthorized) and headers is None:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(body_for(exc), status_code=status_for(exc), headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]


async def _rag_error(_: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.error("request failed code=%s message=%s", getattr(exc, "code", "?"), exc)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_details(exc)
    if any(err["type"] == "json_invalid" for err in errors):
        return JSONResponse(
            error_body("malformed_json", "the request body is not valid JSON", {"errors": errors}),
            status_code=400,
        )
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return JSONResponse(
        error_body("validation_error", f"{where}: {first['msg']}", {"errors": errors}),
        status_code=422,
    )


def _leaf_routes(routes: Any) -> Any:
    """The routes of an app, looking inside included routers.

    FastAPI keeps an included router as one node (``original_router``); the
    routers here carry their prefix themselves and are included without one.
    """
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (for a 405's Allow header).

    Starlette answers 405 from the first route whose path matches, so a path
    served by several routes (GET and DELETE /documents/{id}) would list one.
    """
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route_methods)
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, RagError):
        # FastAPI wraps errors raised while reading the body (e.g. the size limit) in a 400.
        return error_response(exc.__cause__)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return JSONResponse(
        error_body(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=headers or None,
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error type=%s", type(exc).__name__, exc_info=exc)
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the error body."""
    app.add_exception_handler(RagError, _rag_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
