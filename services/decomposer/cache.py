"""Decomposition caches: Redis (shared by every worker and replica) or an in-process LRU.

Key = sha256 of (normalised prompt, backend, model, template version), under a schema-versioned
prefix, so a new template or model never serves old answers. The Redis cache also carries the
cross-worker single-flight lock (``acquire``/``release``, a token lock with expiry).

Redis trouble never fails a request: every operation has a short timeout; an error is logged (at most
once per outage), counted in ``alphagrpo_decomposer_redis_errors_total``, and Redis is then skipped for
``redis_retry_after_s`` so an outage costs one timeout, not one per request. Answers go uncached
meanwhile; the cache resumes by itself once Redis answers again.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from abc import ABC, abstractmethod
from collections import OrderedDict

from decomposer.metrics import DecomposerMetrics
from dvreward.schemas import SCHEMA_VERSION, Decomposition

log = logging.getLogger(__name__)
_PREFIX = f"alphagrpo:decompose:v{SCHEMA_VERSION}:"


def normalise_prompt(prompt: str) -> str:
    """Unicode NFC and collapsed whitespace; case is kept (quoted text to render is case-sensitive)."""
    return " ".join(unicodedata.normalize("NFC", prompt).split())


def cache_key(prompt: str, backend: str, model: str, template_version: str) -> str:
    blob = "\x1f".join((normalise_prompt(prompt), backend, model, template_version))
    return _PREFIX + hashlib.sha256(blob.encode()).hexdigest()


class DecompositionCache(ABC):
    @abstractmethod
    async def get_many(self, keys: list[str]) -> dict[str, Decomposition]: ...

    @abstractmethod
    async def set(self, key: str, value: Decomposition) -> None: ...

    async def acquire(self, key: str) -> bool:
        """Try to become the one worker that computes ``key``; True without a shared store."""
        return True

    async def release(self, key: str) -> None:  # noqa: B027 - nothing to release by default
        pass

    async def lock_held(self, key: str) -> bool:
        return False

    async def aclose(self) -> None:  # noqa: B027
        pass


class LocalCache(DecompositionCache):
    """In-process LRU with TTL (used when no Redis is configured)."""

    def __init__(self, size: int, ttl_s: float):
        self.size, self.ttl_s = size, ttl_s
        self._data: OrderedDict[str, tuple[float, Decomposition]] = OrderedDict()

    async def get_many(self, keys: list[str]) -> dict[str, Decomposition]:
        now, out = time.monotonic(), {}
        for k in keys:
            item = self._data.get(k)
            if item and item[0] > now:
                self._data.move_to_end(k)
                out[k] = item[1]
            elif item:
                del self._data[k]
        return out

    async def set(self, key: str, value: Decomposition) -> None:
        if self.size <= 0:
            return
        self._data[key] = (time.monotonic() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class RedisCache(DecompositionCache):
    def __init__(
        self, url: str, ttl_s: int, metrics: DecomposerMetrics, *, timeout_s: float = 0.25,
        retry_after_s: float = 2.0, lock_s: float = 30.0,
    ):  # fmt: skip
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self.ttl_s, self.metrics, self.retry_after_s, self.lock_s = ttl_s, metrics, retry_after_s, lock_s
        self._down_until = 0.0
        self._locks: dict[str, object] = {}
        self._warned = False

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: Exception) -> None:
        self.metrics.redis_errors_total.labels(op=op).inc()
        self.metrics.cache_total.labels(result="error").inc()
        self._down_until = time.monotonic() + self.retry_after_s
        if not self._warned:
            log.warning("Redis unavailable (%s: %s); answering uncached until it is back", op, exc)
            self._warned = True

    def _ok(self) -> None:
        if self._warned:
            log.warning("Redis is back; caching resumed")
            self._warned = False

    async def get_many(self, keys: list[str]) -> dict[str, Decomposition]:
        if not keys or not self._available():
            return {}
        try:
            values = await self._redis.mget(keys)
        except Exception as e:  # redis errors, timeouts, OSError: all mean "no cache now"
            self._failed("get", e)
            return {}
        self._ok()
        out = {}
        for k, v in zip(keys, values):
            if v is not None:
                try:
                    out[k] = Decomposition.model_validate_json(v)
                except ValueError:
                    log.warning("dropping a cached value that no longer parses (key %s)", k[-12:])
        return out

    async def set(self, key: str, value: Decomposition) -> None:
        if not self._available():
            return
        try:
            await self._redis.set(key, value.model_dump_json(), ex=self.ttl_s)
            self._ok()
        except Exception as e:
            self._failed("set", e)

    async def acquire(self, key: str) -> bool:
        if not self._available():
            return True
        lock = self._redis.lock(key + ":lock", timeout=self.lock_s, blocking=False)
        try:
            got = await lock.acquire()
        except Exception as e:
            self._failed("lock", e)
            return True
        if got:
            self._locks[key] = lock
        return bool(got)

    async def release(self, key: str) -> None:
        # Tried even while Redis is marked down: a leader whose `set` just timed out must not leave its lock
        # behind, or other workers would wait out the lock's whole expiry for an answer that never comes.
        lock = self._locks.pop(key, None)
        if lock is None:
            return
        try:
            await lock.release()  # type: ignore[attr-defined]
        except Exception as e:  # expired (LockNotOwnedError) or Redis gone: the expiry frees it anyway
            log.debug("lock release for %s failed: %s", key[-12:], e)

    async def lock_held(self, key: str) -> bool:
        if not self._available():
            return False
        try:
            return bool(await self._redis.exists(key + ":lock"))
        except Exception as e:
            self._failed("lock", e)
            return False

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()
