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

Block noise (``block`` = f > 1; our departure, off by default): eps' is drawn on an (H/f, W/f) grid and repeated
over f x f pixel blocks, so each pixel keeps the variance sigma_t^2 |dt| but the step explores only the
block-constant (low-frequency) subspace, f^2 times fewer dimensions. The Gaussian then lives in that subspace:
its score correction is projected onto it (mu = x + v dt + sigma^2 dt / (2t) P(x + (1 - t) v), which is the
line above with P = identity), and the log-prob is that of the block means of x_t' - mu (P = average-pool then
repeat, an orthogonal projection), mean over the coarse elements. A score-function gradient's noise grows with
the dimension explored; colour, presence and position are low-frequency, so fewer dimensions should buy signal.
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
    block: int = 1  # the noise's pixel block (1 = isotropic, the paper's)


def block_mean(x: torch.Tensor, block: int) -> torch.Tensor:
    """The mean of each ``block`` x ``block`` pixel block of (B, C, H, W): coordinates in the block-noise subspace."""
    if block == 1:
        return x
    if x.dim() != 4 or x.shape[-1] % block or x.shape[-2] % block:
        raise ValueError(f"noise block {block} needs (B, C, H, W) images with H and W divisible by it, got "
                         f"{tuple(x.shape)}")
    return torch.nn.functional.avg_pool2d(x, block)


def project(x: torch.Tensor, block: int) -> torch.Tensor:
    """Orthogonal projection onto block-constant images (block means repeated over their blocks)."""
    if block == 1:
        return x
    return block_mean(x, block).repeat_interleave(block, -2).repeat_interleave(block, -1)


def timesteps(n: int, shift: float = 1.0) -> torch.Tensor:
    """``n`` points from 1 to 0, shifted t -> s t / (1 + (s - 1) t) (s = 3 in the reference)."""
    return shift_time(torch.linspace(1.0, 0.0, n, dtype=torch.float64), shift).float()


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """The timestep shift t -> s t / (1 + (s - 1) t): uniform t becomes the sampler's density of times."""
    return shift * t / (1 + (shift - 1) * t)


def sde_step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, noise_level: float, *,
             t_cap: float | None = None, prev_sample: torch.Tensor | None = None,
             generator: torch.Generator | None = None, block: int = 1,
             antithetic: bool = False) -> SDEStep:  # fmt: skip
    """One stochastic step t -> t_next; with ``prev_sample`` it scores that sample instead of drawing one.
    ``block`` > 1: block noise (module docstring). ``antithetic``: rows 2j and 2j + 1 get opposite noises
    (eps, -eps); each row's noise is still standard normal, so each sample and its log-prob are unchanged in
    law, but a pair starting from one state brackets its mean (mirrored sampling)."""
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
        return SDEStep(sample.to(x.dtype), torch.zeros(x.shape[0]), mean, torch.tensor(0.0), block)
    if block == 1:  # the reference's arrangement of the same formula (kept: bit-identical rollouts)
        mean = xf * (1 + sigma**2 * dt / (2 * tt)) + vf * (1 + sigma**2 * (1 - tt) / (2 * tt)) * dt
    else:
        mean = xf + vf * dt + sigma**2 * dt / (2 * tt) * project(xf + (1 - tt) * vf, block)
    std = sigma * (-dt) ** 0.5
    if prev_sample is None:
        coarse = block_mean(x, block).shape
        if antithetic:
            if coarse[0] % 2:
                raise ValueError(f"antithetic noise pairs rows: the batch ({coarse[0]} rows) must be even")
            half = torch.randn((coarse[0] // 2, *coarse[1:]), generator=generator, dtype=torch.float32, device=x.device)
            noise = torch.stack([half, -half], 1).flatten(0, 1)
        else:
            noise = torch.randn(coarse, generator=generator, dtype=torch.float32, device=x.device)
        if block > 1:
            noise = noise.repeat_interleave(block, -2).repeat_interleave(block, -1)
        sample = mean + std * noise
    else:
        sample = prev_sample.float()
    resid = block_mean(sample.detach() - mean, block)
    log_prob = (-(resid**2) / (2 * std**2)).flatten(1).mean(1)
    return SDEStep(sample.to(x.dtype), log_prob, mean, std, block)
