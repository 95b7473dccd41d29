"""Thin routes of the verifier: /v1/verify, /v1/reward, health and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dvreward.schemas import HealthResponse, RewardRequest, RewardResponse, VerifyRequest, VerifyResponse
from serving.http import ERROR_RESPONSES, BackendUnavailable
from verifier.service import VerifierService

router = APIRouter()


def _service(request: Request) -> VerifierService:
    svc = request.app.state.service
    if svc is None:
        state = request.app.state.load_state
        raise BackendUnavailable(f"the verifier model is {state['status']}: {state['detail']}", retry_after_s=5)
    return svc


@router.post("/v1/verify", response_model=VerifyResponse, responses=ERROR_RESPONSES, tags=["verify"])
async def verify(body: VerifyRequest, request: Request) -> VerifyResponse:
    """P(yes) for every question of every image (normalised P_yes / (P_yes + P_no), with the raw masses)."""
    svc = _service(request)
    return VerifyResponse(results=await svc.verify(body.items), model=svc.backend.model)


@router.post("/v1/reward", response_model=RewardResponse, responses=ERROR_RESPONSES, tags=["reward"])
async def reward(body: RewardRequest, request: Request) -> RewardResponse:
    """DVReward per item: questions from the item or the decomposer, P(yes) per question, one aggregated reward."""
    results = await _service(request).reward(body)
    return RewardResponse(results=results, aggregation=body.aggregation, nan_policy=body.nan_policy)


@router.get("/health", response_model=HealthResponse, tags=["ops"])
async def health(request: Request):
    """200 once the model is loaded and answering; 503 while loading or after a failed load."""
    state = request.app.state.load_state
    svc = request.app.state.service
    ok = svc is not None and svc.backend.ready()
    body = HealthResponse(status="ok" if ok else state["status"], backend=state["backend"],
                          model=svc.backend.model if svc else "", revision=svc.backend.revision if svc else "",
                          detail=state["detail"])  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/ready", response_model=HealthResponse, tags=["ops"])
async def ready(request: Request):
    """Same as /health."""
    return await health(request)
