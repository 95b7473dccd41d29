"""The decomposer service class: cache, single-flight and batching in front of a backend.

For one request: look every distinct prompt up in the cache; for each miss, become its leader (first
in this process *and*, through a Redis lock, first across workers) or follow the leader. Leaders' prompts
go to the backend in one batch; followers wait for the leader's cached answer and compute it themselves
only if the leader vanished. So 50 concurrent identical prompts cost one backend call. A prompt the
backend cannot decompose becomes a per-item error; it is never cached and never fails the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time

from decomposer.backends.base import BackendOutput, DecomposerBackend, ItemFailure
from decomposer.cache import DecompositionCache, cache_key
from decomposer.metrics import DecomposerMetrics
from dvreward.schemas import DecomposeResult, Decomposition, ItemError

log = logging.getLogger(__name__)
_Outcome = tuple[Decomposition | ItemFailure, bool]  # (answer, came from the cache)


class DecomposerService:
    def __init__(
        self, backend: DecomposerBackend, cache: DecompositionCache, metrics: DecomposerMetrics, *,
        follow_timeout_s: float = 30.0,
    ):  # fmt: skip
        self.backend, self.cache, self.metrics = backend, cache, metrics
        self.follow_timeout_s = follow_timeout_s
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}

    def key(self, prompt: str) -> str:
        b = self.backend
        return cache_key(prompt, b.name, b.model, b.template_version)

    async def decompose(self, prompts: list[str]) -> list[DecomposeResult]:
        self.metrics.prompts_total.inc(len(prompts))
        keys = [self.key(p) for p in prompts]
        prompt_of = dict(zip(keys, prompts))
        unique = list(prompt_of)
        found = await self.cache.get_many(unique)
        outcomes: dict[str, _Outcome] = {k: (v, True) for k, v in found.items()}
        self.metrics.cache_total.labels(result="hit").inc(len(found))
        waits: dict[str, asyncio.Future[_Outcome]] = {}
        lead, follow = [], []
        for k in unique:
            if k in outcomes:
                continue
            if k in self._inflight:  # another request in this process is already on it
                self.metrics.cache_total.labels(result="shared").inc()
                waits[k] = self._inflight[k]
                continue
            self.metrics.cache_total.labels(result="miss").inc()
            fut: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
            self._inflight[k] = waits[k] = fut
            (lead if await self.cache.acquire(k) else follow).append(k)
        if lead or follow:
            await asyncio.gather(self._lead(lead, prompt_of), *(self._follow(k, prompt_of) for k in follow))
        for k, fut in waits.items():
            outcomes[k] = await asyncio.shield(fut)
        return [self._result(i, p, outcomes[k]) for i, (p, k) in enumerate(zip(prompts, keys))]

    def _result(self, index: int, prompt: str, outcome: _Outcome) -> DecomposeResult:
        answer, cached = outcome
        if isinstance(answer, ItemFailure):
            self.metrics.item_errors_total.labels(code=answer.code).inc()
            return DecomposeResult(index=index, error=ItemError(code=answer.code, message=answer.message))
        if answer.prompt != prompt:  # the cache key normalises whitespace; echo the caller's prompt
            answer = answer.model_copy(update={"prompt": prompt})
        return DecomposeResult(index=index, decomposition=answer, cached=cached)

    def _settle(self, key: str, outcome: _Outcome) -> None:
        fut = self._inflight.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(outcome)

    async def _lead(self, keys: list[str], prompt_of: dict[str, str]) -> None:
        if not keys:
            return
        b = self.backend
        t0 = time.perf_counter()
        try:
            outputs = await b.decompose_batch([prompt_of[k] for k in keys])
        except Exception as e:  # a backend bug must not lose the batch: every prompt gets an error
            log.exception("backend %s failed on a batch of %d", b.name, len(keys))
            outputs = [ItemFailure("backend_error", f"{type(e).__name__}: {e}")] * len(keys)
        finally:
            self.metrics.backend_seconds.labels(backend=b.name).observe(time.perf_counter() - t0)
            self.metrics.backend_calls_total.labels(backend=b.name).inc(len(keys))
        for k, out in zip(keys, outputs):
            answer = self._to_decomposition(prompt_of[k], out)
            if isinstance(answer, Decomposition):
                await self.cache.set(k, answer)
            await self.cache.release(k)
            self._settle(k, (answer, False))

    def _to_decomposition(self, prompt: str, out: BackendOutput | ItemFailure) -> Decomposition | ItemFailure:
        if isinstance(out, ItemFailure):
            return out
        b = self.backend
        try:
            d = Decomposition(
                prompt=prompt, questions=out.questions, backend=b.name, model=b.model,
                template_version=b.template_version, complete=out.complete, unparsed=out.unparsed,
            )  # fmt: skip
        except ValueError as e:
            return ItemFailure("bad_model_output", f"questions failed validation: {e}")
        for kind, qs in (("semantic", d.semantic), ("quality", d.quality)):
            self.metrics.questions_per_prompt.labels(kind=kind).observe(len(qs))
        return d

    async def _follow(self, key: str, prompt_of: dict[str, str]) -> None:
        """Wait for another worker's answer in the shared cache; compute it ourselves if it never comes."""
        deadline = time.monotonic() + self.follow_timeout_s
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
            got = await self.cache.get_many([key])
            if key in got:
                self._settle(key, (got[key], True))
                return
            if not await self.cache.lock_held(key):  # leader done or gone: one last look, then compute
                got = await self.cache.get_many([key])
                if key in got:
                    self._settle(key, (got[key], True))
                    return
                break
        await self._lead([key], prompt_of)

    def ready(self) -> bool:
        return self.backend.ready()

    async def aclose(self) -> None:
        await self.backend.aclose()
        await self.cache.aclose()
