"""DiffusionNFT's soft-updated sampling policy: rollouts drawn from an exponential moving average of the
trained weights instead of the weights themselves.

With ``grpo.ema_max > 0`` (nft objective only) the trainer keeps a shadow copy of the trainable parameters,
theta_old. Each step samples its rollouts with theta_old and measures the nft loss's v_old with it, so the
loss's trust region (``grpo.nft_loss``: a pull of 2 beta^2 (v - v_old)) anchors the trained weights to a
policy that lags them, across steps and not only within one step's inner passes. After the optimizer step,

    theta_old <- eta_i theta_old + (1 - eta_i) theta,      eta_i = min(ema_rate * i, ema_max)   (i: the step)

so the first steps are on-policy (eta = 0) and theta_old's mean lag grows to ema_max / (1 - ema_max) steps (4
at 0.8). Why: without it our nft run at lr 5e-5 peaked at step 80 and then collapsed (BENCHMARKS.md); DiffusionNFT
introduces its soft update against the instability of a fully on-policy old policy. Measured here: at lr 5e-5
with ema_max 0.8, ema_rate 0.01 the collapse is gone (BENCHMARKS.md). Departures: the paper's schedule
constants are not reproduced here (we did not check them against its text), so both are settings; evaluation
uses the trained weights, not the EMA.

The shadow swaps tensors into the live parameters (``active``) rather than holding a second model, so it
costs one copy of the trainable weights (for a LoRA policy: of the adapters) and works for any policy.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def soft_update_decay(step: int, rate: float, cap: float) -> float:
    """eta_i = min(rate * step, cap): 0 at step 0 (on-policy), rising linearly to ``cap``."""
    if step < 0 or rate < 0 or not 0 <= cap < 1:
        raise ValueError(f"need step >= 0, rate >= 0 and 0 <= cap < 1; got {step}, {rate}, {cap}")
    return min(rate * step, cap)


class SamplingEMA:
    """A shadow of ``module``'s trainable parameters, swapped in by ``active()``."""

    def __init__(self, module: torch.nn.Module):
        self.params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError("the policy has no trainable parameters to average")
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}
        self._swapped = False

    def _swap(self) -> None:
        with torch.no_grad():
            for n, p in self.params.items():
                self.shadow[n], p.data = p.data, self.shadow[n]
        self._swapped = not self._swapped

    @contextmanager
    def active(self):
        """Within this context the module computes with theta_old (no gradients may be taken through it)."""
        if self._swapped:
            raise RuntimeError("the sampling EMA is already active")
        self._swap()
        try:
            with torch.no_grad():
                yield
        finally:
            self._swap()

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """theta_old <- decay theta_old + (1 - decay) theta."""
        if self._swapped:
            raise RuntimeError("cannot update the sampling EMA while it is active")
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach(), 1.0 - decay)

    def max_gap(self) -> float:
        """max |theta - theta_old| over all trainable weights (how far the trained weights lead)."""
        return max(float((p.detach() - self.shadow[n]).abs().max()) for n, p in self.params.items())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: s.clone() for n, s in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise RuntimeError(f"sampling EMA keys differ: missing {sorted(set(self.shadow) - set(state))[:5]}, "
                               f"unexpected {sorted(set(state) - set(self.shadow))[:5]}")  # fmt: skip
        for n, t in state.items():
            if t.shape != self.shadow[n].shape:
                raise RuntimeError(f"sampling EMA {n}: shape {tuple(t.shape)}, expected {tuple(self.shadow[n].shape)}")
            self.shadow[n].copy_(t)
