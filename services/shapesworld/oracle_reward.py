"""The oracle as a training reward: a *diagnostic ceiling*, never a result.

``OracleRewards`` has the trainer's reward-fetcher interface (``submit``/``wait``/``close``/``waited_s``) and
scores each image by the ShapesWorld oracle's atom accuracy on the prompt's gold atoms: what the semantic
half of DVReward would be with a perfect verifier answering the decomposition's questions. It answers the
question "is the verifier what holds GRPO back, or the policy and the optimiser?": a run rewarded by it
(``reward.mode: oracle``) shows how far this policy, sampler and learning rate can move held-out accuracy
when the reward is exactly the evaluation's judge. Its figures are an upper bound on what any verifier
refresh can buy; they never stand in for DVReward's (the issue's targets are for DVReward).

Training prompts are train-split ShapesWorld prompts; evaluation calls score held-out images too (that score
is the oracle's atom accuracy, which the evaluation reports anyway). A prompt the oracle does not know comes
back NaN with its reason, as a failed verification would.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from shapesworld.oracle import evaluate
from shapesworld.prompts import PromptSpec, all_prompts
from trainer.reward import Rewards


@dataclass
class OracleRewards:
    signal: str = "atoms"  # "atoms" (share of gold atoms that hold) or "correct" (1 if every atom and count hold)
    waited_s: float = field(default=0.0, init=False)
    _specs: dict[str, PromptSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.signal not in ("atoms", "correct"):
            raise ValueError(f"signal must be 'atoms' or 'correct', not {self.signal!r}")
        self._specs = {p.text: p for p in all_prompts()}

    def describe(self) -> dict:
        return {"mode": "oracle", "signal": self.signal,
                "note": "diagnostic ceiling: rewarded by the evaluation's judge"}

    def submit(self, prompts: list[str], images: list[Any], questions=None) -> Future:
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
        values, reasons = [], []
        for p, im in zip(prompts, images):
            spec = self._specs.get(p)
            if spec is None:
                values.append(math.nan)
                reasons.append("not a ShapesWorld prompt: the oracle cannot judge it")
                continue
            r = evaluate(im, spec)
            values.append(float(r.correct) if self.signal == "correct" else r.atom_accuracy)
            reasons.append(None)
        fut: Future = Future()
        fut.set_result(Rewards(values=values, reasons=reasons, semantic=list(values), quality=[math.nan] * len(values)))
        return fut

    def wait(self, future: Future) -> Rewards:
        t0 = time.perf_counter()
        try:
            return future.result()
        finally:
            self.waited_s += time.perf_counter() - t0

    def close(self) -> None:
        pass
