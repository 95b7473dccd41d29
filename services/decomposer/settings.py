"""Decomposer settings, read from ``DECOMPOSER_*`` environment variables (pydantic-settings).

``get_settings()`` is cached and used as a FastAPI dependency, so tests pass their own settings to
``create_app(settings)`` instead of touching the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dvreward.schemas import MAX_PROMPT_CHARS, MAX_PROMPTS_PER_REQUEST


class DecomposerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DECOMPOSER_", env_file=None, extra="ignore")

    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8001, ge=0, le=65535, description="port to bind (0 = any free port)")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    api_key: SecretStr | None = Field(None, description="when set, every non-health endpoint needs Bearer <key>")

    backend: Literal["rules", "openai", "hf"] = Field("rules", description="which backend decomposes")
    rules_lexicon: str | None = Field(None, description="JSON file extending the rules backend's vocabulary")

    # Request limits (each reported by name in a 422 when exceeded).
    max_prompts: int = Field(256, ge=1, le=MAX_PROMPTS_PER_REQUEST, description="prompts per request")
    max_prompt_chars: int = Field(1000, ge=1, le=MAX_PROMPT_CHARS, description="characters per prompt")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="request body size")

    # Cache.
    redis_url: str | None = Field(None, description="redis://host:port/db; unset = in-process LRU only")
    cache_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="lifetime of a cached decomposition")
    lru_size: int = Field(10_000, ge=0, description="in-process LRU entries (used when Redis is unset)")
    redis_timeout_s: float = Field(0.25, gt=0, description="per-operation Redis timeout; an outage costs this")
    redis_retry_after_s: float = Field(2.0, ge=0, description="after a Redis error, skip Redis this long")
    singleflight_lock_s: float = Field(30.0, gt=0, description="how long a leader holds the cross-worker lock")
    singleflight_wait_s: float = Field(30.0, gt=0, description="how long a follower waits for the leader")

    # openai backend.
    openai_base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible /v1 root")
    openai_model: str = Field("Qwen/Qwen3-8B", description="model name sent to the server")
    openai_api_key: SecretStr = Field(SecretStr("EMPTY"), description="key for the LLM server")
    openai_response_format: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="how to force JSON: vLLM/SGLang honour json_schema; 'none' relies on repair"
    )
    openai_max_attempts: int = Field(3, ge=1, le=10, description="tries per prompt when the answer is not valid")
    openai_timeout_s: float = Field(120.0, gt=0, description="per LLM call")
    openai_concurrency: int = Field(16, ge=1, le=1024, description="LLM calls in flight per worker")
    openai_max_tokens: int = Field(1500, ge=16, description="max tokens of one decomposition answer")
    openai_temperature: float = Field(0.0, ge=0, le=2)
    validate_questions: bool = Field(True, description="second LLM pass that drops questions not strictly needed")

    # hf backend.
    hf_model_path: str | None = Field(None, description="local folder of a transformers causal LM")
    hf_max_new_tokens: int = Field(768, ge=8)
    hf_constrained: bool = Field(
        False, description="JSON-schema constrained decoding (lm-format-enforcer); see the backend docstring"
    )
    hf_device: str = Field("cpu")

    @model_validator(mode="after")
    def _check(self) -> DecomposerSettings:
        if self.backend == "hf" and not self.hf_model_path:
            raise ValueError("DECOMPOSER_BACKEND=hf needs DECOMPOSER_HF_MODEL_PATH (a local model folder)")
        return self


@lru_cache
def get_settings() -> DecomposerSettings:
    return DecomposerSettings()
