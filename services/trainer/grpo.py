"""GRPO maths for AR-diffusion policies, as pure tensor functions (no model, no I/O).

* ``group_advantages``: A_i = (R_i - mean of R over i's prompt group) / (std + eps), with the std taken per
  group or over the whole round (the reference's choice), clipped; NaN rewards (failed verifications) are
  excluded from every statistic and get advantage 0 *and* a False ``valid`` flag, so callers drop them
  rather than train on them.
* ``image_policy_loss``: Flow-GRPO's clipped ratio loss for one trained timestep, per-sample log-probs.
* ``text_policy_loss``: GSPO-style sequence-level ratio (mean token log-ratio) with DAPO's asymmetric clip
  [1 - 0.2, 1 + 0.28], each sample multiplied by *its own* advantage. The reference multiplies a (B,)
  ratio by a (B, 1) advantage, which broadcasts to (B, B) and mixes samples; we do not.
* ``gaussian_kl``: the closed-form KL between the current and the reference policy's SDE-step Gaussians
  (same std, different means), for the optional image KL term.
* ``k3_kl``: the k3 estimator of KL(pi_theta || pi_ref) per token, averaged per sequence.
* ``nft_loss``: the forward-process objective of DiffusionNFT (Zheng et al., 2025), our departure from the
  paper's image loss and an option beside it (``grpo.objective: nft``): the same group advantages, but instead
  of a likelihood ratio of a few SDE transitions, a flow-matching regression on the finished images, pulled
  toward images with a positive advantage and pushed from those with a negative one (its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.flow_sde import block_mean


@dataclass
class AdvantageStats:
    frac_reward_zero_std: float  # share of groups whose valid rewards are all equal: no learning signal
    n_invalid: int  # samples with a NaN reward, excluded
    reward_mean: float
    reward_std: float


def group_advantages(
    rewards: torch.Tensor, groups: torch.Tensor, *, std_scope: str = "round", eps: float = 1e-4, clip: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor, AdvantageStats]:
    """Group-relative advantages.

    Args:
        rewards: (B,) float, NaN where the reward failed.
        groups: (B,) int, the prompt group of each sample.
        std_scope: "round" (std over every valid reward of the round) or "group" (std within the group).
        eps: added to the std.
        clip: advantages are clipped to [-clip, clip].
    Returns:
        advantages (B,), valid (B,) bool, stats.
    """
    if rewards.shape != groups.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and groups {tuple(groups.shape)} must be equal 1-D shapes")
    if std_scope not in ("round", "group"):
        raise ValueError(f"std_scope must be 'round' or 'group', not {std_scope!r}")
    valid = ~torch.isnan(rewards)
    r = torch.where(valid, rewards, torch.zeros_like(rewards)).double()
    adv = torch.zeros_like(r)
    round_std = r[valid].std(unbiased=False) if valid.sum() > 1 else torch.tensor(0.0, dtype=r.dtype)
    zero_std = n_groups = 0
    for g in torch.unique(groups):
        m = (groups == g) & valid
        if not m.any():
            continue
        n_groups += 1
        mean = r[m].mean()
        if torch.all(r[m] == r[m][0]):
            zero_std += 1
        std = round_std if std_scope == "round" else r[m].std(unbiased=False)
        denom = std + eps
        adv[m] = (r[m] - mean) / denom if denom > 0 else torch.zeros_like(r[m])  # one value: no signal
    adv = adv.clamp(-clip, clip).to(rewards.dtype)
    stats = AdvantageStats(
        frac_reward_zero_std=zero_std / max(1, n_groups),
        n_invalid=int((~valid).sum()),
        reward_mean=float(r[valid].mean()) if valid.any() else float("nan"),
        reward_std=float(round_std),
    )
    return adv, valid, stats


@dataclass
class LossStats:
    clip_frac: float  # share of samples whose ratio hit the clip
    ratio_mean: float
    ratio_max_dev: float  # max |ratio - 1|, to choose the clip range against


def clipped_ratio_loss(log_ratio: torch.Tensor, adv: torch.Tensor, low: float,
                       high: float) -> tuple[torch.Tensor, LossStats]:
    """mean_i max(-A_i r_i, -A_i clip(r_i, 1 - low, 1 + high)) with r = exp(log_ratio); all shapes (B,)."""
    if log_ratio.shape != adv.shape:
        raise ValueError(f"ratio {tuple(log_ratio.shape)} and advantage {tuple(adv.shape)} differ: no broadcasting")
    if log_ratio.numel() == 0:
        raise ValueError("no samples to train on: drop chunks whose rewards all failed before computing the loss")
    ratio = torch.exp(log_ratio)
    clipped = ratio.clamp(1 - low, 1 + high)
    loss = torch.maximum(-adv * ratio, -adv * clipped).mean()
    with torch.no_grad():
        hit = ((ratio < 1 - low) & (adv < 0)) | ((ratio > 1 + high) & (adv > 0))
        stats = LossStats(float(hit.float().mean()), float(ratio.mean()), float((ratio - 1).abs().max()))
    return loss, stats


def image_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, clip_range: float = 1e-5):
    """Flow-GRPO loss for one trained timestep. ``logp``/``logp_old``: (B,) per-sample log-probs of the
    stored next latent (mean over its elements, as the reference does, hence the tiny default clip)."""
    return clipped_ratio_loss(logp - logp_old, adv, clip_range, clip_range)


def text_policy_loss(token_logp: torch.Tensor, token_logp_old: torch.Tensor, mask: torch.Tensor, adv: torch.Tensor,
                     clip_low: float = 0.2, clip_high: float = 0.28):  # fmt: skip
    """Sequence-level ratio per sample: exp(mean over its tokens of log pi - log pi_old). Shapes (B, L)
    for token tensors and mask, (B,) for the advantage."""
    m = mask.to(token_logp.dtype)
    seq_log_ratio = ((token_logp - token_logp_old) * m).sum(-1) / m.sum(-1).clamp(min=1)
    return clipped_ratio_loss(seq_log_ratio, adv, clip_low, clip_high)


def k3_kl(token_logp: torch.Tensor, token_logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean of exp(ref - theta) - (ref - theta) - 1 (>= 0, unbiased for KL(theta || ref)), (B,)."""
    d = token_logp_ref - token_logp
    k3 = torch.exp(d) - d - 1
    m = mask.to(k3.dtype)
    return (k3 * m).sum(-1) / m.sum(-1).clamp(min=1)


