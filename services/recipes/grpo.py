"""ShapesWorld wired into the generic GRPO trainer (``alphagrpo train --config configs/shapes-t2i.yaml``).

``ShapesTask`` gives the trainer its prompts (explicit training-split prompts), the UMM's tokenizer, and an
evaluation that logs, side by side, the verifier's DVReward and the oracle's GenEval accuracy on fixed
held-out prompts with fixed noise: training is rewarded by the verifier only, so reward hacking would show
as the two diverging. Each evaluation also saves an image grid.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from recipes.umm import _grid, to_images, tokenize
from shapesworld.oracle import evaluate
from shapesworld.prompts import prompts
from trainer.reward import RewardFetcher
from trainer.rollout import sample_images


class ShapesTask:
    def __init__(self, tokenizer, fetcher: RewardFetcher, run_dir: str | Path, *, eval_prompts: int = 100,
                 eval_seed: int = 1234, n_steps: int = 12, shift: float = 3.0, cfg_scale: float = 3.0,
                 max_tokens: int = 24, categories_excluded: tuple[str, ...] = ("implicit",)):  # fmt: skip
        self.tok, self.fetcher, self.run = tokenizer, fetcher, Path(run_dir)
        self.train_specs = [p.text for p in prompts("train") if p.category not in categories_excluded]
        held = [p for p in prompts("heldout") if p.category not in categories_excluded]
        self.eval_specs = random.Random(eval_seed).sample(held, min(eval_prompts, len(held)))
        self.eval_seed, self.n_steps, self.shift, self.cfg_scale = eval_seed, n_steps, shift, cfg_scale
        self.max_tokens = max_tokens

    def train_prompts(self, rng: random.Random, n: int) -> list[str]:
        return rng.sample(self.train_specs, n)

    def tokenize(self, texts: list[str]):
        return tokenize(self.tok, texts, self.max_tokens)

    def to_images(self, x: torch.Tensor) -> list:
        return to_images(x)

    @torch.no_grad()
    def evaluate(self, policy, step: int) -> dict:
        g = torch.Generator().manual_seed(self.eval_seed)
        images = []
        for i in range(0, len(self.eval_specs), 32):
            chunk = self.eval_specs[i : i + 32]
            ids, mask = self.tokenize([s.text for s in chunk])
            r = sample_images(policy, policy.encode(ids, mask), n_steps=self.n_steps, shift=self.shift,
                              cfg_scale=self.cfg_scale, generator=g)  # fmt: skip
            images += to_images(r.images)
        verdicts = [evaluate(im, s).correct for im, s in zip(images, self.eval_specs)]
        rewards = self.fetcher.wait(self.fetcher.submit([s.text for s in self.eval_specs], images)).values
        valid = [r for r in rewards if not math.isnan(r)]
        acc = sum(verdicts) / len(verdicts)
        self.run.mkdir(parents=True, exist_ok=True)
        _grid(images[:48]).save(self.run / f"eval-{step:06d}.png")
        return {
            "oracle_accuracy": round(acc, 4),
            "oracle_accuracy_stderr": round(math.sqrt(acc * (1 - acc) / len(verdicts)), 4),
            "verifier_reward": round(sum(valid) / len(valid), 4) if valid else None,
            "n_prompts": len(verdicts),
        }
