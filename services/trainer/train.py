"""The AlphaGRPO training loop, readable top to bottom.

One step: draw prompts; roll out a round (``episodes.py``): text-to-image groups of G images in one batched
pass per chunk (each sample first writing its own plan when reasoning), or a refinement round (the worst of
N initial images per prompt, refined G times); rewards come from ``/v1/reward`` while the next chunk samples.
Refinement rewards are rectified (a refinement that does not beat its initial image gets that image's
reward); the plan format reward is added for reasoning. Rewards become group-relative advantages (NaN
rewards excluded); the window transitions are replayed under the current weights for the clipped-ratio loss
(one backward per trained timestep, as the reference), and the text written before the image gets the same
advantage through the sequence-level text loss; step. With ``grpo.objective: nft`` the image loss is instead
DiffusionNFT's forward-process regression on noised copies of the finished images (``grpo.nft_loss``), weighted
by the same advantages; the text loss is unchanged; ``grpo.ema_max`` then samples the rollouts (and v_old) from an
EMA of the trained weights (``sampling_ema.py``, DiffusionNFT's soft update). ``reflect.every`` interleaves refinement
and text-to-image rounds in one run (mixed training), each round normalised within its own groups.

How it departs from the reference: rewards come from the DVReward service over HTTP in batches, not one
request per question; a failed reward is excluded, never a silent 0; the first-step ratio must be 1
(checked); a round without any non-zero advantage is skipped with a warning instead of taking a zero
step. Randomness is derived from (seed, step, chunk), so a resumed run continues bit-exactly on CPU and
N ranks under ``torchrun`` (``distributed.py``) draw exactly the images one process would. Rank 0 serves
``/status`` and ``/metrics`` (``monitor.py``), evaluates (verifier reward and oracle side by side), writes
``log.jsonl``, ``curves.png`` and checkpoints; resuming checks the restored weights' fingerprint.

The task (prompts, tokenizer, evaluation) is injected: ``recipes/`` wires ShapesWorld in, so this file
knows nothing about any world.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from trainer.config import TrainConfig
from trainer.distributed import Dist
from trainer.episodes import refine_round, t2i_round
from trainer.flow_sde import shift_time
from trainer.grpo import check_first_ratio, gaussian_kl, group_advantages, image_policy_loss, nft_loss, velocity_kl
from trainer.monitor import Monitor, plot_curves
from trainer.reasoning import plan_loss
from trainer.reflection import rectify
from trainer.reward import RewardFetcher
from trainer.rollout import replay_step
from trainer.sampling_ema import SamplingEMA, soft_update_decay

log = logging.getLogger(__name__)


class Task(Protocol):
    def train_prompts(self, rng: random.Random, n: int) -> list[str]: ...

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_images(self, x: torch.Tensor) -> list: ...

    def evaluate(self, policy, step: int) -> dict: ...


@dataclass
class StepStats:
    loss: float
    reward_mean: float
    reward_std: float
    frac_reward_zero_std: float
    n_invalid: int
    kl: float
    clip_fraction: float
    ratio_max_dev: float
    skipped: bool
    sample_s: float
    reward_wait_s: float
    train_s: float
    round: str | None = None  # reasoning / refinement runs: "t2i", "reason" or "refine"
    format_rate: float | None = None  # reasoning: share of well-formed plans
    text_loss: float | None = None  # the policy loss of the text written before the image (plan or edit)
    text_clip_fraction: float | None = None
    text_kl: float | None = None  # a text KL coefficient > 0: k3 KL of the plan or edit to the reference
    r_init_mean: float | None = None  # refinement: mean reward of the images being refined
    n_improved: int | None = None  # refinement: refined images that beat their R_init (over all ranks)
    velocity_max_dev: float | None = None  # nft: max |v - v_old| over the step's passes (0 with one inner pass)
    ema_decay: float | None = None  # grpo.ema_max: this step's soft-update decay eta
    ema_gap: float | None = None  # grpo.ema_max: max |theta - theta_old| after the update


REWARD_LABELS = {"decomposed": "DVReward", "holistic": "holistic question", "oracle": "oracle: a diagnostic ceiling"}


def step_rng(seed: int, step: int) -> tuple[random.Random, torch.Generator]:
    """All randomness of one step derives from (seed, step): resuming needs no generator state."""
    key = seed * 1_000_003 + step
    return random.Random(key), torch.Generator().manual_seed(key)


def chunk_generator(seed: int, step: int, chunk: int) -> torch.Generator:
    """The noise of one rollout chunk: a function of (seed, step, global chunk index), so any rank (or a
    resumed run) that samples this chunk draws exactly the same images."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + chunk)