def gaussian_kl(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor | float, block: int = 1) -> torch.Tensor:
    """KL between two SDE-step Gaussians with the same std, per sample, averaged over elements (the same
    per-element mean as the log-probs): mean((mu - mu_ref)^2) / (2 std^2), shape (B,). Flow-GRPO's KL term.
    With block noise (``block`` > 1) the Gaussians live in the block-constant subspace: the block means of
    mu - mu_ref, averaged over the coarse elements."""
    std = torch.as_tensor(std, dtype=torch.float32)
    if float(std) == 0:
        return torch.zeros(mean.shape[0], dtype=mean.dtype)
    return (block_mean(mean - mean_ref, block) ** 2).flatten(1).mean(1) / (2 * std**2)


def check_first_ratio(log_ratio: torch.Tensor, tol: float = 1e-5) -> None:
    """Invariant: on the first inner step the policy *is* the old policy, so every ratio is 1."""
    dev = float(torch.exp(log_ratio.detach()).sub(1).abs().max()) if log_ratio.numel() else 0.0
    if dev > tol:
        raise AssertionError(f"first-step ratio deviates from 1 by {dev:.2e} (> {tol:g}): rollout and training "
                             "compute different log-probs (dropout? different CFG? changed weights?)")  # fmt: skip


@dataclass
class NFTStats:
    optimality_mean_abs: float  # mean |2r - 1|: how far the samples' optimality weights are from indifferent
    velocity_max_dev: float  # max |v - v_old|: 0 on the first inner step; the trust region's scale after


def optimality(adv: torch.Tensor, scale: float) -> torch.Tensor:
    """DiffusionNFT's optimality probability r = 1/2 + 1/2 clamp(A / scale, -1, 1) in [0, 1], (B,)."""
    if scale <= 0:
        raise ValueError(f"the advantage scale must be > 0, got {scale}")
    return 0.5 + 0.5 * (adv / scale).clamp(-1, 1)


def nft_loss(v: torch.Tensor, v_old: torch.Tensor, target: torch.Tensor, adv: torch.Tensor, *, beta: float = 1.0,
             adv_scale: float = 5.0) -> tuple[torch.Tensor, NFTStats]:  # fmt: skip
    """DiffusionNFT's loss for one noised copy of each finished image, per-sample mean over elements.

    ``v``: the current velocity at x_t = (1 - t) x0 + t eps, (B, ...); ``v_old``: the rollout policy's (no
    gradient); ``target``: eps - x0; ``adv``: (B,) group advantages. With r = ``optimality(adv, adv_scale)``,
    the implicit positive and negative policies v+ = (1 - beta) v_old + beta v and v- = (1 + beta) v_old - beta v
    are regressed onto the target with weights r and 1 - r:

        loss = mean_i  r_i |v+_i - target_i|^2 + (1 - r_i) |v-_i - target_i|^2      (|.|^2: mean over elements)

    Its gradient in v at v = v_old is 2 beta (2 r - 1) (v_old - target): advantage-weighted flow matching, which
    moves the velocity toward the images with A > 0 and away from those with A < 0 (the group's mean cancels).
    Away from v_old a term 2 beta^2 (v - v_old) pulls it back: a trust region in place of the ratio clip. No
    log-probability is needed, so every timestep of every image can be trained, at one forward each."""
    if not (v.shape == v_old.shape == target.shape) or adv.shape != v.shape[:1]:
        raise ValueError(f"velocities {tuple(v.shape)}, {tuple(v_old.shape)}, target {tuple(target.shape)} and "
                         f"advantage {tuple(adv.shape)} must agree: (B, ...) and (B,)")  # fmt: skip
    if v.shape[0] == 0:
        raise ValueError("no samples to train on: drop chunks whose rewards all failed before computing the loss")
    if beta <= 0:
        raise ValueError(f"nft beta must be > 0, got {beta}")
    r = optimality(adv, adv_scale).to(v.dtype)
    v_old = v_old.detach()
    pos = ((1 - beta) * v_old + beta * v - target).pow(2).flatten(1).mean(1)
    neg = ((1 + beta) * v_old - beta * v - target).pow(2).flatten(1).mean(1)
    loss = (r * pos + (1 - r) * neg).mean()
    with torch.no_grad():
        stats = NFTStats(float((2 * r - 1).abs().mean()), float((v - v_old).abs().max()))
    return loss, stats


def velocity_kl(v: torch.Tensor, v_ref: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared velocity difference to the reference, (B,): the KL between the two policies'
    Euler-Maruyama steps up to a factor that depends only on t (the image KL term of the nft objective)."""
    return (v - v_ref.detach()).pow(2).flatten(1).mean(1)
