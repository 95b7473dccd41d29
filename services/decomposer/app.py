"""The decomposer FastAPI app: ``create_app(settings)`` builds backend, cache, service and routes.

Run it with ``alphagrpo serve decomposer`` (settings from ``DECOMPOSER_*``), or in tests with
``create_app(DecomposerSettings(...))`` and any ASGI client.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from decomposer.api import router
from decomposer.backends import build_backend
from decomposer.backends.base import DecomposerBackend
from decomposer.cache import DecompositionCache, LocalCache, RedisCache
from decomposer.metrics import DecomposerMetrics
from decomposer.service import DecomposerService
from decomposer.settings import DecomposerSettings, get_settings
from serving.http import install

log = logging.getLogger(__name__)


def build_cache(settings: DecomposerSettings, metrics: DecomposerMetrics) -> DecompositionCache:
    if settings.redis_url:
        return RedisCache(
            settings.redis_url, settings.cache_ttl_s, metrics, timeout_s=settings.redis_timeout_s,
            retry_after_s=settings.redis_retry_after_s, lock_s=settings.singleflight_lock_s,
        )  # fmt: skip
    log.info("no DECOMPOSER_REDIS_URL: using an in-process LRU of %d entries", settings.lru_size)
    return LocalCache(settings.lru_size, settings.cache_ttl_s)


def create_app(settings: DecomposerSettings | None = None, backend: DecomposerBackend | None = None) -> FastAPI:
    """The app; ``backend`` replaces the one the settings name (tests and benchmarks wrap backends)."""
    settings = settings or get_settings()
    metrics = DecomposerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        chosen = backend or build_backend(settings, metrics)
        cache = build_cache(settings, metrics)
        app.state.service = DecomposerService(chosen, cache, metrics, follow_timeout_s=settings.singleflight_wait_s)
        log.info("decomposer ready: backend=%s model=%s", chosen.name, chosen.model)
        yield
        await app.state.service.aclose()

    app = FastAPI(
        title="alphagrpo decomposer",
        version="0.1.0",
        description="Prompts to atomic, verifiable yes/no questions (DVReward), cached in Redis.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    key = settings.api_key.get_secret_value() if settings.api_key else None
    install(app, service="decomposer", registry=metrics.registry, api_key=lambda: key,
            max_body_bytes=lambda: settings.max_body_bytes, request_seconds=metrics.request_seconds)  # fmt: skip
    app.include_router(router)
    return app