def nft_generator(seed: int, step: int, row: int, k: int) -> torch.Generator:
    """The noise that nft adds to the images of the chunk starting at global ``row``, copy ``k``: a function of
    (seed, step, row, k) like the rollout's, and a different stream from it."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + row) * 31 + k + 17)


def nft_noised(x0: torch.Tensor, shift: float, generator: torch.Generator):
    """A noised copy of finished images for the nft loss: t = shift(u), u uniform (so times fall as densely as
    the sampler's steps do), x_t = (1 - t) x0 + t eps, target eps - x0. Returns (x_t, t, target)."""
    b = x0.shape[0]
    t = shift_time(torch.rand(b, generator=generator, dtype=torch.float64), shift).float()
    eps = torch.randn(x0.shape, generator=generator)
    tb = t.view(b, *([1] * (x0.dim() - 1)))
    return (1 - tb) * x0 + tb * eps, t, eps - x0


def nft_term(policy, ch, cfg: TrainConfig, step: int, k: int, adv: torch.Tensor, ok: torch.Tensor, cache: dict,
             ema: SamplingEMA | None = None, fixed_ctx: torch.Tensor | None = None):  # fmt: skip
    """The nft loss (+ the velocity KL) of noised copy ``k`` of one chunk's images. The first pass of a step
    fixes, in ``cache``, the noised images, the rollout policy's velocity v_old (the current weights', or the
    sampling EMA's) and the reference's, so later inner passes are measured against them and compute neither
    again. ``fixed_ctx``: the chunk's context built once without gradient (``grpo.context_grad: false``).
    Returns (loss, kl or None, max |v - v_old|)."""
    gr = cfg.grpo
    G = cfg.rollout.group_size
    key = (ch.rows.start, k)
    first = key not in cache
    if first:
        gen = nft_generator(cfg.run.seed, step, ch.rows.start, k)
        cache[key] = dict(zip(("xt", "t", "target"), nft_noised(ch.images.images, cfg.rollout.shift, gen)))
        if ema is not None:  # the rollout policy is theta_old, not the weights being trained
            with ema.active(), torch.no_grad():
                cache[key]["v_old"] = policy.velocity(cache[key]["xt"], cache[key]["t"], ch.context(policy, G), 1.0)
    c = cache[key]
    v = policy.velocity(c["xt"], c["t"], fixed_ctx if fixed_ctx is not None else ch.context(policy, G), 1.0)
    if first:
        if ema is None:  # the rollout's velocity is the current one
            c["v_old"] = v.detach()
        if gr.kl_coef > 0:
            with torch.no_grad(), policy.reference():
                c["v_ref"] = policy.velocity(c["xt"], c["t"], ch.context(policy, G), 1.0)
    loss, ns = nft_loss(v[ok], c["v_old"][ok], c["target"][ok], adv[ok], beta=gr.nft_beta, adv_scale=gr.adv_clip)
    if gr.kl_coef <= 0:
        return loss, None, ns.velocity_max_dev
    kl = velocity_kl(v[ok], c["v_ref"][ok]).mean()
    return loss + gr.kl_coef * kl, float(kl.detach()), ns.velocity_max_dev


def train_step(policy, task: Task, fetcher: RewardFetcher, opt, cfg: TrainConfig, step: int,
               dist: Dist = Dist(), ema: SamplingEMA | None = None) -> StepStats:  # fmt: skip
    ro, gr, rc, fc = cfg.rollout, cfg.grpo, cfg.reason, cfg.reflect
    G = ro.group_size
    rng, _ = step_rng(cfg.run.seed, step)
    prompts = task.train_prompts(rng, ro.prompts_per_step)  # the global batch; this rank takes its chunks
    window_start = rng.randint(*ro.window_range)
    refining = fc.enabled and step % fc.every == 0  # mixed runs interleave refinement and text-to-image rounds
    rollout = refine_round if refining else t2i_round
    with ema.active() if ema is not None else nullcontext():  # DiffusionNFT's soft update: sample with theta_old
        rnd = rollout(policy, task, fetcher, cfg, prompts, window_start,
                      lambda c: chunk_generator(cfg.run.seed, step, c), dist.rank, dist.world)  # fmt: skip
    extra: dict = {"round": rnd.kind} if fc.enabled or rc.enabled else {}

    # ---- rewards: rectified (refinement), plus the plan bonus (reasoning); NaN stays NaN ---------------------
    t1 = time.perf_counter()
    rewards = rnd.rewards
    if refining:
        local_groups = torch.arange(len(rnd.r_init)).repeat_interleave(G)
        if fc.rectify:
            rewards, _, rs = rectify(rewards, local_groups, rnd.r_init, fc.margin)
            n_improved = dist.all_gather_cat(torch.tensor([float(rs.n_improved)])).sum()
        else:
            base = rnd.r_init[local_groups]
            n_improved = dist.all_gather_cat(torch.tensor([float((rewards > base + fc.margin).sum())])).sum()
        r_init = dist.all_gather_cat(rnd.r_init)
        r_init = r_init[~torch.isnan(r_init)]
        extra |= {"r_init_mean": float(r_init.mean()) if len(r_init) else None, "n_improved": int(n_improved)}
    if rnd.format is not None:  # reasoning: the plan format reward joins the trajectory's reward
        rewards = rewards + rc.format_weight * rnd.format
        extra["format_rate"] = float(dist.all_gather_cat(rnd.format).mean())
    r_all = dist.all_gather_cat(rewards)
    groups = torch.arange(ro.prompts_per_step).repeat_interleave(G)
    adv, valid, st = group_advantages(r_all, groups, std_scope=gr.std_scope, clip=gr.adv_clip)
    adv = adv.float()
    skip = None
    if refining and fc.rectify and fc.skip_without_improvement and extra["n_improved"] == 0:
        skip = "no refinement beat its initial image"
    elif not bool((adv[valid] != 0).any()):
        skip = "no sample has a non-zero advantage (every group's rewards are equal)"
    if skip is not None:
        log.warning("step %d: %s: step skipped", step, skip)
        return StepStats(0.0, st.reward_mean, st.reward_std, st.frac_reward_zero_std, st.n_invalid, 0.0, 0.0, 0.0,
                         True, rnd.sample_s, rnd.reward_wait_s, 0.0, **extra)  # fmt: skip

    # ---- policy update: one backward per trained timestep (+ one for the text), gradients summed over ranks --
    losses, kls, clip_fracs, devs, text_losses, text_clips, text_kls, v_devs = [], [], [], [], [], [], [], []
    nft = gr.objective == "nft"
    n_image = gr.nft_timesteps if nft else ro.window_len  # trained image terms per chunk
    n_terms = ro.chunks * n_image  # global: each term is a mean over one chunk's samples
    text_weight = (fc.text_loss_weight if refining else rc.text_loss_weight) * n_image / n_terms
    text_kl_coef = fc.text_kl_coef if refining else rc.text_kl_coef  # edits or plans, each with its own KL
    params = [p for p in policy.parameters() if p.requires_grad]
    nft_old: dict = {}  # nft: what the first pass fixes for the step (nft_term)
    for epoch in range(gr.inner_epochs):
        opt.zero_grad(set_to_none=True)
        for ch in rnd.chunks:
            r, a, ok = ch.images, adv[ch.rows], valid[ch.rows]
            if not bool(ok.any()):  # every reward of this chunk failed (NaN): it adds nothing to the gradient
                continue
            # grpo.context_grad false: the context carries no graph, so one build serves every term of this pass;
            # the frozen reference's context likewise serves every timestep's KL
            fixed_ctx = None if gr.context_grad else ch.context(policy, G, grad=False)
            ref_ctx = None
            if not nft and gr.kl_coef > 0:
                with torch.no_grad(), policy.reference():
                    ref_ctx = ch.context(policy, G)
            for k in range(gr.nft_timesteps if nft else 0):  # DiffusionNFT: regress on the finished images
                loss, kl, v_dev = nft_term(policy, ch, cfg, step, k, a, ok, nft_old, ema, fixed_ctx)
                (loss / n_terms).backward()
                losses.append(float(loss.detach()))
                if kl is not None:
                    kls.append(kl)
                clip_fracs.append(0.0)  # no ratio, no clip: the loss's own trust region (nft_loss) bounds the step
                devs.append(0.0)
                v_devs.append(v_dev)
            for k in range(0 if nft else len(r.steps)):
                ctx = fixed_ctx if fixed_ctx is not None else ch.context(policy, G)
                now = replay_step(policy, ctx, r, k, noise_level=ro.noise_level, cfg_scale=ro.cfg_scale)
                if epoch == 0:
                    check_first_ratio(now.log_prob[ok] - r.logprobs[ok, k])
                loss, ls = image_policy_loss(now.log_prob[ok], r.logprobs[ok, k], a[ok], gr.clip_range)
                if gr.kl_coef > 0:
                    with torch.no_grad(), policy.reference():
                        ref = replay_step(policy, ref_ctx, r, k, noise_level=ro.noise_level, cfg_scale=ro.cfg_scale)
                    kl = gaussian_kl(now.mean[ok], ref.mean[ok], now.std, now.block).mean()
                    loss = loss + gr.kl_coef * kl
                    kls.append(float(kl.detach()))
                (loss / n_terms).backward()
                losses.append(float(loss.detach()))
                clip_fracs.append(ls.clip_frac)
                devs.append(ls.ratio_max_dev)
            if ch.plans is not None and bool(ok.any()):  # the same advantage trains the text written first
                idx = ok.nonzero().squeeze(-1)
                tl, ts = plan_loss(policy, ch.plans.rows(idx), a[idx], first=epoch == 0, clip_low=rc.text_clip_low,
                                   clip_high=rc.text_clip_high, kl_coef=text_kl_coef)  # fmt: skip
                (tl * text_weight).backward()
                text_losses.append(ts.loss)
                text_clips.append(ts.clip_frac)
                text_kls.append(ts.kl)
        dist.sum_grads(params)
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        opt.step()
    if ema is not None:  # theta_old <- eta theta_old + (1 - eta) theta (identical on every rank)
        eta = soft_update_decay(step, gr.ema_rate, gr.ema_max)
        ema.update(eta)
        extra |= {"ema_decay": eta, "ema_gap": ema.max_gap()}
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    loss_m, kl_m, clip_m, tl_m, tc_m, tk_m = dist.mean([mean(losses), mean(kls), mean(clip_fracs), mean(text_losses),
                                                        mean(text_clips), mean(text_kls)])  # fmt: skip
    if text_losses or rc.enabled or fc.enabled:
        extra |= {"text_loss": tl_m, "text_clip_fraction": tc_m}
        if text_kl_coef > 0:
            extra["text_kl"] = tk_m
    if nft:
        extra["velocity_max_dev"] = dist.max(max(v_devs, default=0.0))
    return StepStats(loss_m, st.reward_mean, st.reward_std, st.frac_reward_zero_std, st.n_invalid, kl_m, clip_m,
                     dist.max(max(devs)), False, rnd.sample_s, rnd.reward_wait_s, time.perf_counter() - t1,
                     **extra)  # fmt: skip


def save_checkpoint(run: Path, policy, opt, step: int, fingerprint: float | None = None,
                    ema: SamplingEMA | None = None) -> None:  # fmt: skip
    """Weights, optimizer, step and the sampling EMA if any (safetensors + JSON, atomic: never half-written)."""
    from checkpoint import save

    extra = {"sampling_ema": ema.state_dict()} if ema is not None else None
    save(run, policy, opt, {"step": step, "fingerprint": fingerprint}, extra)


def load_checkpoint(run: Path, policy, opt, ema: SamplingEMA | None = None) -> int:
    """Restore the latest checkpoint and check that the restored policy evaluates as it did when saved."""
    from checkpoint import latest, load, load_extra

    state = load(run, policy, opt)
    if ema is None and (latest(run) / "sampling_ema.safetensors").exists():
        log.warning("%s was trained with a sampling EMA (grpo.ema_max > 0); resuming without one: rollouts are "
                    "on-policy from here", run)  # fmt: skip
    if hasattr(policy, "check_fingerprint"):
        policy.check_fingerprint(state.get("fingerprint"), f"checkpoint of {run}")
    if ema is not None:
        try:
            ema.load_state_dict(load_extra(run, "sampling_ema"))
        except FileNotFoundError as e:
            raise RuntimeError(f"{run}'s checkpoint has no sampling EMA: it was saved with grpo.ema_max 0") from e
    return state["step"]


def param_groups(policy, lm_lr: float | None) -> list[dict]:
    """The optimizer's groups: all trainable weights at the base lr, or (``lm_lr`` given) the language model's
    (``policy.language_parameters()``) at ``lm_lr`` and the rest at the base lr."""
    params = [p for p in policy.parameters() if p.requires_grad]
    if lm_lr is None:
        return [{"params": params}]
    if not hasattr(policy, "language_parameters"):
        raise ValueError(f"optim.lm_lr needs a policy that names its language model's weights "
                         f"(language_parameters()); {type(policy).__name__} does not")  # fmt: skip
    lm = {id(p) for p in policy.language_parameters()}
    groups = [{"params": [p for p in params if id(p) not in lm]},
              {"params": [p for p in params if id(p) in lm], "lr": lm_lr}]
    if not groups[0]["params"] or not groups[1]["params"]:
        raise ValueError("optim.lm_lr: the policy's trainable weights do not split into a language model and the rest")
    return groups


def train(cfg: TrainConfig, policy, task: Task, fetcher: RewardFetcher, resume: bool = False,
          progress: bool = True, monitor: Monitor | None = None) -> list[dict]:  # fmt: skip
    """Run ``cfg.run.steps`` steps (from the checkpoint if ``resume``); returns the JSONL records written.
    Under ``torchrun`` every rank calls this; rank 0 alone logs, evaluates, plots and checkpoints."""
    from tqdm import tqdm

    from checkpoint import latest

    dist = Dist.current()
    if cfg.rollout.chunks % dist.world:
        raise ValueError(f"rollout.chunks ({cfg.rollout.chunks}) must be divisible by the world size ({dist.world})")
    run = Path(cfg.run.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    for p in policy.parameters():  # invariant: trainable weights stay in fp32 (bf16 masters lose small updates)
        assert not p.requires_grad or p.dtype == torch.float32, "trainable weights must be float32"
    # a text KL needs text to hold: plans (reason) or critiques + edits (reflect)
    rc, fc = cfg.reason, cfg.reflect
    text_kl = (rc.enabled and rc.text_kl_coef > 0) or (fc.enabled and fc.text_kl_coef > 0)
    if (cfg.grpo.kl_coef > 0 or text_kl) and hasattr(policy, "freeze_reference"):
        policy.freeze_reference()  # the loaded base (image or text KL); a LoRA policy disables its adapters instead
    opt = torch.optim.AdamW(param_groups(policy, cfg.optim.lm_lr), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    ema = SamplingEMA(policy) if cfg.grpo.ema_max > 0 else None  # theta_old starts as the loaded weights
    start = load_checkpoint(run, policy, opt, ema) if resume and latest(run) is not None else 0
    fingerprint = policy.fingerprint() if hasattr(policy, "fingerprint") else None
    main = dist.is_main
    if main:
        (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        if hasattr(fetcher, "describe"):  # which verifier (weights fingerprint) rewarded this run
            source = fetcher.describe()
            log.info("rewarded by %s", source)
            (run / "reward_source.json").write_text(json.dumps(source, indent=2))
    if main and not resume:
        (run / "log.jsonl").unlink(missing_ok=True)
    records = _read_log(run / "log.jsonl", upto=start) if main else []  # a resumed run keeps its baseline
    if main and start == 0 and cfg.run.eval_every and cfg.run.eval_at_start and not records:
        base = {"step": 0, "eval": task.evaluate(policy, 0)}  # the starting point, same prompts and noise
        log.info("step 0 eval: %s", base["eval"])
        _append(run / "log.jsonl", base)
        records.append(base)
    dist.barrier()
    steps = range(start, cfg.run.steps)
    if cfg.run.max_minutes is not None:  # a time-limited run has no known length: an iterator without len()
        steps = itertools.islice(itertools.count(start), cfg.run.steps - start)
    bar = tqdm(steps, initial=start, disable=not (progress and main), desc="grpo")
    t_start = time.monotonic()
    for step in bar:
        t0 = time.perf_counter()
        st = train_step(policy, task, fetcher, opt, cfg, step, dist, ema)
        wall = time.perf_counter() - t0
        rec = {"step": step + 1, **{k: v for k, v in st.__dict__.items() if v is not None}, "step_s": round(wall, 3),
               "reward_wait_fraction": round(st.reward_wait_s / wall, 4),
               "samples_per_second": round(
                   cfg.rollout.prompts_per_step * cfg.rollout.group_size / wall, 2)}  # fmt: skip
        out_of_time = cfg.run.max_minutes is not None and time.monotonic() - t_start > cfg.run.max_minutes * 60
        last = step + 1 == cfg.run.steps or dist.max(float(out_of_time)) > 0  # every rank stops together
        if main and cfg.run.eval_every and ((step + 1) % cfg.run.eval_every == 0 or last):
            rec["eval"] = task.evaluate(policy, step + 1)
            bar.write(f"step {step + 1}: eval {rec['eval']}")
        if main and ((step + 1) % cfg.run.checkpoint_every == 0 or last):
            save_checkpoint(run, policy, opt, step + 1, policy.fingerprint() if fingerprint is not None else None, ema)
        if main:
            _append(run / "log.jsonl", rec)
            records.append(rec)
            bar.set_postfix(reward=f"{st.reward_mean:.3f}", clip=f"{st.clip_fraction:.2f}")
            if monitor is not None:
                monitor.update(rec)
            if rec.get("eval") or last:
                plot_curves([r for r in records if "loss" in r or r.get("eval")], run / "curves.png",
                            title=f"GRPO {run.name}",
                            reward=REWARD_LABELS.get(cfg.reward.mode, cfg.reward.mode))  # fmt: skip
        dist.barrier()
        if last:
            break
    if monitor is not None:
        monitor.set_state("finished")
    return records


def _append(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _read_log(path: Path, upto: int) -> list[dict]:
    """The records of a resumed run up to its checkpoint (a crash may have logged steps past it: dropped)."""
    if not path.exists():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in recs if r["step"] <= upto]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept
