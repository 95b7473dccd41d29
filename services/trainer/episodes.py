"""One training round's rollouts, for each kind of task: text-to-image (optionally think-then-generate) and
self-reflective refinement. Both return the same ``Round``, so the loop in ``train.py`` computes advantages and
updates the policy the same way for either.

* ``t2i_round``: each prompt's group of G images in one batched pass per chunk (each sample with its own plan
  when reasoning), rewards fetched while the next chunk samples.
* ``refine_round``: stage 1 draws N deterministic (ODE) images per prompt and keeps the lowest-DVReward one
  as the image to refine (R_init); stage 2 has the policy read prompt + that image, write a critique/edit
  (the text policy) and draw a new image conditioned on prompt, edit and the old image (the SDE policy), G
  times per prompt. Rewards are DVReward of the refined image against the *original* prompt; the loop applies
  false-positive rectification (``reflection.rectify``) before the advantages.

How it departs from the reference: stage 1 is batched per chunk and its rewards are fetched while the other
chunks sample; the stage-1 images are not trained (as the reference's default mode); the refinement text gets
no format reward (the reference's default lets format rewards influence nothing either).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from trainer.config import TrainConfig
from trainer.reasoning import Plans, sample_plans
from trainer.reflection import select_initial
from trainer.rollout import ImageRollout, sample_images


@dataclass
class Chunk:
    rows: slice  # this chunk's samples in the global batch (prompt-major, G per prompt)
    prompt_ids: torch.Tensor  # (P_chunk, L) the chunk's prompts
    prompt_mask: torch.Tensor
    images: ImageRollout
    plans: Plans | None  # text written before drawing: a plan, or (refinement) a critique + edit of plans.image

    def context(self, policy, group_size: int, grad: bool = True):
        """The image head's conditioning: the prompt once per group, or each sample's own text (and image).
        ``grad=False``: without gradient (the reference's scope: the image loss never trains the LM)."""
        if not grad:
            with torch.no_grad():
                return self.context(policy, group_size)
        if self.plans is None:
            return policy.encode(self.prompt_ids, self.prompt_mask).repeat(group_size)
        return policy.encode(self.plans.ids, self.plans.mask, self.plans.image)


@dataclass
class Round:
    kind: str  # "t2i" | "reason" | "refine"
    chunks: list[Chunk]
    rewards: torch.Tensor  # (local samples,) float64 DVReward, NaN = failed verification
    format: torch.Tensor | None = None  # (local samples,) reasoning: 1 for a well-formed plan, else 0
    r_init: torch.Tensor | None = None  # (local prompts,) refinement: the reward of the image each group refined
    sample_s: float = 0.0
    reward_wait_s: float = 0.0


def _chunks(cfg: TrainConfig, rank: int, world: int):
    ro = cfg.rollout
    per = ro.prompts_per_step // ro.chunks
    for c in range(rank * ro.chunks // world, (rank + 1) * ro.chunks // world):
        yield c, slice(c * per, (c + 1) * per), slice(c * per * ro.group_size, (c + 1) * per * ro.group_size)


def _sde(policy, ctx, cfg: TrainConfig, window_start: int, gen: torch.Generator) -> ImageRollout:
    ro = cfg.rollout
    return sample_images(policy, ctx, n_steps=ro.n_steps, shift=ro.shift, window_start=window_start,
                         window_len=ro.window_len, noise_level=ro.noise_level, cfg_scale=ro.cfg_scale,
                         generator=gen, noise_group=ro.group_size if ro.shared_noise else 1, noise_block=ro.noise_block,
                         antithetic=ro.antithetic)  # fmt: skip


def t2i_round(policy, task, fetcher, cfg: TrainConfig, prompts: list[str], window_start: int, generators,
              rank: int = 0, world: int = 1) -> Round:  # fmt: skip
    """Text-to-image rollouts of this rank's chunks; ``generators(c)`` gives chunk c's noise."""
    G, rc = cfg.rollout.group_size, cfg.reason
    ids, mask = task.tokenize(prompts)
    t0 = time.perf_counter()
    chunks, futures = [], []
    for c, sl, rows in _chunks(cfg, rank, world):
        texts = [p for p in prompts[sl] for _ in range(G)]
        gen = generators(c)
        plans = None
        if rc.enabled:  # think first: each sample of the group writes its own plan
            plans = sample_plans(policy, task, texts, max_tokens=rc.max_plan_tokens, temperature=rc.temperature,
                                 top_p=rc.top_p, generator=gen)  # fmt: skip
        chunk = Chunk(rows, ids[sl], mask[sl], None, plans)  # type: ignore[arg-type]
        with torch.no_grad():
            chunk.images = _sde(policy, chunk.context(policy, G), cfg, window_start, gen)
        futures.append(fetcher.submit(texts, task.to_images(chunk.images.images)))  # against the original prompt
        chunks.append(chunk)
    sample_s = time.perf_counter() - t0
    waited0 = fetcher.waited_s
    rewards = torch.tensor([v for f in futures for v in fetcher.wait(f).values], dtype=torch.float64)
    fmt = torch.cat([ch.plans.format for ch in chunks]).double() if rc.enabled else None
    return Round("reason" if rc.enabled else "t2i", chunks, rewards, fmt, sample_s=sample_s,
                 reward_wait_s=fetcher.waited_s - waited0)  # fmt: skip


def refine_round(policy, task, fetcher, cfg: TrainConfig, prompts: list[str], window_start: int, generators,
                 rank: int = 0, world: int = 1) -> Round:  # fmt: skip
    """Refinement rollouts of this rank's chunks (stage 1: initial images and R_init; stage 2: G refinements)."""
    G, fc, ro = cfg.rollout.group_size, cfg.reflect, cfg.rollout
    ids, mask = task.tokenize(prompts)
    t0 = time.perf_counter()
    stage1 = []
    for c, sl, rows in _chunks(cfg, rank, world):  # N deterministic candidates per prompt, one batch per chunk
        gen = generators(c)
        with torch.no_grad():
            ctx = policy.encode(ids[sl], mask[sl]).repeat(fc.n_initial)
            first = sample_images(policy, ctx, n_steps=ro.n_steps, shift=ro.shift, cfg_scale=ro.cfg_scale,
                                  generator=gen)
        texts = [p for p in prompts[sl] for _ in range(fc.n_initial)]
        stage1.append((c, sl, rows, gen, first.images, fetcher.submit(texts, task.to_images(first.images))))
    waited0 = fetcher.waited_s
    chunks, futures, inits = [], [], []
    for _c, sl, rows, gen, images, fut in stage1:
        n_prompts = sl.stop - sl.start
        cand = torch.tensor(fetcher.wait(fut).values, dtype=torch.float64).view(n_prompts, fc.n_initial)
        idx, r_init = select_initial(cand)
        init = images.view(n_prompts, fc.n_initial, *images.shape[1:])[torch.arange(n_prompts), idx.clamp(min=0)]
        inits.append(r_init)
        texts = [p for p in prompts[sl] for _ in range(G)]
        image_in = init.repeat_interleave(G, 0)
        plans = sample_plans(policy, task, texts, max_tokens=fc.max_edit_tokens, temperature=fc.temperature,
                             top_p=fc.top_p, generator=gen, image=image_in)  # fmt: skip
        chunk = Chunk(rows, ids[sl], mask[sl], None, plans)  # type: ignore[arg-type]
        with torch.no_grad():
            chunk.images = _sde(policy, chunk.context(policy, G), cfg, window_start, gen)
        futures.append(fetcher.submit(texts, task.to_images(chunk.images.images)))  # the original prompt's questions
        chunks.append(chunk)
    sample_s = time.perf_counter() - t0 - (fetcher.waited_s - waited0)
    rewards = torch.tensor([v for f in futures for v in fetcher.wait(f).values], dtype=torch.float64)
    return Round("refine", chunks, rewards, r_init=torch.cat(inits), sample_s=sample_s,
                 reward_wait_s=fetcher.waited_s - waited0)  # fmt: skip
