"""The Flow-GRPO SDE step: a deterministic flow-matching ODE step turned into a Gaussian policy with a
log-prob, so GRPO can train an image generator. Adapted in our own words from the reference's
``sde_step`` (itself Flow-GRPO's, which adapted DDPO's DDIM variant to flow matching).

Convention (Bagel / rectified flow): x_t = (1 - t) x0 + t eps, the model predicts v = eps - x0, time runs
from 1 (noise) to 0 (data), and a step goes from t to t' < t with dt = t' - t < 0.

    sigma_t = a * sqrt(t / (1 - t))                       (a = noise level; t = 1 uses t_cap instead)
    mu      = x_t (1 + sigma_t^2 dt / (2 t)) + v (1 + sigma_t^2 (1 - t) / (2 t)) dt
    x_t'    = mu + sigma_t sqrt(-dt) eps'
    log p   = mean over elements of -(x_t' - mu)^2 / (2 sigma_t^2 |dt|)   (constants dropped, as the reference)

With a = 0 the step is the plain Euler ODE step x_t + v dt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SDEStep:
    sample: torch.Tensor  # x_t', (B, ...)
    log_prob: torch.Tensor  # (B,) mean over elements
    mean: torch.Tensor  # mu, (B, ...)
    std: torch.Tensor  # sigma_t * sqrt(|dt|), scalar tensor


def timesteps(n: int, shift: float = 1.0) -> torch.Tensor:
    """``n`` points from 1 to 0, shifted t -> s t / (1 + (s - 1) t) (s = 3 in the reference)."""
    t = torch.linspace(1.0, 0.0, n, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def sde_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, noise_level: float, *,
             t_cap: float | None = None, prev_sample: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> SDEStep:  # fmt: skip
    """One stochastic step t -> t_next; with ``prev_sample`` it scores that sample instead of drawing one."""
    if not t_next < t:
        raise ValueError(f"time must decrease: t={t}, t_next={t_next}")
    dt = t_next - t
    tt = t_cap if (t >= 1.0 and t_cap is not None) else t
    if noise_level == 0 or tt >= 1.0:
        sigma = torch.tensor(0.0)
    else:
        sigma = torch.tensor(noise_level * (tt / (1 - tt)) ** 0.5)
    xf, vf = x.float(), v.float()  # the update and its log-prob in fp32 (numerics; diffusers does the same)
    if sigma == 0:
        mean = xf + vf * dt
        sample = mean if prev_sample is None else prev_sample.float()
        return SDEStep(sample.to(x.dtype), torch.zeros(x.shape[0]), mean, torch.tensor(0.0))
    mean = xf * (1 + sigma**2 * dt / (2 * tt)) + vf * (1 + sigma**2 * (1 - tt) / (2 * tt)) * dt
    std = sigma * (-dt) ** 0.5
    if prev_sample is None:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=x.device)
        sample = mean + std * noise
    else:
        sample = prev_sample.float()
    log_prob = (-((sample.detach() - mean) ** 2) / (2 * std**2)).flatten(1).mean(1)
    return SDEStep(sample.to(x.dtype), log_prob, mean, std)
