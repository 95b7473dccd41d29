"""``alphagrpo bench grad-snr``: how much of one GRPO step's gradient is signal, per rollout recipe.

At fixed weights (the loaded base, nothing is updated), each variant of the config runs ``batches`` real
training steps (``trainer.train.train_step``: rollouts, rewards, advantages, the loss and its backward, the
gradient clip) with an optimiser that records the gradient instead of applying it. Two steps with different
step indices draw independent prompts, SDE windows and noise, so their gradients g_i are independent draws
of one expectation G with noise of total variance s2 each. Then E[g_i . g_j] = |G|^2 (i != j) and E|g|^2 =
|G|^2 + s2, so the mean over pairs of g_i . g_j over the mean |g|^2 (``signal_fraction``, with a jackknife
standard error) estimates c = |G|^2 / (|G|^2 + s2), and ``snr2 = c / (1 - c)`` is the per-step
signal-to-noise ratio |G|^2 / s2 (negative when c < 0: no signal measurable). Averaging n steps multiplies
it by n, so ``snr2_per_s`` (snr2 over the seconds a step takes) is the rate at which a recipe gathers signal:
the figure to compare rollout recipes by at equal wall time. The clip rescales a gradient before it is recorded, as the
optimiser would see it; with ``grpo.inner_epochs`` > 1 only the last pass's gradient is recorded.

Why it exists: on ShapesWorld every 45-minute run moved held-out accuracy by a few points at most, even with
the oracle as the reward, and a 5x learning rate made things worse: the update direction, not the reward, is
the suspect. This measures that direction's quality in minutes instead of a 26-minute run per recipe.
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
import tempfile
import time

import torch


class GradientRecorder:
    """Stands in for the optimiser in ``train_step``: ``step`` stores the flattened gradient, weights stay.
    ``params``: a dict of named parameters (``dict(model.named_parameters())``) or any iterable of them."""

    def __init__(self, params):
        items = params.items() if isinstance(params, dict) else enumerate(params)
        named = [(n, p) for n, p in items if p.requires_grad]
        self.names, self.params = [str(n) for n, _ in named], [p for _, p in named]
        self.grads: list[torch.Tensor] = []

    def segments(self, depth: int = 2) -> dict[str, list[tuple[int, int]]]:
        """Where each module's parameters lie in a recorded vector: the first ``depth`` components of the
        parameter names ("unet.up_blocks", "lm.model", "proj.weight"), as (start, end) ranges."""
        out: dict[str, list[tuple[int, int]]] = {}
        at = 0
        for n, p in zip(self.names, self.params):
            out.setdefault(".".join(n.split(".")[:depth]), []).append((at, at + p.numel()))
            at += p.numel()
        return out

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        flat = [p.grad.detach().flatten() if p.grad is not None else torch.zeros(p.numel()) for p in self.params]
        self.grads.append(torch.cat(flat).double())


def _fraction(gram: torch.Tensor) -> float:
    """c from the Gram matrix of k gradients: the mean off-diagonal entry over the mean diagonal one."""
    k, sq = gram.shape[0], float(gram.diagonal().sum())
    return math.nan if sq == 0 else (float(gram.sum()) - sq) / ((k - 1) * sq)


def signal_fraction(grads: list[torch.Tensor]) -> float:
    """c = mean over pairs i != j of g_i . g_j, over the mean |g_i|^2: an estimate of |G|^2 / E|g|^2 (the share of
    a step gradient's squared norm that is signal), unbiased in numerator and denominator."""
    g = torch.stack(grads)
    return _fraction(g @ g.T)


def cosine_stats(grads: list[torch.Tensor]) -> dict:
    """The signal fraction c of independent step gradients with its jackknife standard error (leave one
    gradient out), the implied per-step SNR c / (1 - c), and the plain pairwise cosines' range. Everything
    comes from one k x k Gram matrix, so each gradient is read once."""
    k = len(grads)
    if k < 3:
        raise ValueError("need at least three gradients (two for the estimate, one more for its error)")
    g = torch.stack(grads)
    gram = g @ g.T
    c = _fraction(gram)
    keep = [[j for j in range(k) if j != i] for i in range(k)]
    loo = [_fraction(gram[idx][:, idx]) for idx in keep]
    # undefined figures are None (strict JSON): no gradient at all, or too few non-zero ones for the jackknife
    se = None
    if not any(math.isnan(x) for x in [c, *loo]):
        se = math.sqrt((k - 1) / k * sum((x - statistics.fmean(loo)) ** 2 for x in loo))
    norms = gram.diagonal().sqrt()
    cos = [float(gram[i, j] / (norms[i] * norms[j])) for i, j in itertools.combinations(range(k), 2)
           if norms[i] > 0 and norms[j] > 0]  # fmt: skip
    return {"signal_fraction": None if math.isnan(c) else round(c, 5),
            "signal_fraction_se": None if se is None else round(se, 5),
            "snr2": None if math.isnan(c) or c >= 1 else round(c / (1 - c), 5),
            "cos_min": round(min(cos), 4) if cos else None, "cos_max": round(max(cos), 4) if cos else None}  # fmt: skip


def by_module(rec: GradientRecorder, depth: int = 2) -> dict:
    """Per module: its share of the gradient's squared norm and the signal fraction of its own slice (where
    the noise lives, and whether any part of the network gets a cleaner direction)."""
    total = sum(float(g @ g) for g in rec.grads)
    out = {}
    for name, ranges in rec.segments(depth).items():
        part = [torch.cat([g[a:b] for a, b in ranges]) for g in rec.grads]
        sq = sum(float(g @ g) for g in part)
        if sq == 0:
            continue  # no gradient reached this module in any step
        st = cosine_stats(part)
        out[name] = {"norm2_share": round(sq / total, 4), "signal_fraction": st["signal_fraction"],
                     "signal_fraction_se": st["signal_fraction_se"]}  # fmt: skip
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["norm2_share"]))


