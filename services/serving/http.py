"""HTTP plumbing every alphagrpo service shares (FastAPI): one ``ErrorResponse`` for every error, typed
domain errors mapped to status codes in one place, body-size limits, bearer-token auth, request
metrics, and ``/metrics``. Services build their app with :func:`install`; routes stay thin.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from dvreward.schemas import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

# Paths that never need a key and are not timed per request.
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"})
ERROR_RESPONSES = {
    400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
    422: {"model": ErrorResponse}, 429: {"model": ErrorResponse}, 500: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}  # fmt: skip


class ServiceError(Exception):
    """A domain error with its HTTP status; the one handler below turns it into an ``ErrorResponse``."""

    status = 500
    type = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, limit: float | None = None,
                 retry_after_s: float | None = None):  # fmt: skip
        super().__init__(message)
        self.message, self.field, self.limit, self.retry_after_s = message, field, limit, retry_after_s


class LimitExceeded(ServiceError):
    status, type = 422, "limit_exceeded"


class PayloadTooLarge(ServiceError):
    status, type = 413, "payload_too_large"


class Unauthorized(ServiceError):
    status, type = 401, "unauthorized"


class Overloaded(ServiceError):
    status, type = 429, "overloaded"


class BackendUnavailable(ServiceError):
    status, type = 503, "backend_unavailable"


def error_response(status: int, type_: str, message: str, field: str | None = None,
                   limit: float | None = None, headers: dict | None = None) -> JSONResponse:  # fmt: skip
    body = ErrorResponse(error=ErrorDetail(type=type_, message=message, field=field, limit=limit))
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


class ChunkedBodyLimit:
    """ASGI middleware for bodies sent without a Content-Length (chunked transfer encoding): reads the body
    up to the limit and answers 413 as soon as it is exceeded, so a streamed body cannot slip past the limit
    the Content-Length check enforces. Bodies with a Content-Length pass straight through."""

    def __init__(self, app, max_body_bytes: Callable[[], int]):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") or any(
            k == b"content-length" for k, _ in scope["headers"]
        ):
            return await self.app(scope, receive, send)
        limit, body, more = self.max_body_bytes(), bytearray(), True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > limit:
                resp = error_response(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes",
                                      "body", limit)  # fmt: skip
                return await resp(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _loc_to_field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "ctx": {}}
    field = _loc_to_field(tuple(first.get("loc", ())))
    ctx = first.get("ctx") or {}
    limit = next((ctx[k] for k in ("max_length", "min_length", "le", "ge", "lt", "gt") if k in ctx), None)
    limit = limit if isinstance(limit, (int, float)) else None
    msg = f"{field}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})"
    return error_response(422, "validation_error", msg, field, limit)


def install(app: FastAPI, *, service: str, registry: CollectorRegistry, api_key: Callable[[], str | None],
            max_body_bytes: Callable[[], int], request_seconds: Histogram) -> None:  # fmt: skip
    """Error handlers, auth, body limit, request metrics and ``/metrics`` for one service app."""
    app.add_middleware(ChunkedBodyLimit, max_body_bytes=max_body_bytes)

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s is not None else None
        return error_response(exc.status, exc.type, exc.message, exc.field, exc.limit, headers)

    app.add_exception_handler(RequestValidationError, _validation_handler)  # type: ignore[arg-type]

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, type_, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s", service)
        return error_response(500, "internal_error", f"{type(exc).__name__} (see the service log)")

    @app.middleware("http")
    async def _edge(request: Request, call_next):
        path = request.url.path
        t0 = time.perf_counter()
        key = api_key()
        if key and path not in OPEN_PATHS:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), key.encode()):
                return error_response(401, "unauthorized", "missing or wrong API key (Authorization: Bearer <key>)",
                                      headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        limit = max_body_bytes()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return error_response(413, "payload_too_large", f"request body is {length} bytes; the limit is {limit}",
                                  "body", limit)  # fmt: skip
        response = await call_next(request)
        if path not in OPEN_PATHS:
            route = request.scope.get("route")
            label = getattr(route, "path", "unmatched")
            request_seconds.labels(route=label, status=str(response.status_code)).observe(time.perf_counter() - t0)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
