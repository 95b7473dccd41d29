"""Verifier settings, read from ``VERIFIER_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dvreward.schemas import MAX_ITEMS_PER_REQUEST, MAX_QUESTIONS


class VerifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERIFIER_", env_file=None, extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8002, ge=0, le=65535, description="port to bind")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    api_key: SecretStr | None = Field(None, description="when set, every non-health endpoint needs Bearer <key>")

    backend: Literal["hf", "openai"] = Field("hf", description="which backend scores")
    hf_model_path: str | None = Field(None, description="local VLM folder; unset = the embedded default model")
    hf_device: str = Field("cpu")
    hf_dtype: Literal["float32", "bfloat16", "float16"] = Field("float32")
    hf_shared_prefix: bool = Field(True, description="one image prefill shared by all its questions")
    hf_max_pairs: int = Field(64, ge=1, description="(image, question) pairs per suffix forward")
    system_prompt: str | None = Field(None, description="overrides the built-in auditor prompt")

    openai_base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible /v1 root")
    openai_model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="model name sent to the server")
    openai_api_key: SecretStr = Field(SecretStr("EMPTY"))
    openai_top_logprobs: int = Field(20, ge=1, le=100, description="vLLM caps this at its max_logprobs (20)")
    openai_concurrency: int = Field(64, ge=1, le=4096, description="requests in flight to the server")
    openai_timeout_s: float = Field(60.0, gt=0)

    # Batching.
    max_batch_images: int = Field(16, ge=1, le=1024, description="images per backend batch")
    max_batch_questions: int = Field(256, ge=1, description="questions per backend batch")
    max_wait_ms: float = Field(10.0, ge=0, description="how long the first image of a batch waits for company")
    max_queue: int = Field(512, ge=1, description="images waiting; beyond this requests get 429")
    request_timeout_s: float = Field(120.0, gt=0, description="deadline of one request's scoring")

    # Limits (each named in the 413/422 it causes).
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="request body size")
    max_items: int = Field(64, ge=1, le=MAX_ITEMS_PER_REQUEST, description="images per request")
    max_questions: int = Field(64, ge=1, le=MAX_QUESTIONS, description="questions per image")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="pixels per image (decompression-bomb guard)")
    max_aspect_ratio: float = Field(64.0, ge=1, description="longest over shortest side")

    # /v1/reward.
    decomposer_url: str = Field("http://127.0.0.1:8001", description="decomposer base URL for missing questions")
    decomposer_api_key: SecretStr | None = None
    decomposer_timeout_s: float = Field(60.0, gt=0)


@lru_cache
def get_settings() -> VerifierSettings:
    return VerifierSettings()
