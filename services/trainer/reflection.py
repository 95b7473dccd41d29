"""The reward rules of reasoning text-to-image and self-reflective refinement, as pure functions.

* ``select_initial``: per prompt, the lowest-DVReward of N deterministic samples is the image to refine;
  its reward is R_init (NaN rewards are never selected; a prompt with no valid sample is dropped).
* ``rectify``: **false-positive rectification**. A refinement that does not beat its prompt's R_init gets
  that group's floor reward, R_init itself, so (a) no failed refinement can earn a positive advantage, (b)
  failures always share the lowest reward of their group, (c) a group where every refinement fails has zero
  variance and carries no signal, and (d) a round where nothing improves is reported so it can be skipped.
  Net effect: R' = max(R, R_init), as the reference's ``clamp_no_improve_reward``; NaN stays NaN (excluded).
* ``keep_refinement``: the inference-time rule (``alphagrpo generate --reflect K`` and the evaluation's
  ``reflect1_*`` figures): a refined image replaces the current one only if its DVReward beats the current
  one's by more than ``margin``; a NaN on either side keeps the current image. DVReward decides, never the
  oracle (the reference's evaluation keeps a refinement by the benchmark's own verdict: we do not).
* ``think_format_reward``: 1 for a well-formed plan (one non-empty ``<think> ... </think>`` block before
  anything else), else 0. The reference adds a weighted format reward to the plan's trajectory reward; we
  add it to every sample of a mixed run the same way (its mixed mode added it to R_init only: we do not).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch


def select_initial(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``rewards`` (P, N): N candidate images per prompt. Returns (index (P,), r_init (P,)); index -1 and
    r_init NaN for a prompt whose every candidate failed."""
    if rewards.dim() != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards must be (prompts, candidates), got {tuple(rewards.shape)}")
    filled = torch.where(torch.isnan(rewards), torch.full_like(rewards, math.inf), rewards)
    r_init, idx = filled.min(dim=1)
    none = torch.isinf(r_init)
    return (torch.where(none, torch.full_like(idx, -1), idx),
            torch.where(none, torch.full_like(r_init, math.nan), r_init))


@dataclass
class RectifyStats:
    n_improved: int  # refinements that beat their R_init
    n_failed: int  # valid refinements that did not (clamped to the floor)
    n_invalid: int  # NaN rewards (left NaN: excluded downstream)
    groups_without_improvement: int
    round_has_improvement: bool  # False: the round carries no signal and is skipped


def rectify(refined: torch.Tensor, groups: torch.Tensor, r_init: torch.Tensor,
            margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, RectifyStats]:  # fmt: skip
    """False-positive rectification.

    Args:
        refined: (B,) DVReward of each refined image (NaN = failed verification).
        groups: (B,) index into ``r_init`` of each sample's prompt.
        r_init: (G,) the reward of the image each group refined.
        margin: a refinement must beat R_init by more than this to count as an improvement.
    Returns:
        rewards (B,) with failures set to their group's R_init, improved (B,) bool, stats.
    """
    if refined.shape != groups.shape or refined.dim() != 1:
        raise ValueError(f"refined {tuple(refined.shape)} and groups {tuple(groups.shape)} must be equal 1-D shapes")
    base = r_init[groups]
    valid = ~torch.isnan(refined) & ~torch.isnan(base)
    improved = valid & (refined > base + margin)
    out = torch.where(valid & ~improved, base, refined)
    out = torch.where(valid, out, torch.full_like(out, math.nan))
    n_groups_without = sum(1 for g in torch.unique(groups) if not bool(improved[groups == g].any()))
    stats = RectifyStats(int(improved.sum()), int((valid & ~improved).sum()), int((~valid).sum()), n_groups_without,
                         bool(improved.any()))  # fmt: skip
    return out, improved, stats


def keep_refinement(current: float, refined: float, margin: float = 0.0) -> bool:
    """Whether a refined image replaces the current one: its DVReward must beat the current image's by more than
    ``margin``. A failed reward (NaN) on either side never counts as an improvement."""
    if math.isnan(current) or math.isnan(refined):
        return False
    return refined > current + margin


_THINK = re.compile(r"^\s*<think>(?P<plan>.*?)</think>", re.S)


def think_format_reward(text: str) -> float:
    """1.0 when ``text`` opens with exactly one non-empty <think> ... </think> block, else 0.0."""
    m = _THINK.match(text)
    if m is None or not m.group("plan").strip():
        return 0.0
    return 0.0 if "<think>" in m.group("plan") or "<think>" in text[m.end() :] or "</think>" in text[m.end() :] else 1.0
