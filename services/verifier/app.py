"""The verifier FastAPI app: ``create_app(settings)``; the model loads on a worker thread after start-up,
so ``/health`` answers 503 ("loading") at once and 200 when scoring can begin.

Run it with ``alphagrpo serve verifier`` (settings from ``VERIFIER_*``).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from serving.http import install
from verifier.api import router
from verifier.backends.base import VerifierBackend
from verifier.metrics import VerifierMetrics
from verifier.service import VerifierService
from verifier.settings import VerifierSettings, get_settings

log = logging.getLogger(__name__)


def build_backend(settings: VerifierSettings) -> VerifierBackend:
    if settings.backend == "openai":
        from verifier.backends.openai import OpenAIVerifier

        kw = {"system_prompt": settings.system_prompt} if settings.system_prompt else {}
        return OpenAIVerifier(settings.openai_base_url, settings.openai_model,
                              api_key=settings.openai_api_key.get_secret_value(),
                              top_logprobs=settings.openai_top_logprobs, concurrency=settings.openai_concurrency,
                              timeout_s=settings.openai_timeout_s, **kw)  # fmt: skip
    from verifier.backends.hf import HFVerifier
    from verifier.models import resolve_model_path

    kw = {"system_prompt": settings.system_prompt} if settings.system_prompt else {}
    return HFVerifier(resolve_model_path(settings.hf_model_path), device=settings.hf_device, dtype=settings.hf_dtype,
                      max_pairs=settings.hf_max_pairs, shared_prefix=settings.hf_shared_prefix, **kw)  # fmt: skip


def create_app(settings: VerifierSettings | None = None, backend: VerifierBackend | None = None) -> FastAPI:
    """The app; ``backend`` replaces the one the settings name (tests and benchmarks)."""
    settings = settings or get_settings()
    metrics = VerifierMetrics()

    async def load(app: FastAPI) -> None:
        try:
            chosen = backend or await asyncio.to_thread(build_backend, settings)
        except Exception as e:  # a model that cannot load leaves the service up, unhealthy, and saying why
            log.exception("verifier backend failed to load")
            app.state.load_state.update(status="dead", detail=f"{type(e).__name__}: {e}")
            return
        service = VerifierService(chosen, settings, metrics)
        service.start()
        app.state.service = service
        app.state.load_state.update(status="ok", detail="")
        log.info("verifier ready: backend=%s model=%s", chosen.name, chosen.model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(load(app))
        yield
        task.cancel()
        if app.state.service is not None:
            await app.state.service.aclose()

    app = FastAPI(title="alphagrpo verifier", version="0.1.0", lifespan=lifespan,
                  description="P(yes) per question from a multimodal LLM, and DVReward (/v1/reward).")  # fmt: skip
    app.state.settings, app.state.metrics, app.state.service = settings, metrics, None
    app.state.load_state = {"status": "loading", "detail": "the model is loading", "backend": settings.backend}
    key = settings.api_key.get_secret_value() if settings.api_key else None
    install(app, service="verifier", registry=metrics.registry, api_key=lambda: key,
            max_body_bytes=lambda: settings.max_body_bytes, request_seconds=metrics.request_seconds)  # fmt: skip
    app.include_router(router)
    return app
