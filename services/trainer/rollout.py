"""Image rollouts: a whole group in one batched pass, stochastic inside an SDE window, ODE elsewhere.

``sample_images`` runs ``n_steps`` transitions of the shifted time grid; transitions ``window_start`` ..
``window_start + window_len - 1`` use the Flow-GRPO SDE step and record (x_t, x_t', log-prob); the others are
Euler ODE steps (optionally a group of rows shares its initial noise, so they differ only inside the window).
``recompute_logprobs`` replays exactly those window transitions under the current (or the
reference) weights, which is what the GRPO image loss needs: with unchanged weights it reproduces the
rollout's log-probs (the first-step ratio == 1 invariant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.flow_sde import SDEStep, sde_step, timesteps
from trainer.policies.base import Context, Policy


@dataclass
class ImageRollout:
    images: torch.Tensor  # (B, C, H, W) final samples x_0
    steps: list[int]  # indices of the trained (stochastic) transitions
    x_before: torch.Tensor  # (B, W, C, H, W) x_t at each trained transition
    x_after: torch.Tensor  # (B, W, C, H, W) the sampled x_t'
    logprobs: torch.Tensor  # (B, W)
    grid: torch.Tensor  # (n_steps + 1,) the time grid
    noise_block: int = 1  # the SDE noise's pixel block (``flow_sde``); replays score with the same


@torch.no_grad()
def sample_images(policy: Policy, ctx: Context, *, n_steps: int = 16, shift: float = 3.0, window_start: int = 0,
                  window_len: int = 0, noise_level: float = 0.7, cfg_scale: float = 1.0,
                  generator: torch.Generator | None = None, noise_group: int = 1,
                  noise_block: int = 1, antithetic: bool = False) -> ImageRollout:  # fmt: skip
    """``noise_group`` consecutive rows (a prompt's group) share one initial noise; 1 = a noise per row.
    ``noise_block`` > 1: the window's SDE noise is constant over that many pixels square (``flow_sde``);
    ``antithetic``: rows 2j and 2j + 1 take opposite window noises (with ``noise_group`` even, a pair starts
    from one initial noise and brackets the same mean)."""
    b = ctx.hidden.shape[0]
    if noise_group < 1 or b % noise_group:
        raise ValueError(f"noise_group {noise_group} must divide the batch ({b} rows)")
    grid = timesteps(n_steps + 1, shift)
    x = torch.randn((b // noise_group, *policy.image_shape), generator=generator).repeat_interleave(noise_group, 0)
    window = list(range(window_start, min(n_steps, window_start + window_len)))
    befores, afters, logps = [], [], []
    for i in range(n_steps):
        t, t_next = float(grid[i]), float(grid[i + 1])
        v = policy.velocity(x, torch.full((b,), t), ctx, cfg_scale)
        if i in window:
            step = sde_step(x, v, t, t_next, noise_level, t_cap=float(grid[1]), generator=generator, block=noise_block,
                            antithetic=antithetic)  # fmt: skip
            befores.append(x)
            afters.append(step.sample)
            logps.append(step.log_prob)
            x = step.sample
        else:
            x = x + v * (t_next - t)
    empty = torch.zeros((b, 0, *policy.image_shape))
    return ImageRollout(
        images=x.clamp(-1, 1), steps=window,
        x_before=torch.stack(befores, 1) if befores else empty, x_after=torch.stack(afters, 1) if afters else empty,
        logprobs=torch.stack(logps, 1) if logps else torch.zeros(b, 0), grid=grid, noise_block=noise_block,
    )  # fmt: skip


def replay_step(policy: Policy, ctx: Context, r: ImageRollout, k: int, *, noise_level: float = 0.7,
                cfg_scale: float = 1.0) -> SDEStep:  # fmt: skip
    """The ``k``-th stored window transition scored under the current weights (or the reference, inside
    ``policy.reference()``): its log-prob and its Gaussian mean (for the KL term)."""
    b = r.images.shape[0]
    i = r.steps[k]
    t, t_next = float(r.grid[i]), float(r.grid[i + 1])
    v = policy.velocity(r.x_before[:, k], torch.full((b,), t), ctx, cfg_scale)
    return sde_step(r.x_before[:, k], v, t, t_next, noise_level, t_cap=float(r.grid[1]), prev_sample=r.x_after[:, k],
                    block=r.noise_block)  # fmt: skip


def recompute_logprobs(policy: Policy, ctx: Context, r: ImageRollout, *, noise_level: float = 0.7,
                       cfg_scale: float = 1.0, k: int | None = None) -> torch.Tensor:  # fmt: skip
    """Log-probs of the stored window transitions under the current weights, (B, W) (or (B,) for one ``k``)."""
    ks = [k] if k is not None else range(len(r.steps))
    out = [replay_step(policy, ctx, r, j, noise_level=noise_level, cfg_scale=cfg_scale).log_prob for j in ks]
    return out[0] if k is not None else torch.stack(out, 1)
