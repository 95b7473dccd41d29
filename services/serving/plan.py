"""Capacity planning for the reward services (``alphagrpo plan``): pure arithmetic on measured costs.

Demand. A GRPO step on N training GPUs samples N x prompts_per_gpu prompts x G images each, every step_s
seconds; every image is verified with K questions. With the shared image prefill an image costs
P + K q tokens (P image-and-prompt prefix tokens, q tokens per question suffix); without it (a server with no
prefix cache) K (P + q). The decomposer sees each prompt once per epoch and, after the first epoch, only
cache hits.

Supply. ``verifier_tokens_per_s`` is what one verifier replica prefills per second at its batch size: measure
it with ``alphagrpo bench verifier`` on your hardware (the default is this project's CPU measurement of the
256-image-token model, 321 prefix + 8 x 24 suffix tokens in ~61 ms, i.e. about 8,400 tokens/s, far below any
GPU). Replicas are sized for ``utilisation`` (0.7: queues stay short).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# mean JSON size of a rules decomposition of a GenEval prompt (measured); LLM ones run larger
DECOMPOSITION_BYTES = 1200
REDIS_OVERHEAD = 2.0  # keys, expiry and allocator overhead over the raw value size


@dataclass
class PlanInput:
    n_gpus: int = 8  # training GPUs
    prompts_per_gpu: int = 2  # prompts per GPU per step
    group_size: int = 14  # G, images per prompt
    step_s: float = 60.0  # seconds per training step (rollout + update)
    questions: int = 12  # K, questions per prompt (semantic + quality)
    prefix_tokens: int = 1300  # P: system prompt + image tokens (about 1,280 for a 1024 px image in Qwen2.5-VL)
    question_tokens: int = 24  # q: one question suffix (question + end of turn + answer header)
    verifier_tokens_per_s: float = 8400.0  # one replica's prefill throughput (measure yours)
    shared_prefix: bool = True  # our hf backend, or a server with prefix caching
    unique_prompts: int = 20_000  # prompts in the training set (Redis sizing)
    decompositions_per_s: float = 2.0  # one decomposer replica's LLM throughput on cache misses (measure yours)
    utilisation: float = 0.7


def make_plan(p: PlanInput) -> dict:
    images_per_s = p.n_gpus * p.prompts_per_gpu * p.group_size / p.step_s
    per_image = p.prefix_tokens + p.questions * p.question_tokens if p.shared_prefix else p.questions * (
        p.prefix_tokens + p.question_tokens)
    tokens_per_s = images_per_s * per_image
    verifiers = max(1, math.ceil(tokens_per_s / (p.verifier_tokens_per_s * p.utilisation)))
    prompts_per_s = p.n_gpus * p.prompts_per_gpu / p.step_s  # all cache misses in the first epoch
    decomposers = max(1, math.ceil(prompts_per_s / (p.decompositions_per_s * p.utilisation)))
    batch_images = p.n_gpus * p.prompts_per_gpu * p.group_size / verifiers  # one step's images per replica
    latency_s = batch_images * per_image / p.verifier_tokens_per_s
    return {
        "images_per_s": round(images_per_s, 3),
        "verifier_tokens_per_image": per_image,
        "verifier_tokens_per_s": round(tokens_per_s, 1),
        "verifier_replicas": verifiers,
        "decomposer_replicas_first_epoch": decomposers,
        "redis_mib": round(p.unique_prompts * DECOMPOSITION_BYTES * REDIS_OVERHEAD / 2**20, 1),
        "reward_latency_per_step_s": round(latency_s, 2),
        "reward_latency_share_of_step": round(latency_s / p.step_s, 3),
        "inputs": asdict(p),
    }
