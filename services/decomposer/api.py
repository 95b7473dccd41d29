"""Thin routes of the decomposer: validate limits, call the service, return the wire model."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from decomposer.service import DecomposerService
from decomposer.settings import DecomposerSettings
from dvreward.schemas import DecomposeRequest, DecomposeResponse, HealthResponse
from serving.http import ERROR_RESPONSES, LimitExceeded

router = APIRouter()


def _service(request: Request) -> DecomposerService:
    return request.app.state.service


def _settings(request: Request) -> DecomposerSettings:
    return request.app.state.settings


@router.post("/v1/decompose", response_model=DecomposeResponse, responses=ERROR_RESPONSES, tags=["decompose"])
async def decompose(body: DecomposeRequest, request: Request) -> DecomposeResponse:
    """Decompose a batch of prompts into semantic and quality yes/no questions (one result per prompt)."""
    s = _settings(request)
    if len(body.prompts) > s.max_prompts:
        raise LimitExceeded(f"prompts: {len(body.prompts)} prompts; the limit is {s.max_prompts} per request",
                            field="prompts", limit=s.max_prompts)  # fmt: skip
    for i, p in enumerate(body.prompts):
        if len(p) > s.max_prompt_chars:
            raise LimitExceeded(f"prompts[{i}]: {len(p)} characters; the limit is {s.max_prompt_chars}",
                                field=f"prompts[{i}]", limit=s.max_prompt_chars)  # fmt: skip
    results = await _service(request).decompose(body.prompts)
    return DecomposeResponse(results=results)


@router.get("/health", response_model=HealthResponse, tags=["ops"])
async def health(request: Request):
    """200 while the backend can answer; 503 otherwise."""
    svc = _service(request)
    ok = svc.ready()
    body = HealthResponse(status="ok" if ok else "dead", backend=svc.backend.name, model=svc.backend.model)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/ready", response_model=HealthResponse, tags=["ops"])
async def ready(request: Request):
    """Same as /health: ready once the backend is loaded (the rules backend always is)."""
    return await health(request)
