"""DVReward as the reward functions other trainers expect, over HTTP with the ``dvreward`` client.

* ``trl_reward_function(url)``: TRL's GRPOTrainer convention, ``fn(prompts, completions, **kwargs) ->
  list[float | None]``; completions are images (PIL, numpy HxWx3 uint8, or base64 strings); ``None`` marks a
  sample whose reward could not be computed (TRL turns None into NaN and leaves it out of its means).
* ``flow_grpo_reward_function(url)``: Flow-GRPO's convention, ``fn(images, prompts, metadata) ->
  (scores, info)``; images are a float tensor/array (B, C, H, W) in [0, 1], a uint8 array (B, H, W, C) or
  a list of PIL images; ``scores`` is a float numpy array with NaN for failed samples, ``info`` carries
  the sub-scores and reasons.
Both send one batched ``/v1/reward`` request per call; a failed reward is never turned into 0. A prompt the
decomposer could only partly parse fails too by default (``incomplete="fail"``: None / NaN with the reason),
as in our own trainer: its reward would judge only the parsed part. No dependency on either trainer is
needed: the functions only follow their signatures.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from dvreward.client import RetryPolicy, Timeouts, VerifierClient
from dvreward.schemas import RewardItem, RewardResult


def to_base64_png(image: Any) -> str:
    """PIL image, numpy array (H, W, 3) uint8 or (3, H, W) float in [0, 1], or a base64 string."""
    if isinstance(image, str):
        return image
    from PIL import Image

    if not isinstance(image, Image.Image):
        import numpy as np

        arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        image = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _rewards(client: VerifierClient, prompts: list[str], images: list[Any], **options: Any) -> list[RewardResult]:
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    items = [RewardItem(prompt=p, image=to_base64_png(im)) for p, im in zip(prompts, images)]
    return client.reward(items, **options).results


def trl_reward_function(url: str, *, api_key: str | None = None, aggregation: str = "geometric",
                        incomplete: str = "fail", timeouts: Timeouts = Timeouts(),
                        retry: RetryPolicy = RetryPolicy()):  # fmt: skip
    """A TRL-style reward function backed by ``POST {url}/v1/reward``."""
    client = VerifierClient(url, api_key=api_key, timeouts=timeouts, retry=retry)

    def dvreward(prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        texts = [p if isinstance(p, str) else _last_user_text(p) for p in prompts]
        return [r.reward for r in _rewards(client, texts, completions, aggregation=aggregation, incomplete=incomplete)]

    dvreward.__name__ = "dvreward"
    return dvreward


def flow_grpo_reward_function(url: str, *, api_key: str | None = None, aggregation: str = "geometric",
                              incomplete: str = "fail", timeouts: Timeouts = Timeouts(),
                              retry: RetryPolicy = RetryPolicy()):  # fmt: skip
    """A Flow-GRPO-style reward function backed by ``POST {url}/v1/reward``."""
    import numpy as np

    client = VerifierClient(url, api_key=api_key, timeouts=timeouts, retry=retry)

    def dvreward(images: Any, prompts: list[str], metadata: Any = None) -> tuple[np.ndarray, dict]:
        batch = list(images) if not hasattr(images, "shape") else [images[i] for i in range(images.shape[0])]
        results = _rewards(client, list(prompts), batch, aggregation=aggregation, incomplete=incomplete)
        scores = np.array([math.nan if r.reward is None else r.reward for r in results], dtype=np.float64)
        info = {
            "semantic": [r.semantic for r in results],
            "quality": [r.quality for r in results],
            "reason": [r.reason or (r.error.message if r.error else None) for r in results],
            "complete": [r.complete for r in results],
        }
        return scores, info

    return dvreward


def _last_user_text(conversation: Any) -> str:
    """TRL's conversational prompts are message lists: use the last user message's text."""
    for message in reversed(conversation):
        if message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    raise ValueError("a conversational prompt needs a user message")
