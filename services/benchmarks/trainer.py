"""``alphagrpo bench trainer``: the trainer's speed figures and its resume guarantee, measured in one run.

* ``group_batch_speedup``: one prompt's group of G = 8 images sampled in one batched pass over eight
  single-image passes (same sampler, same steps, CFG on); medians over ``repeats``.
* ``reward_wait_fraction``: share of a training step's wall time spent blocked on ``/v1/reward``, over
  ``steps`` real GRPO steps of the given config (the first step is a warm-up and is not counted), with the
  decomposer and the verifier running as separate processes on their embedded defaults. On a 2-core CPU
  the verifier and the trainer share the cores, so overlap cannot hide all of the verifier's work.
* ``resume_bitexact``: 3 steps straight vs 2 steps, a fresh process state, and ``--resume`` for the third:
  every parameter equal bit for bit (small rollout, one reward request per step).

The policy is the shipped base (``models/shapes-umm``) when present, else the recipe's architecture with
random weights (speed does not depend on what the weights know; the output says which).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.verifier import median_time


def _policy(model_path: str | None):
    from recipes.umm import UMMRecipe, build, umm_tokenizer
    from trainer.policies.tiny_umm import TinyUMM

    tok = umm_tokenizer()
    if model_path and Path(model_path, "umm_config.json").exists():
        return TinyUMM.load(model_path).train(), tok, model_path
    return build(UMMRecipe(), tok).train(), tok, "random weights (recipe architecture)"


def group_batch_speedup(policy, tok, group: int, n_steps: int, cfg_scale: float, repeats: int) -> dict:
    from recipes.umm import tokenize
    from trainer.rollout import sample_images

    ids, mask = tokenize(tok, ["two red circles to the left of a blue square"], 24)
    with torch.no_grad():
        ctx = policy.encode(ids, mask)
    g = torch.Generator().manual_seed(0)
    kw = {"n_steps": n_steps, "window_start": 0, "window_len": 4, "cfg_scale": cfg_scale, "generator": g}
    batched = median_time(lambda: sample_images(policy, ctx.repeat(group), **kw), repeats)
    single = median_time(lambda: [sample_images(policy, ctx, **kw) for _ in range(group)], repeats)
    return {"group_batch_speedup": round(single / batched, 2), "group_batched_s": round(batched, 3),
            "group_one_at_a_time_s": round(single, 3)}  # fmt: skip


def run(config: str, model_path: str | None, steps: int = 4, repeats: int = 3, progress: bool = True) -> dict:
    from recipes.grpo import ShapesTask
    from serving.launch import start_decomposer, start_verifier
    from trainer.config import TrainConfig
    from trainer.reward import RewardFetcher
    from trainer.train import train

    cfg = TrainConfig.from_yaml(config)
    policy, tok, which = _policy(model_path or cfg.model_path)
    torch.manual_seed(0)
    out: dict = {"policy": which, "config": config}
    out |= group_batch_speedup(policy, tok, 8, cfg.rollout.n_steps, cfg.rollout.cfg_scale, repeats)
    initial = {k: v.clone() for k, v in policy.state_dict().items()}

    decomposer, durl = start_decomposer()
    with decomposer:
        verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl})
        with verifier, tempfile.TemporaryDirectory() as tmp:
            fetcher = RewardFetcher(vurl, aggregation=cfg.reward.aggregation)
            task = ShapesTask(tok, fetcher, tmp, eval_prompts=8)
            # ---- reward wait over real steps of the config -----------------------------------------
            run_cfg = replace(cfg, run=replace(cfg.run, steps=steps + 1, run_dir=f"{tmp}/wait", eval_every=0,
                                               checkpoint_every=10**9, monitor_port=None))  # fmt: skip
            recs = [r for r in train(run_cfg, policy, task, fetcher, progress=progress) if "loss" in r][1:]
            wait, wall = sum(r["reward_wait_s"] for r in recs), sum(r["step_s"] for r in recs)
            out |= {"reward_wait_fraction": round(wait / wall, 4), "step_s": round(wall / len(recs), 2),
                    "samples_per_second": round(statistics.mean(r["samples_per_second"] for r in recs), 2),
                    "sample_s": round(statistics.mean(r["sample_s"] for r in recs), 2),
                    "train_s": round(statistics.mean(r["train_s"] for r in recs), 2),
                    "images_per_step": cfg.rollout.prompts_per_step * cfg.rollout.group_size}  # fmt: skip
            # ---- resume is bit-exact ---------------------------------------------------------------
            small = replace(cfg.rollout, group_size=4, prompts_per_step=2, chunks=1)
            straight = _fresh(policy, initial)
            train(replace(run_cfg, rollout=small, run=replace(run_cfg.run, steps=3, run_dir=f"{tmp}/a",
                                                              checkpoint_every=1)), straight, task, fetcher,
                  progress=False)  # fmt: skip
            b = replace(run_cfg, rollout=small, run=replace(run_cfg.run, steps=2, run_dir=f"{tmp}/b",
                                                            checkpoint_every=1))
            train(b, _fresh(policy, initial), task, fetcher, progress=False)
            resumed = _fresh(policy, initial)
            train(replace(b, run=replace(b.run, steps=3)), resumed, task, fetcher, resume=True, progress=False)
            same = all(torch.equal(x, y) for x, y in zip(straight.state_dict().values(), resumed.state_dict().values()))
            moved = any(not torch.equal(x, initial[k]) for k, x in straight.state_dict().items())
            out["resume_bitexact"] = bool(same and moved)
            fetcher.close()
    return out


def _fresh(policy, state: dict):
    import copy

    p = copy.deepcopy(policy)
    p.load_state_dict(state)
    return p.train()
