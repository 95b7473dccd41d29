"""The ``openai`` verifier backend: an OpenAI-compatible chat server (vLLM, SGLang) reading P(yes) from the
first answer token's top log-probs.

Per (image, question): system prompt, user turn [image as a data URI, question], temperature 0,
``max_tokens`` 1, ``logprobs`` with ``top_logprobs`` (vLLM caps it at 20, its default ``max_logprobs``).
The yes and no spellings among the alternatives are summed; neither present is NaN with a reason, never a
guess. All questions of one image are sent back to back so the server's prefix cache reuses the image's
keys/values; concurrency is bounded; transport errors, 429 and 5xx are retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from dvreward.client import is_retryable_http
from dvreward.schemas import QuestionScore
from verifier.backends.base import ScoreItem, VerifierBackend
from verifier.backends.hf import SYSTEM_PROMPT
from verifier.images import data_uri
from verifier.scoring import (
    REASON_BACKEND,
    REASON_BAD_RESPONSE,
    REASON_NO_LOGPROBS,
    failed,
    score_from_top_logprobs,
)

log = logging.getLogger(__name__)


class OpenAIVerifier(VerifierBackend):
    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str = "EMPTY", top_logprobs: int = 20,
                 concurrency: int = 64, timeout_s: float = 60.0, max_attempts: int = 4,
                 system_prompt: str = SYSTEM_PROMPT):  # fmt: skip
        self.model, self.top_logprobs, self.max_attempts = model, top_logprobs, max_attempts
        self.system_prompt = system_prompt
        self._args = dict(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout_s, connect=5.0),
                          headers={"authorization": f"Bearer {api_key}"},
                          limits=httpx.Limits(max_connections=concurrency))  # fmt: skip
        self._http: httpx.AsyncClient | None = None
        self._sem = asyncio.Semaphore(concurrency)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(**self._args)
        return self._http

    def body(self, image_uri: str, question: str) -> dict:
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_uri}},
                                             {"type": "text", "text": question}]},  # fmt: skip
            ],
            "temperature": 0.0,
            "max_tokens": 1,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }

    async def score_one(self, image_uri: str, qid: str, question: str) -> QuestionScore:
        async with self._sem:
            try:
                async for attempt in AsyncRetrying(stop=stop_after_attempt(self.max_attempts), reraise=True,
                                                   wait=wait_exponential_jitter(initial=0.2, max=5.0),
                                                   retry=retry_if_exception(is_retryable_http)):  # fmt: skip
                    with attempt:
                        r = await self._client().post("/chat/completions", json=self.body(image_uri, question))
                        r.raise_for_status()
            except httpx.HTTPStatusError as e:
                log.warning("verifier server answered %s for question %s", e.response.status_code, qid)
                return failed(qid, REASON_BACKEND)
            except httpx.HTTPError as e:
                log.warning("verifier server unreachable: %s", e)
                return failed(qid, REASON_BACKEND)
        try:
            logprobs = r.json()["choices"][0].get("logprobs")
            if not logprobs or not logprobs.get("content"):  # e.g. `transformers serve` drops logprobs
                return failed(qid, REASON_NO_LOGPROBS)
            top = logprobs["content"][0]["top_logprobs"]
            return score_from_top_logprobs(qid, [(t["token"], t["logprob"]) for t in top])
        except (ValueError, KeyError, IndexError, TypeError):
            return failed(qid, REASON_BAD_RESPONSE)

    async def ascore_batch(self, items: list[ScoreItem]) -> list[list[QuestionScore]]:
        async def item(it: ScoreItem) -> list[QuestionScore]:
            uri = data_uri(it.image_b64, it.mime)
            return list(await asyncio.gather(*(self.score_one(uri, qid, q) for qid, q in it.questions)))

        return list(await asyncio.gather(*(item(it) for it in items)))

    def score_batch(self, items: list[ScoreItem]) -> list[list[QuestionScore]]:
        return asyncio.run(self.ascore_batch(items))

    def close(self) -> None:
        self._http = None
