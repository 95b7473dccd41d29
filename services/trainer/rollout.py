"""Image rollouts: a whole group in one batched pass, stochastic inside an SDE window, ODE elsewhere.

``sample_images`` runs ``n_steps`` transitions of the shifted time grid; transitions ``window_start`` ..
``window_start + window_len - 1`` use the Flow-GRPO SDE step and record (x_t, x_t', log-prob); the others are
Euler ODE steps. ``recompute_logprobs`` replays exactly those window transitions under the current (or the
reference) weights, which is what the GRPO image loss needs: with unchanged weights it reproduces the
rollout's log-probs (the first-step ratio == 1 invariant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.flow_sde import sde_step, timesteps
from trainer.policies.base import Context, Policy


@dataclass
class ImageRollout:
    images: torch.Tensor  # (B, C, H, W) final samples x_0
    steps: list[int]  # indices of the trained (stochastic) transitions
    x_before: torch.Tensor  # (B, W, C, H, W) x_t at each trained transition
    x_after: torch.Tensor  # (B, W, C, H, W) the sampled x_t'
    logprobs: torch.Tensor  # (B, W)
    grid: torch.Tensor  # (n_steps + 1,) the time grid


@torch.no_grad()
def sample_images(policy: Policy, ctx: Context, *, n_steps: int = 16, shift: float = 3.0, window_start: int = 0,
                  window_len: int = 0, noise_level: float = 0.7, cfg_scale: float = 1.0,
                  generator: torch.Generator | None = None) -> ImageRollout:  # fmt: skip
    b = ctx.hidden.shape[0]
    grid = timesteps(n_steps + 1, shift)
    x = torch.randn((b, *policy.image_shape), generator=generator)
    window = list(range(window_start, min(n_steps, window_start + window_len)))
    befores, afters, logps = [], [], []
    for i in range(n_steps):
        t, t_next = float(grid[i]), float(grid[i + 1])
        v = policy.velocity(x, torch.full((b,), t), ctx, cfg_scale)
        if i in window:
            step = sde_step(x, v, t, t_next, noise_level, t_cap=float(grid[1]), generator=generator)
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
        logprobs=torch.stack(logps, 1) if logps else torch.zeros(b, 0), grid=grid,
    )  # fmt: skip


def recompute_logprobs(policy: Policy, ctx: Context, r: ImageRollout, *, noise_level: float = 0.7,
                       cfg_scale: float = 1.0, k: int | None = None) -> torch.Tensor:  # fmt: skip
    """Log-probs of the stored window transitions under the current weights, (B, W) (or (B,) for one ``k``)."""
    b = r.images.shape[0]
    out = []
    for j, i in enumerate(r.steps):
        if k is not None and j != k:
            continue
        t, t_next = float(r.grid[i]), float(r.grid[i + 1])
        v = policy.velocity(r.x_before[:, j], torch.full((b,), t), ctx, cfg_scale)
        out.append(sde_step(r.x_before[:, j], v, t, t_next, noise_level, t_cap=float(r.grid[1]),
                            prev_sample=r.x_after[:, j]).log_prob)  # fmt: skip
    return out[0] if k is not None else torch.stack(out, 1)
