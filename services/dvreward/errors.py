"""Typed exceptions of the DVReward client (never a bare ``Exception``)."""

from __future__ import annotations

from dvreward.schemas import ErrorResponse


class DVRewardError(Exception):
    """Base class of every error the client raises."""


class TransportError(DVRewardError):
    """The service could not be reached (connection refused, reset, timed out), after retries."""


class ServiceError(DVRewardError):
    """The service answered with an error status. ``error`` is its parsed ``ErrorResponse`` if any."""

    def __init__(self, status: int, message: str, error: ErrorResponse | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.error = error


class BadRequest(ServiceError):
    """4xx other than 429: the request itself is wrong; retrying will not help."""


class RateLimited(ServiceError):
    """429 after every retry; ``retry_after`` is the server's last hint in seconds."""

    def __init__(self, status: int, message: str, error: ErrorResponse | None = None, retry_after: float | None = None):
        super().__init__(status, message, error)
        self.retry_after = retry_after


class ServiceUnavailable(ServiceError):
    """5xx after every retry."""


class ProtocolError(DVRewardError):
    """The service answered 2xx with a body that does not match the schema."""