def parse_variant(spec: str) -> tuple[str, list[str]]:
    """``name:group.field=value,group.field=value`` (``name:`` alone is the config as it is)."""
    name, sep, sets = spec.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"variant {spec!r}: expected name:group.field=value,... (or name: for the config itself)")
    parts, depth, cur = [], 0, ""
    for ch in sets:  # commas inside [...] or {...} belong to the value (rollout.window_range=[0,2])
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return name.strip(), [s.strip() for s in parts if s.strip()]


def measure(cfg, policy, tok, batches: int, first_step: int = 1_000_000, progress: bool = True) -> dict:
    """Record ``batches`` step gradients of one config at the policy's current weights."""
    if cfg.grpo.ema_max > 0:  # at fixed weights theta_old == theta: the variant would silently measure the plain one
        raise ValueError("grad-snr measures at fixed weights, where the sampling EMA equals the weights: "
                         "grpo.ema_max must be 0 in every variant")  # fmt: skip
    from tqdm import tqdm

    from recipes.grpo import ShapesTask, build_fetcher
    from trainer.train import train_step

    rec = GradientRecorder(dict(policy.named_parameters()))
    fetcher = build_fetcher(cfg)
    secs, rewards, zero, skipped = [], [], [], 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            task = ShapesTask(tok, fetcher, tmp, eval_prompts=1, **{k: v for k, v in cfg.task_kwargs().items()
                                                                     if k in ("train_categories", "eval_categories")})
            for i in tqdm(range(batches), desc="gradients", disable=not progress, leave=False):
                n_before = len(rec.grads)
                t0 = time.perf_counter()
                st = train_step(policy, task, fetcher, rec, cfg, first_step + i)
                secs.append(time.perf_counter() - t0)
                rewards.append(st.reward_mean)
                zero.append(st.frac_reward_zero_std)
                del rec.grads[n_before:-1]  # inner_epochs > 1: keep the last pass only (the passes are not independent)
                if st.skipped and len(rec.grads) == n_before:  # no advantage anywhere: a zero gradient, no direction
                    rec.grads.append(torch.zeros(sum(p.numel() for p in rec.params), dtype=torch.float64))
                    skipped += 1
    finally:
        rec.zero_grad()  # the last step's gradient would otherwise stay on the parameters
        fetcher.close()
    out = cosine_stats(rec.grads)
    out["by_module"] = by_module(rec)
    step_s = statistics.fmean(secs)
    out |= {"step_s": round(step_s, 2), "snr2_per_s": None if out["snr2"] is None else round(out["snr2"] / step_s, 6),
            "skipped_steps": skipped,
            "images_per_step": cfg.rollout.prompts_per_step * cfg.rollout.group_size,
            "reward_mean": round(statistics.fmean(rewards), 4),
            "frac_reward_zero_std": round(statistics.fmean(zero), 4),
            "batches": batches, "gradients": len(rec.grads)}  # fmt: skip
    return out


def run(config: str, variants: list[str], batches: int = 8, oracle: bool = True, model_path: str | None = None,
        progress: bool = True) -> dict:  # fmt: skip
    from transformers import AutoTokenizer

    from trainer.config import TrainConfig
    from trainer.policies.tiny_umm import TinyUMM

    base = TrainConfig.from_yaml(config)
    if oracle:
        base = base.with_overrides(["reward.mode=oracle"])
    if model_path:
        base = base.with_overrides([f"model_path={model_path}"])
    parsed = [parse_variant(v) for v in (variants or ["config:"])]
    cfgs = {name: base.with_overrides(sets) for name, sets in parsed}  # every variant is validated before any runs
    policy = TinyUMM.load(base.model_path).train()
    tok = AutoTokenizer.from_pretrained(base.model_path)
    out: dict = {"config": config, "model": base.model_path, "reward": "oracle " + base.reward.oracle_signal
                 if oracle else f"{base.reward.mode} ({base.reward.aggregation}) from {base.reward.verifier_url}",
                 "variants": {}}  # fmt: skip
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        figures = measure(cfg, policy, tok, batches, progress=progress)
        v = out["variants"][name] = {"overrides": dict(parsed)[name]} | figures
        sys.stderr.write(f"{name}: signal fraction {v['signal_fraction']} +- {v['signal_fraction_se']}, "
                         f"{v['step_s']} s a step\n")  # one line per variant, also with --json (stdout: JSON only)
    ref = next(iter(out["variants"].values()))
    for v in out["variants"].values():  # the rate of signal relative to the first variant
        a, b = v.get("snr2_per_s"), ref.get("snr2_per_s")
        v["snr2_per_s_vs_first"] = round(a / b, 3) if a is not None and b and b > 0 else None
    return out
