"""Typed HTTP client SDK for the DVReward services (sync and async, httpx + tenacity).

    from dvreward.client import DecomposerClient
    with DecomposerClient("http://127.0.0.1:8001") as c:
        d = c.decompose(["a photo of two red apples"]).results[0].decomposition

Retries (``RetryPolicy``): connection failures (refused, reset, connect/pool timeouts), 429 (honouring
``Retry-After``) and 5xx only, with capped exponential backoff and jitter. A read timeout is *not*
retried: the server may still be working on it, and a hanging backend should surface, not multiply.
4xx raise ``BadRequest`` at once. Every error is a subclass of ``DVRewardError``.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from dvreward.errors import (
    BadRequest,
    ProtocolError,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    TransportError,
)
from dvreward.schemas import (
    DecomposeRequest,
    DecomposeResponse,
    ErrorResponse,
    HealthResponse,
    RewardItem,
    RewardRequest,
    RewardResponse,
    VerifyItem,
    VerifyRequest,
    VerifyResponse,
)

R = TypeVar("R", bound=BaseModel)

# Transport failures after which the request certainly or very probably did not run: safe to retry.
_RETRYABLE_TRANSPORT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # total tries, first one included
    backoff_s: float = 0.2  # first wait; doubles each retry
    max_backoff_s: float = 10.0  # cap of any single wait, Retry-After included
    jitter: float = 0.25  # +-25 % randomisation, so many clients do not retry in lockstep


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 5.0
    read_s: float = 120.0  # a large batch on a busy verifier can legitimately take a while


class _RetryableStatus(Exception):
    """Internal: a 429 or 5xx answer that the retry loop may try again."""

    def __init__(self, response: httpx.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_RetryableStatus, *_RETRYABLE_TRANSPORT))


def is_retryable_http(exc: BaseException) -> bool:
    """For code that calls other HTTP servers with httpx (``raise_for_status``): the same rule as this
    client, connection failures, 429 and 5xx. Used by the LLM/MLLM backends of the services."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, _RETRYABLE_TRANSPORT)


def _http_kwargs(base_url: str, api_key: str | None, timeouts: Timeouts) -> dict:
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


def _make_wait(policy: RetryPolicy):
    def wait(state: RetryCallState) -> float:
        base = min(policy.max_backoff_s, policy.backoff_s * 2 ** (state.attempt_number - 1))
        base *= 1 + random.uniform(-policy.jitter, policy.jitter)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus) and exc.response.status_code == 429:
            hinted = _retry_after_s(exc.response)
            if hinted is not None:
                base = hinted
        return min(policy.max_backoff_s, base)

    return wait


def _parse_error(response: httpx.Response) -> tuple[str, ErrorResponse | None]:
    try:
        err = ErrorResponse.model_validate_json(response.content)
        return err.error.message, err
    except ValidationError:
        return response.text[:500], None


def _raise_for(response: httpx.Response) -> None:
    message, err = _parse_error(response)
    status = response.status_code
    if status == 429:
        raise RateLimited(status, message, err, _retry_after_s(response))
    if status >= 500:
        raise ServiceUnavailable(status, message, err)
    raise BadRequest(status, message, err)


def _check(response: httpx.Response) -> httpx.Response:
    if response.status_code == 429 or response.status_code >= 500:
        raise _RetryableStatus(response)
    return response


def _decode(response: httpx.Response, model: type[R]) -> R:
    if response.status_code >= 400:
        _raise_for(response)
    try:
        return model.model_validate_json(response.content)
    except ValidationError as e:
        raise ProtocolError(f"{response.request.url} answered a body that is not a {model.__name__}: {e}") from e


class _SyncBase:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
    ):
        self._http = httpx.Client(transport=transport, **_http_kwargs(base_url, api_key, timeouts))
        self._retry = retry

    def _send(self, method: str, path: str, body: BaseModel | None, model: type[R]) -> R:
        retrying = Retrying(
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=_make_wait(self._retry),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        content = body.model_dump_json(exclude_none=True).encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = retrying(lambda: _check(self._http.request(method, path, content=content, headers=headers)))
        except _RetryableStatus as e:
            response = e.response
        except httpx.TransportError as e:
            raise TransportError(f"{method} {self._http.base_url}{path}: {type(e).__name__}: {e}") from e
        return _decode(response, model)

    def health(self) -> HealthResponse:
        return self._send("GET", "/health", None, HealthResponse)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _AsyncBase:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 64,
    ):
        limits = httpx.Limits(max_connections=max_connections)
        self._http = httpx.AsyncClient(transport=transport, limits=limits, **_http_kwargs(base_url, api_key, timeouts))
        self._retry = retry

    async def _send(self, method: str, path: str, body: BaseModel | None, model: type[R]) -> R:
        content = body.model_dump_json(exclude_none=True).encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        response: httpx.Response | None = None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._retry.max_attempts),
                wait=_make_wait(self._retry),
                retry=retry_if_exception(_is_retryable),
                reraise=True,
            ):
                with attempt:
                    response = _check(await self._http.request(method, path, content=content, headers=headers))
        except _RetryableStatus as e:
            response = e.response
        except httpx.TransportError as e:
            raise TransportError(f"{method} {self._http.base_url}{path}: {type(e).__name__}: {e}") from e
        assert response is not None
        return _decode(response, model)

    async def health(self) -> HealthResponse:
        return await self._send("GET", "/health", None, HealthResponse)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()


class DecomposerClient(_SyncBase):
    def decompose(self, prompts: list[str]) -> DecomposeResponse:
        return self._send("POST", "/v1/decompose", DecomposeRequest(prompts=prompts), DecomposeResponse)


class AsyncDecomposerClient(_AsyncBase):
    async def decompose(self, prompts: list[str]) -> DecomposeResponse:
        return await self._send("POST", "/v1/decompose", DecomposeRequest(prompts=prompts), DecomposeResponse)


class VerifierClient(_SyncBase):
    def verify(self, items: list[VerifyItem]) -> VerifyResponse:
        return self._send("POST", "/v1/verify", VerifyRequest(items=items), VerifyResponse)

    def reward(self, items: list[RewardItem], **options: Any) -> RewardResponse:
        return self._send("POST", "/v1/reward", RewardRequest(items=items, **options), RewardResponse)


class AsyncVerifierClient(_AsyncBase):
    async def verify(self, items: list[VerifyItem]) -> VerifyResponse:
        return await self._send("POST", "/v1/verify", VerifyRequest(items=items), VerifyResponse)

    async def reward(self, items: list[RewardItem], **options: Any) -> RewardResponse:
        return await self._send("POST", "/v1/reward", RewardRequest(items=items, **options), RewardResponse)


__all__ = [
    "AsyncDecomposerClient",
    "AsyncVerifierClient",
    "DecomposerClient",
    "RetryPolicy",
    "ServiceError",
    "Timeouts",
    "VerifierClient",
]
