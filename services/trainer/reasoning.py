"""Reasoning text-to-image (think, then generate): plan rollouts and the plan's share of the GRPO loss.

The policy continues ``prompt <think>`` with a plan up to ``</think>`` (``sample_plans``); each image is then
generated conditioned on its own ``prompt <think> plan </think>``, so every sample of a group has its own
plan. One advantage per trajectory trains both: the image steps through ``image_policy_loss`` and the plan's
tokens through ``text_policy_loss`` (sequence-level ratio, asymmetric clip), whose weight follows the
reference: text loss x (trained image timesteps) x ``text_loss_weight``. The trajectory reward is DVReward of
the image against the *original* prompt plus ``format_weight`` x the plan format reward.

Departures from the reference: plans are sampled for a whole chunk in one batched pass (left-padded), not
one sample at a time; the rollout's per-token log-probs come from the same forward that sampled them
(temperature 1, the full softmax, as the reference's teacher-forced pass) and the first training pass
checks that they are reproduced (ratio == 1); the image loss also trains the language model through the
context (the reference detaches the prompt and plan KV), because the tiny UMM's LM *is* its text encoder;
``grpo.context_grad: false`` restores the reference's scope (only the plan loss trains the LM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from trainer.grpo import check_first_ratio, k3_kl, text_policy_loss
from trainer.reflection import think_format_reward


class PlanTask(Protocol):
    """What a task supplies for planning: left-padded ``prompt <think>`` ids and the plan vocabulary."""

    think_close_id: int
    pad_id: int

    def plan_prompts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, ids: torch.Tensor) -> str: ...


@dataclass
class Plans:
    ids: torch.Tensor  # (B, L + T) prompt, <think>, plan and </think>, left-padded (and right-padded after a stop)
    mask: torch.Tensor  # (B, L + T)
    generated: torch.Tensor  # (B, T) 1 = a sampled token
    logprobs: torch.Tensor  # (B, T) rollout log-probs at temperature 1
    format: torch.Tensor  # (B,) float, 1 = a well-formed plan
    texts: list[str]  # "<think> ... </think>" as decoded, for logs and grids
    image: torch.Tensor | None = None  # (B, C, H, W) the input image the text was written about (refinement)

    def rows(self, index: torch.Tensor) -> Plans:
        """The plans of the rows ``index`` (1-D long tensor)."""
        return Plans(self.ids[index], self.mask[index], self.generated[index], self.logprobs[index],
                     self.format[index], [self.texts[i] for i in index.tolist()],
                     None if self.image is None else self.image[index])  # fmt: skip


def sample_plans(policy, task: PlanTask, prompts: list[str], *, max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, generator: torch.Generator | None = None,
                 image: torch.Tensor | None = None) -> Plans:  # fmt: skip
    """One plan per prompt row (repeat a prompt G times for a group), sampled in one batched pass. With an
    input ``image`` (refinement) the policy reads it first and the text is its critique and edit."""
    ids, mask = task.plan_prompts(prompts)
    s = policy.sample_text(ids, mask, max_new_tokens=max_tokens, stop_token_id=task.think_close_id,
                           pad_token_id=task.pad_id, temperature=temperature, top_p=top_p, generator=generator,
                           image=image)  # fmt: skip
    t = s.generated.shape[1]
    texts = ["<think>" + task.decode(row[-t:][g.bool()]) for row, g in zip(s.ids, s.generated)]
    fmt = torch.tensor([think_format_reward(x) for x in texts], dtype=torch.float32)
    return Plans(s.ids, s.mask, s.generated, s.logprobs, fmt, texts, image)


def plan_logprobs(policy, plans: Plans) -> torch.Tensor:
    """Log-probs of the sampled plan tokens under the current weights (or the reference), (B, T)."""
    t = plans.generated.shape[1]
    return policy.token_logprobs(plans.ids, plans.mask, plans.image)[:, -t:]


@dataclass
class TextLossStats:
    loss: float
    clip_frac: float
    kl: float


def plan_loss(policy, plans: Plans, adv: torch.Tensor, *, first: bool, clip_low: float = 0.2,
              clip_high: float = 0.28, kl_coef: float = 0.0) -> tuple[torch.Tensor, TextLossStats]:  # fmt: skip
    """The plan's GRPO loss for rows with a valid advantage: sequence-level clipped ratio, each sample with its
    own advantage, plus optional k3 KL to the reference (weighted by the detached ratio, as the reference).
    ``first``: the first pass over this rollout, where the ratio must be exactly 1 (checked)."""
    now = plan_logprobs(policy, plans)
    m = plans.generated.to(now.dtype)
    if first:
        check_first_ratio(((now - plans.logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1))
    loss, st = text_policy_loss(now, plans.logprobs, plans.generated, adv, clip_low, clip_high)
    kl_value = 0.0
    if kl_coef > 0:
        with torch.no_grad(), policy.reference():
            ref = plan_logprobs(policy, plans)
        ratio = torch.exp((((now - plans.logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1)).detach())
        kl = (k3_kl(now, ref, plans.generated) * ratio).mean()
        loss = loss + kl_coef * kl
        kl_value = float(kl.detach())
    return loss, TextLossStats(float(loss.detach()), st.clip_frac, kl_value)
