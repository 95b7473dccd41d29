"""Rewards for the trainer: batched ``/v1/reward`` calls on a thread pool, so they overlap with rollouts.

``RewardFetcher.submit`` returns a future at once; the trainer submits each rollout chunk as soon as it is
sampled and keeps sampling the next chunk while the verifier works (the reference's async reward threads,
but one HTTP batch per chunk instead of one request per question). ``wait`` collects the rewards and counts
the time the trainer spent blocked on them (``reward_wait_fraction``).

A dead or overloaded verifier never turns into rewards: the fetcher logs loudly, pauses and retries until
``patience_s`` runs out, then raises ``RewardUnavailable`` (the training step is not taken). An item the
verifier could not score comes back as NaN with its reason, which the GRPO maths then excludes; so does,
by default (``incomplete="fail"``), an item whose prompt the decomposer could only partly turn into
questions: its reward would judge quality and the parsed half only, a hole a policy can learn to use.
With ``holistic=True`` every item carries one supplied question, "Does the image match: <prompt>?" (the
holistic-reward baseline the paper compares DVReward against), and the decomposer is not consulted.
``signal="semantic"`` trains on the semantic mean alone (quality questions still asked and logged, not
rewarded): an ablation, since on the tiny UMM's rollouts the quality questions did not rank a group's images
(``alphagrpo bench reward-signal``: pair AUC 0.51) and diluted the paper's geometric reward (0.77 vs 0.84).
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dvreward.adapters import to_base64_png
from dvreward.client import RetryPolicy, Timeouts, VerifierClient
from dvreward.errors import DVRewardError, ProtocolError, RateLimited, ServiceUnavailable, TransportError
from dvreward.schemas import Question, RewardItem, holistic_question

log = logging.getLogger(__name__)


class RewardUnavailable(RuntimeError):
    """The verifier stayed unreachable for longer than the trainer's patience."""


@dataclass
class Rewards:
    values: list[float]  # NaN where the item could not be scored
    reasons: list[str | None]
    semantic: list[float]
    quality: list[float]


@dataclass
class RewardFetcher:
    url: str
    aggregation: str = "geometric"
    api_key: str | None = None
    patience_s: float = 600.0  # how long a dead verifier may pause training before the run stops
    retry_every_s: float = 2.0
    threads: int = 4  # reward requests in flight (chunks of one step)
    read_timeout_s: float = 300.0
    max_items: int = 64  # images per request (the verifier's VERIFIER_MAX_ITEMS default); larger batches are split
    holistic: bool = False  # ask one "Does the image match: <prompt>?" question instead of the decomposition
    incomplete: str = "fail"  # a prompt the decomposer only partly parsed: "fail" (NaN, excluded) or "score"
    signal: str = "reward"  # what ``values`` holds: "reward" (the aggregation) or "semantic" (its semantic mean)
    waited_s: float = field(default=0.0, init=False)  # time the trainer was blocked in wait()
    _pool: ThreadPoolExecutor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.signal not in ("reward", "semantic"):
            raise ValueError(f"signal must be 'reward' or 'semantic', not {self.signal!r}")
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="reward")
        # the client retries quick blips itself; long outages are handled by the pause loop below
        self._client = VerifierClient(self.url, api_key=self.api_key, retry=RetryPolicy(max_attempts=2, backoff_s=0.2),
                                      timeouts=Timeouts(connect_s=2.0, read_s=self.read_timeout_s))  # fmt: skip

    def describe(self) -> dict:
        """What rewards this run, for its folder: the verifier's URL, backend, model and weights fingerprint
        (``/health``), the aggregation and signal; a verifier that does not answer yet is recorded as such."""
        out = {"mode": "holistic" if self.holistic else "decomposed", "url": self.url, "aggregation": self.aggregation,
               "signal": self.signal, "incomplete": self.incomplete}  # fmt: skip
        try:
            h = self._client.health()
            return out | {"backend": h.backend, "model": h.model, "revision": h.revision, "status": h.status}
        except DVRewardError as e:
            return out | {"status": f"unreachable at start ({e})"}

    def submit(self, prompts: list[str], images: list[Any], questions: list[list[Question]] | None = None) -> Future:
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
        if questions is None and self.holistic:
            questions = [[holistic_question(p)] for p in prompts]
        items = [RewardItem(prompt=p, image=to_base64_png(im), questions=qs)
                 for p, im, qs in zip(prompts, images, questions or [None] * len(prompts))]  # fmt: skip
        return self._pool.submit(self._fetch, items)

    def wait(self, future: Future) -> Rewards:
        t0 = time.perf_counter()
        try:
            return future.result()
        finally:
            self.waited_s += time.perf_counter() - t0

    def _fetch(self, items: list[RewardItem]) -> Rewards:
        """Score ``items`` in requests of at most ``max_items`` (the service's per-request limit)."""
        parts = [self._fetch_one(items[i : i + self.max_items]) for i in range(0, len(items), self.max_items)]
        return Rewards(*(sum((getattr(p, f) for p in parts), []) for f in ("values", "reasons", "semantic", "quality")))

    def _fetch_one(self, items: list[RewardItem]) -> Rewards:
        deadline = time.monotonic() + self.patience_s
        paused = False
        while True:
            try:
                results = self._client.reward(items, aggregation=self.aggregation, incomplete=self.incomplete).results
                break
            except (TransportError, ServiceUnavailable, RateLimited, ProtocolError) as e:
                if time.monotonic() > deadline:
                    raise RewardUnavailable(f"the verifier at {self.url} has been unavailable for "
                                            f"{self.patience_s:.0f} s ({e}); training stops rather than train on "
                                            "missing rewards") from e  # fmt: skip
                if not paused:
                    log.warning("verifier at %s unavailable (%s): training is paused, retrying every %.0f s",
                                self.url, e, self.retry_every_s)  # fmt: skip
                    paused = True
                time.sleep(self.retry_every_s)
            except DVRewardError:
                raise  # a 4xx is a bug in what we send: fail loudly
        if paused:
            log.warning("verifier at %s is back: training resumes", self.url)
        nan = lambda x: math.nan if x is None else x  # noqa: E731
        reasons = [r.reason or (r.error.message if r.error else None) for r in results]
        if self.signal == "semantic":  # a failed reward stays failed; a reward without semantic questions fails
            values = [math.nan if r.reward is None else nan(r.semantic) for r in results]
            reasons = [why or ("no semantic questions" if math.isnan(v) else None) for why, v in zip(reasons, values)]
        else:
            values = [nan(r.reward) for r in results]
        return Rewards(
            values=values,
            reasons=reasons,
            semantic=[nan(r.semantic) for r in results],
            quality=[nan(r.quality) for r in results],
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
