"""Dynamic batching across concurrent requests, with a bounded queue.

Requests put work units (one image and its questions) on a queue and await a future. One collector task
takes the first waiting unit, then keeps taking until ``max_batch_images`` units or ``max_batch_questions``
questions are gathered or ``max_wait_s`` has passed since the first, and hands the batch to the backend
(LitServe's collate policy, in one function). While the backend runs, the next batch gathers. A full queue
refuses new work at once (``QueueFull`` -> 429 with Retry-After) instead of growing memory; a unit whose
request already gave up (deadline) is skipped, so a hung backend's queue drains. A backend exception fails
the units of that batch with a reason, never the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from dvreward.schemas import QuestionScore
from verifier.backends.base import ScoreItem, VerifierBackend
from verifier.metrics import VerifierMetrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class BatchFailed(Exception):
    pass


@dataclass
class _Unit:
    item: ScoreItem
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


def collate(queue_items: list[_Unit], max_images: int, max_questions: int) -> tuple[list[_Unit], list[_Unit]]:
    """Split waiting units into (this batch, the rest) under both caps; the first unit always goes."""
    batch, n_questions = [], 0
    for i, u in enumerate(queue_items):
        q = len(u.item.questions)
        if batch and (len(batch) >= max_images or n_questions + q > max_questions):
            return batch, queue_items[i:]
        batch.append(u)
        n_questions += q
    return batch, []


class Batcher:
    def __init__(self, backend: VerifierBackend, metrics: VerifierMetrics, *, max_batch_images: int = 16,
                 max_batch_questions: int = 256, max_wait_s: float = 0.01, max_queue: int = 1024):  # fmt: skip
        self.backend, self.metrics = backend, metrics
        self.max_images, self.max_questions = max_batch_images, max_batch_questions
        self.max_wait_s, self.max_queue = max_wait_s, max_queue
        self._waiting: list[_Unit] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.last_batch_s = 0.05  # for Retry-After estimates

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="verifier-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for u in self._waiting:
            if not u.future.done():
                u.future.set_exception(BatchFailed("the verifier is shutting down"))
        self._waiting.clear()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def retry_after_s(self) -> float:
        return max(1.0, self.last_batch_s * (1 + len(self._waiting) / max(1, self.max_images)))

    def submit(self, items: list[ScoreItem]) -> list[asyncio.Future]:
        """Queue every item of one request (all or none) and return their futures."""
        if len(self._waiting) + len(items) > self.max_queue:
            self.metrics.rejected_total.inc()
            raise QueueFull(f"the verifier queue is full ({len(self._waiting)} images waiting, limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        futures = []
        for it in items:
            u = _Unit(it, loop.create_future())
            self._waiting.append(u)
            futures.append(u.future)
        self.metrics.queue_depth.set(len(self._waiting))
        self._wakeup.set()
        return futures

    async def _run(self) -> None:
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._waiting[0].enqueued
            while len(self._waiting) < self.max_images and time.monotonic() - first < self.max_wait_s:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.max_wait_s - (time.monotonic() - first))
                except TimeoutError:
                    break
            self._waiting = [u for u in self._waiting if not u.future.done()]  # drop units whose caller left
            if not self._waiting:
                continue
            batch, self._waiting = collate(self._waiting, self.max_images, self.max_questions)
            self.metrics.queue_depth.set(len(self._waiting))
            await self._execute(batch)

    async def _execute(self, batch: list[_Unit]) -> None:
        now = time.monotonic()
        for u in batch:
            self.metrics.queue_wait_seconds.observe(now - u.enqueued)
        self.metrics.batch_images.observe(len(batch))
        self.metrics.batch_questions.observe(sum(len(u.item.questions) for u in batch))
        t0 = time.perf_counter()
        try:
            scores = await self.backend.ascore_batch([u.item for u in batch])
        except Exception as e:  # the batch fails, the service does not
            log.exception("verifier backend failed on a batch of %d images", len(batch))
            for u in batch:
                if not u.future.done():
                    u.future.set_exception(BatchFailed(f"{type(e).__name__}: {e}"))
            return
        finally:
            self.last_batch_s = time.perf_counter() - t0
            self.metrics.forward_seconds.observe(self.last_batch_s)
        for u, s in zip(batch, scores):
            if not u.future.done():
                u.future.set_result(s)


def observe_scores(metrics: VerifierMetrics, scores: list[QuestionScore]) -> None:
    for s in scores:
        if s.p_yes is None:
            metrics.nan_total.labels(reason=s.reason or "unknown").inc()
        else:
            metrics.p_yes.observe(s.p_yes)
