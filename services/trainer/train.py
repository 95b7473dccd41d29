"""The AlphaGRPO training loop for text-to-image, readable top to bottom.

One step: draw prompts; sample each prompt's group of G images in one batched pass per chunk, with the SDE
window at a random place; send each chunk's images to ``/v1/reward`` while the next chunk samples; turn
rewards into group-relative advantages (NaN rewards excluded); replay the window transitions under the
current weights for the clipped-ratio loss (one backward per trained timestep, as the reference); step.

How it departs from the reference: rewards come from the DVReward service over HTTP in batches, not one
request per question; a failed reward is excluded, never a silent 0; the first-step ratio must be 1
(checked); a round without any non-zero advantage is skipped with a warning instead of taking a zero
step. Randomness is derived from (seed, step), so a resumed run continues bit-exactly on CPU.

The task (prompts, tokenizer, evaluation) is injected: ``recipes/`` wires ShapesWorld in, so this file
knows nothing about any world.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from trainer.config import TrainConfig
from trainer.grpo import check_first_ratio, group_advantages, image_policy_loss
from trainer.reward import RewardFetcher
from trainer.rollout import recompute_logprobs, sample_images

log = logging.getLogger(__name__)


class Task(Protocol):
    def train_prompts(self, rng: random.Random, n: int) -> list[str]: ...

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_images(self, x: torch.Tensor) -> list: ...

    def evaluate(self, policy, step: int) -> dict: ...


@dataclass
class StepStats:
    loss: float
    reward: float
    reward_std: float
    frac_reward_zero_std: float
    n_invalid: int
    clip_ratio: float
    ratio_max_dev: float
    skipped: bool
    sample_s: float
    reward_wait_s: float
    train_s: float


def step_rng(seed: int, step: int) -> tuple[random.Random, torch.Generator]:
    """All randomness of one step derives from (seed, step): resuming needs no generator state."""
    key = seed * 1_000_003 + step
    return random.Random(key), torch.Generator().manual_seed(key)


def train_step(policy, task: Task, fetcher: RewardFetcher, opt, cfg: TrainConfig, step: int) -> StepStats:
    ro, gr = cfg.rollout, cfg.grpo
    rng, gen = step_rng(cfg.run.seed, step)
    prompts = task.train_prompts(rng, ro.prompts_per_step)
    ids, mask = task.tokenize(prompts)
    window_start = rng.randint(*ro.window_range)
    per_chunk = ro.prompts_per_step // ro.chunks

    # ---- rollout: one batched pass per chunk, rewards fetched while the next chunk samples ----------
    t0 = time.perf_counter()
    chunks, futures = [], []
    for c in range(ro.chunks):
        sl = slice(c * per_chunk, (c + 1) * per_chunk)
        with torch.no_grad():
            ctx = policy.encode(ids[sl], mask[sl]).repeat(ro.group_size)
        r = sample_images(policy, ctx, n_steps=ro.n_steps, shift=ro.shift, window_start=window_start,
                          window_len=ro.window_len, noise_level=ro.noise_level, cfg_scale=ro.cfg_scale, generator=gen)  # fmt: skip
        texts = [p for p in prompts[sl] for _ in range(ro.group_size)]
        futures.append(fetcher.submit(texts, task.to_images(r.images)))
        chunks.append((sl, r))
    sample_s = time.perf_counter() - t0
    waited0 = fetcher.waited_s
    rewards = [v for f in futures for v in fetcher.wait(f).values]
    reward_wait_s = fetcher.waited_s - waited0

    # ---- advantages ---------------------------------------------------------------------------------
    t1 = time.perf_counter()
    r_all = torch.tensor(rewards, dtype=torch.float64)
    groups = torch.arange(ro.prompts_per_step).repeat_interleave(ro.group_size)
    adv, valid, st = group_advantages(r_all, groups, std_scope=gr.std_scope, clip=gr.adv_clip)
    adv = adv.float()
    if not bool((adv[valid] != 0).any()):
        log.warning("step %d: no sample has a non-zero advantage (every group's rewards are equal): step skipped", step)
        return StepStats(0.0, st.reward_mean, st.reward_std, st.frac_reward_zero_std, st.n_invalid, 0.0, 0.0, True,
                         sample_s, reward_wait_s, 0.0)  # fmt: skip

    # ---- policy update: one backward per trained timestep ----------------------------------------
    losses, clip_fracs, devs = [], [], []
    n_terms = ro.chunks * ro.window_len
    for epoch in range(gr.inner_epochs):
        opt.zero_grad(set_to_none=True)
        for c, (sl, r) in enumerate(chunks):
            rows = slice(c * per_chunk * ro.group_size, (c + 1) * per_chunk * ro.group_size)
            a, ok = adv[rows], valid[rows]
            for k in range(len(r.steps)):
                ctx = policy.encode(ids[sl], mask[sl]).repeat(ro.group_size)
                logp = recompute_logprobs(policy, ctx, r, noise_level=ro.noise_level, cfg_scale=ro.cfg_scale, k=k)
                if epoch == 0:
                    check_first_ratio(logp[ok] - r.logprobs[ok, k])
                loss, ls = image_policy_loss(logp[ok], r.logprobs[ok, k], a[ok], gr.clip_range)
                (loss / n_terms).backward()
                losses.append(float(loss.detach()))
                clip_fracs.append(ls.clip_frac)
                devs.append(ls.ratio_max_dev)
        torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], cfg.optim.grad_clip)
        opt.step()
    return StepStats(sum(losses) / len(losses), st.reward_mean, st.reward_std, st.frac_reward_zero_std, st.n_invalid,
                     sum(clip_fracs) / len(clip_fracs), max(devs), False, sample_s, reward_wait_s,
                     time.perf_counter() - t1)  # fmt: skip


def save_checkpoint(run: Path, policy, opt, step: int) -> None:
    """Weights, optimizer and step (safetensors + JSON, atomic: never half-written)."""
    from checkpoint import save

    save(run, policy, opt, {"step": step})


def load_checkpoint(run: Path, policy, opt) -> int:
    from checkpoint import load

    return load(run, policy, opt)["step"]


def train(cfg: TrainConfig, policy, task: Task, fetcher: RewardFetcher, resume: bool = False,
          progress: bool = True) -> list[dict]:  # fmt: skip
    """Run ``cfg.run.steps`` steps (from the checkpoint if ``resume``); returns the JSONL records written."""
    from tqdm import tqdm

    run = Path(cfg.run.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    for p in policy.parameters():  # invariant: trainable weights stay in fp32 (bf16 masters lose small updates)
        assert not p.requires_grad or p.dtype == torch.float32, "trainable weights must be float32"
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)  # fmt: skip
    start = load_checkpoint(run, policy, opt) if resume and (run / "checkpoint").exists() else 0
    records = []
    with open(run / "log.jsonl", "a") as logf:
        for step in tqdm(range(start, cfg.run.steps), initial=start, total=cfg.run.steps, disable=not progress,
                         desc="grpo"):  # fmt: skip
            t0 = time.perf_counter()
            st = train_step(policy, task, fetcher, opt, cfg, step)
            wall = time.perf_counter() - t0
            rec = {"step": step + 1, **st.__dict__, "step_s": round(wall, 3),
                   "reward_wait_fraction": round(st.reward_wait_s / wall, 4),
                   "samples_per_s": round(cfg.rollout.prompts_per_step * cfg.rollout.group_size / wall, 2)}  # fmt: skip
            if cfg.run.eval_every and (step + 1) % cfg.run.eval_every == 0:
                rec["eval"] = task.evaluate(policy, step + 1)
            if (step + 1) % cfg.run.checkpoint_every == 0 or step + 1 == cfg.run.steps:
                save_checkpoint(run, policy, opt, step + 1)
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            records.append(rec)
    return records
