"""The ``openai`` backend: any OpenAI-compatible chat server (vLLM, SGLang, ``transformers serve``).

Per prompt: one decomposition call (JSON forced with ``response_format`` when the server honours it:
``json_schema`` for vLLM/SGLang; ``transformers serve`` ignores it, so answers are parsed, repaired and
retried up to ``openai_max_attempts``), then, if enabled, one validation call that drops questions not
strictly necessary. Calls run concurrently up to ``openai_concurrency``. Transport errors and 429/5xx are
retried with backoff (tenacity); a prompt that still fails becomes a per-item error, never a crash.
Every parse failure is counted in ``alphagrpo_decomposer_parse_failures_total{reason}``.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from decomposer.backends.base import BackendOutput, DecomposerBackend, ItemFailure
from decomposer.llm import (
    DECOMPOSITION_SCHEMA,
    TEMPLATE_VERSION,
    VALIDATION_SCHEMA,
    BadModelOutput,
    apply_validation,
    decompose_prompt_text,
    extract_json,
    questions_from_json,
    validate_prompt_text,
)
from decomposer.metrics import DecomposerMetrics
from dvreward.client import is_retryable_http

log = logging.getLogger(__name__)


class LLMUnavailable(Exception):
    pass


class OpenAIBackend(DecomposerBackend):
    name = "openai"
    template_version = TEMPLATE_VERSION

    def __init__(self, base_url: str, model: str, *, api_key: str = "EMPTY", response_format: str = "json_schema",
                 max_attempts: int = 3, timeout_s: float = 120.0, concurrency: int = 16, max_tokens: int = 1500,
                 temperature: float = 0.0, validate: bool = True,
                 metrics: DecomposerMetrics | None = None):  # fmt: skip
        self.model = model
        self.response_format, self.max_attempts = response_format, max_attempts
        self.max_tokens, self.temperature, self.validate = max_tokens, temperature, validate
        self.metrics = metrics
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=5.0),
            headers={"authorization": f"Bearer {api_key}"}, limits=httpx.Limits(max_connections=concurrency),
        )  # fmt: skip
        self._sem = asyncio.Semaphore(concurrency)
        self.template_version = f"{TEMPLATE_VERSION}+{response_format}+{'val' if validate else 'noval'}"

    @classmethod
    def from_settings(cls, s, metrics: DecomposerMetrics | None = None) -> OpenAIBackend:
        return cls(s.openai_base_url, s.openai_model, api_key=s.openai_api_key.get_secret_value(),
                   response_format=s.openai_response_format, max_attempts=s.openai_max_attempts,
                   timeout_s=s.openai_timeout_s, concurrency=s.openai_concurrency, max_tokens=s.openai_max_tokens,
                   temperature=s.openai_temperature, validate=s.validate_questions, metrics=metrics)  # fmt: skip

    def _format(self, name: str, schema: dict) -> dict | None:
        if self.response_format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        if self.response_format == "json_object":
            return {"type": "json_object"}
        return None

    async def chat(self, content: str, name: str, schema: dict, temperature: float) -> str:
        """One chat completion; returns the message text. Retries transport errors, 429 and 5xx."""
        body: dict = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
            "temperature": temperature,
        }
        fmt = self._format(name, schema)
        if fmt is not None:
            body["response_format"] = fmt
        async with self._sem:
            try:
                async for attempt in AsyncRetrying(stop=stop_after_attempt(4), reraise=True,
                                                   wait=wait_exponential_jitter(initial=0.2, max=5.0),
                                                   retry=retry_if_exception(is_retryable_http)):  # fmt: skip
                    with attempt:
                        r = await self._http.post("/chat/completions", json=body)
                        r.raise_for_status()
            except (httpx.HTTPError, OSError) as e:
                raise LLMUnavailable(f"{type(e).__name__}: {e}") from e
        try:
            return r.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise BadModelOutput("bad_response", f"not a chat completion: {r.text[:200]!r}") from e

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.parse_failures_total.labels(backend=self.name, reason=reason).inc()

    async def decompose_one(self, prompt: str) -> BackendOutput | ItemFailure:
        last = ""
        for attempt in range(self.max_attempts):
            # retries sample a little, so a model stuck on one malformed answer can escape it
            temperature = self.temperature if attempt == 0 else max(self.temperature, 0.7)
            try:
                text = await self.chat(decompose_prompt_text(prompt), "decomposition", DECOMPOSITION_SCHEMA,
                                       temperature)
                questions = questions_from_json(extract_json(text)).questions
                break
            except BadModelOutput as e:
                self._count(e.reason)
                last = f"{e.reason}: {e}"
            except LLMUnavailable as e:
                return ItemFailure("backend_unavailable", f"LLM server: {e}")
        else:
            return ItemFailure("bad_model_output",
                               f"no valid decomposition after {self.max_attempts} attempts ({last})")
        if self.validate:
            try:
                text = await self.chat(validate_prompt_text(prompt, questions), "validation", VALIDATION_SCHEMA, 0.0)
                questions = apply_validation(questions, extract_json(text))
            except BadModelOutput as e:  # validation only filters: keep the questions, count the failure
                self._count(e.reason)
            except LLMUnavailable as e:
                return ItemFailure("backend_unavailable", f"LLM server: {e}")
        return BackendOutput(questions)

    async def decompose_batch(self, prompts: list[str]) -> list[BackendOutput | ItemFailure]:
        return list(await asyncio.gather(*(self.decompose_one(p) for p in prompts)))

    async def aclose(self) -> None:
        await self._http.aclose()
