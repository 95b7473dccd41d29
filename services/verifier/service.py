"""The verifier service class: image checks, batching, and DVReward composition for ``/v1/reward``.

``verify`` decodes and checks every image first (a bad image fails the request with a 422 naming it,
before any work is queued), submits all images of the request to the batcher at once, and waits for them
under the request deadline. ``reward`` fetches missing questions from the decomposer in one call (cached
there), scores everything in one ``verify`` pass and aggregates each item with ``dvreward.aggregate``.
A question that cannot be scored is NaN with a reason; an item whose decomposition failed carries that
error; nothing is ever turned into a 0. A decomposition the decomposer marked incomplete (part of the
prompt got no question) is scored and flagged (``complete: false``, ``unparsed``), or failed with its reason
when the request says ``incomplete: "fail"``: otherwise an image could score high on the quality questions
alone for a prompt whose meaning was never asked about.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from dvreward.aggregation import aggregate
from dvreward.client import AsyncDecomposerClient, RetryPolicy, Timeouts
from dvreward.errors import DVRewardError, TransportError
from dvreward.schemas import (
    ItemError,
    Question,
    QuestionScore,
    RewardItem,
    RewardRequest,
    RewardResult,
    VerifyItem,
    VerifyResult,
)
from serving.http import BackendUnavailable, LimitExceeded, Overloaded, ServiceError
from verifier.backends.base import ScoreItem, VerifierBackend
from verifier.batcher import Batcher, QueueFull, observe_scores
from verifier.images import BadImage, decode_image
from verifier.metrics import VerifierMetrics
from verifier.scoring import REASON_BACKEND, REASON_TIMEOUT, failed
from verifier.settings import VerifierSettings

log = logging.getLogger(__name__)


class BadImageError(ServiceError):
    status, type = 422, "bad_image"


class DeadlineExceeded(ServiceError):
    status, type = 504, "deadline_exceeded"


class VerifierService:
    def __init__(self, backend: VerifierBackend, settings: VerifierSettings, metrics: VerifierMetrics):
        self.backend, self.settings, self.metrics = backend, settings, metrics
        s = settings
        self.batcher = Batcher(backend, metrics, max_batch_images=s.max_batch_images,
                               max_batch_questions=s.max_batch_questions, max_wait_s=s.max_wait_ms / 1000,
                               max_queue=s.max_queue)  # fmt: skip
        key = s.decomposer_api_key.get_secret_value() if s.decomposer_api_key else None
        self.decomposer = AsyncDecomposerClient(
            s.decomposer_url, api_key=key, timeouts=Timeouts(connect_s=2.0, read_s=s.decomposer_timeout_s),
            retry=RetryPolicy(max_attempts=2, backoff_s=0.2),
        )  # fmt: skip

    def start(self) -> None:
        self.batcher.start()

    async def aclose(self) -> None:
        await self.batcher.stop()
        await self.decomposer.aclose()
        self.backend.close()

    # ---- checks ---------------------------------------------------------------------------------
    def check_limits(self, n_items: int, questions_per_item: list[int], field: str = "items") -> None:
        s = self.settings
        if n_items > s.max_items:
            raise LimitExceeded(f"{field}: {n_items} images; the limit is {s.max_items} per request",
                                field=field, limit=s.max_items)  # fmt: skip
        for i, n in enumerate(questions_per_item):
            if n > s.max_questions:
                raise LimitExceeded(f"{field}[{i}].questions: {n} questions; the limit is {s.max_questions} per image",
                                    field=f"{field}[{i}].questions", limit=s.max_questions)  # fmt: skip

    def decode(self, images: list[str], field: str = "items") -> list[tuple[object, str]]:
        out = []
        for i, data in enumerate(images):
            try:
                out.append(decode_image(data, f"{field}[{i}].image", max_pixels=self.settings.max_image_pixels,
                                        max_side_ratio=self.settings.max_aspect_ratio))  # fmt: skip
            except BadImage as e:
                raise BadImageError(str(e), field=e.field, limit=e.limit) from None
        return out

    # ---- scoring --------------------------------------------------------------------------------
    async def score(self, decoded: list[tuple[object, str]], images_b64: list[str],
                    questions: list[list[Question]]) -> list[list[QuestionScore] | ItemError]:  # fmt: skip
        items = [ScoreItem(img, [(q.id, q.text) for q in qs], b64, mime)
                 for (img, mime), b64, qs in zip(decoded, images_b64, questions)]  # fmt: skip
        todo = [i for i, it in enumerate(items) if it.questions]
        try:
            futures = self.batcher.submit([items[i] for i in todo])
        except QueueFull as e:
            raise Overloaded(str(e), retry_after_s=self.batcher.retry_after_s()) from None
        results: list[list[QuestionScore] | ItemError] = [[] for _ in items]
        if not futures:  # nothing to score (every item failed before scoring): asyncio.wait refuses an empty set
            return results
        done, pending = await asyncio.wait(futures, timeout=self.settings.request_timeout_s)
        for f in pending:
            f.cancel()  # the batcher skips cancelled units, so the queue drains
        if pending and not done:
            raise DeadlineExceeded(f"scoring did not finish within {self.settings.request_timeout_s:g} s",
                                   retry_after_s=self.batcher.retry_after_s())  # fmt: skip
        for i, f in zip(todo, futures):
            if f in pending:
                results[i] = [failed(qid, REASON_TIMEOUT) for qid, _ in items[i].questions]
            elif f.exception() is not None:
                log.warning("item %d failed: %s", i, f.exception())
                results[i] = [failed(qid, REASON_BACKEND) for qid, _ in items[i].questions]
            else:
                results[i] = f.result()
            observe_scores(self.metrics, results[i])  # type: ignore[arg-type]
        return results

    async def verify(self, items: list[VerifyItem]) -> list[VerifyResult]:
        self.check_limits(len(items), [len(it.questions) for it in items])
        decoded = self.decode([it.image for it in items])
        scores = await self.score(decoded, [it.image for it in items], [it.questions for it in items])
        return [VerifyResult(index=i, scores=s) for i, s in enumerate(scores)]  # type: ignore[arg-type]

    # ---- reward ---------------------------------------------------------------------------------
    async def decompositions_for(self, items: list[RewardItem]) -> list[tuple[list[Question] | ItemError,
                                                                              list[str] | None]]:
        """(questions or the error, unparsed spans or None when complete) per item. Supplied questions are
        taken as complete: the client chose them."""
        missing = sorted({it.prompt for it in items if it.questions is None})
        found: dict[str, tuple[list[Question] | ItemError, list[str] | None]] = {}
        if missing:
            t0 = time.perf_counter()
            try:
                response = await self.decomposer.decompose(missing)
            except TransportError as e:
                raise BackendUnavailable(f"the decomposer at {self.settings.decomposer_url} is unreachable ({e}); "
                                         "retry later or send questions with each item",
                                         retry_after_s=5) from None  # fmt: skip
            except DVRewardError as e:
                raise BackendUnavailable(f"the decomposer failed: {e}", retry_after_s=5) from None
            finally:
                self.metrics.decomposer_seconds.observe(time.perf_counter() - t0)
            for prompt, r in zip(missing, response.results):
                d = r.decomposition
                if d is None:
                    found[prompt] = (r.error or ItemError(code="decomposition_failed", message="no decomposition"),
                                     None)
                else:
                    found[prompt] = (d.questions, None if d.complete else (d.unparsed or [prompt]))
        return [(it.questions, None) if it.questions is not None else found[it.prompt] for it in items]

    async def reward(self, request: RewardRequest) -> list[RewardResult]:
        items = request.items
        self.check_limits(len(items), [len(it.questions or []) for it in items])
        decoded = self.decode([it.image for it in items])
        decomps = await self.decompositions_for(items)
        questions = [q for q, _ in decomps]
        self.check_limits(len(items), [len(q) if isinstance(q, list) else 0 for q in questions])
        fail_incomplete = request.incomplete == "fail"
        # a decomposition failed for being incomplete is not scored at all (no verifier work spent on it)
        usable = [q if isinstance(q, list) and not (fail_incomplete and u is not None) else [] for q, u in decomps]
        scores = await self.score(decoded, [it.image for it in items], usable)
        out = []
        for i, ((qs, unparsed), sc) in enumerate(zip(decomps, scores)):
            if isinstance(qs, ItemError):
                self.metrics.rewards_total.labels(outcome="decomposition_failed").inc()
                out.append(RewardResult(index=i, reason=f"decomposition failed: {qs.message}", error=qs))
                continue
            flags = {"complete": unparsed is None, "unparsed": unparsed or []}
            if unparsed is not None and fail_incomplete:
                self.metrics.rewards_total.labels(outcome="incomplete").inc()
                out.append(RewardResult(index=i, reason=f"incomplete decomposition: no questions for {unparsed}",
                                        questions=qs, **flags))  # fmt: skip
                continue
            agg = aggregate(qs, [s.value for s in sc], request.aggregation, request.nan_policy, request.gating)
            ok = not math.isnan(agg.reward)
            self.metrics.rewards_total.labels(outcome="ok" if ok else "nan").inc()
            out.append(RewardResult(index=i, reward=_num(agg.reward), semantic=_num(agg.semantic),
                                    quality=_num(agg.quality), reason=agg.reason, scores=sc, questions=qs,
                                    **flags))  # fmt: skip
        return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x
