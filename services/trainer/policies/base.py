"""The policy interface GRPO trains: an AR-diffusion unified multimodal model seen as two policies.

* Text: sample tokens (a plan between <think> and </think>, a critique) with per-token log-probs, and
  recompute those log-probs under the current weights or the reference (adapter disabled).
* Image: a flow-matching sampler whose steps inside a chosen window are stochastic (the Flow-GRPO SDE, each a
  Gaussian with a log-prob) and whose other steps are the deterministic ODE; the window's log-probs can be
  recomputed for training. Classifier-free guidance lives *inside* ``velocity`` so rollout and training
  compute the same thing; conditioning may include an input image (refinement).

How a Bagel-class model implements it: ``encode`` runs the LLM over prompt (+ plan, + input-image tokens)
once per group and returns its KV context as the ``Context`` (batched: one row per sample); ``velocity``
is the generation expert's forward on noisy latent tokens against that context, with the CFG branches as
extra batch rows; LoRA adapters carry the trained weights and ``reference()`` disables them, so no second copy
of the model is ever held. Optional: ``language_parameters()`` names the LLM's trainable weights (its adapters),
so ``optim.lm_lr`` can give the text side its own learning rate.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Context:
    """What the image head is conditioned on, batched (B, ...)."""

    hidden: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) 1 = real token
    image: torch.Tensor | None = None  # (B, C, H, W) input image for refinement, or None

    def repeat(self, n: int) -> Context:
        """Each row n times (a group of n samples per prompt), in one batch."""
        rep = lambda t: None if t is None else t.repeat_interleave(n, dim=0)  # noqa: E731
        return Context(rep(self.hidden), rep(self.mask), rep(self.image))


class Policy(Protocol):
    image_shape: tuple[int, int, int]  # (C, H, W) of what the flow operates on

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               image: torch.Tensor | None = None) -> Context:
        """Condition on token ids (prompt, plan) and optionally an input image."""

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: Context, cfg_scale: float) -> torch.Tensor:
        """Guided velocity v = eps - x0 prediction at noisy x (B, C, H, W) and times t (B,)."""

    def token_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """log p(token_k | tokens_<k) for k >= 1, shape (B, L - 1)."""

    def sample_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
                    stop_token_id: int, pad_token_id: int, temperature: float = 1.0, top_p: float = 1.0,
                    generator: torch.Generator | None = None):  # fmt: skip
        """Sample a plan after left-padded prompts ending in ``<think>``; returns ids, mask, the generated
        part's mask and per-token log-probs (``TinyUMM.TextSample``)."""

    def reference(self) -> AbstractContextManager:
        """Within this context the policy computes with its reference weights (adapters disabled)."""
