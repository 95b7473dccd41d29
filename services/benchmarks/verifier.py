"""``alphagrpo bench verifier``: what the shared image prefill buys, measured in one run.

Two models, random weights (speed does not depend on what the weights know):
* ``large-prefix``: a Qwen2-VL (text 256 x 4 layers, vision 128 x 2) fed 448x448 images, 256 image
  tokens each, as Qwen2.5-VL gives a ~500 px image; questions of about 12 tokens;
* ``tiny``: the verifier's embedded default (64x64 images, 16 image tokens), for reference.
Figures (medians over ``repeats``):
* ``prefix_share_speedup_k8``: 8 questions of one image scored naively (8 full forwards) over the shared
  prefix path; ``cost_ratio_k8_vs_k1``: shared path, 8 questions over 1; the ideal from token counts
  (P + 8q) / (P + q) is printed beside it;
* ``batching_speedup_c32``: images/s over HTTP (``alphagrpo serve verifier`` as a process, 8 questions
  per image) with 32 concurrent clients over 1 client;
* ``equivalence_max_abs_diff``: shared vs separate P(yes), max over images and questions.
"""

from __future__ import annotations

import asyncio
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image, ImageDraw
from tqdm import tqdm

QUESTIONS = [
    "Is the red circle to the left of the large blue square?",
    "Are there exactly three small green triangles in the image?",
    "Is the yellow star above the purple circle on the right?",
    "Is the large orange square below the small white star?",
    "Are there fewer than four blue circles in the picture?",
    "Is the green triangle to the right of the red square?",
    "Is the image sharp and free of blur and of noise?",
    "Is every shape complete, with no broken or missing parts?",
]


def scene(seed: int, size: int) -> Image.Image:
    import random

    rnd = random.Random(seed)
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x, y, r = rnd.randrange(size), rnd.randrange(size), rnd.randrange(size // 16, size // 5)
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rnd.randrange(256) for _ in range(3)))
    return img


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def prefix_figures(model_path: Path, image_size: int, repeats: int) -> dict:
    from verifier.backends.base import ScoreItem
    from verifier.backends.hf import HFVerifier

    v = HFVerifier(model_path)
    img = scene(0, image_size)
    q8 = [(f"s{i}", q) for i, q in enumerate(QUESTIONS)]
    one = [ScoreItem(img, q8[:1])]
    eight = [ScoreItem(img, q8)]
    prefix, suffixes = v.split([v.render(q) for _, q in q8] + [v.render("")])
    p_tokens = v.processor(text=[prefix], images=[img], return_tensors="pt")["input_ids"].shape[1]
    q_tokens = statistics.mean(len(v.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in suffixes[:-1])
    t_naive = median_time(lambda: v.score_separate(eight[0]), repeats)
    t_shared8 = median_time(lambda: v.score_shared(eight), repeats)
    t_shared1 = median_time(lambda: v.score_shared(one), repeats)
    diffs = []
    for seed in range(3):
        item = ScoreItem(scene(seed, image_size), q8)
        for a, b in zip(v.score_shared([item])[0], v.score_separate(item)):
            diffs.append(abs(a.p_yes - b.p_yes))
    return {
        "prefix_tokens": p_tokens,
        "question_tokens": round(q_tokens, 1),
        "prefix_share_speedup_k8": round(t_naive / t_shared8, 2),
        "cost_ratio_k8_vs_k1": round(t_shared8 / t_shared1, 3),
        "ideal_cost_ratio_k8_vs_k1": round((p_tokens + 8 * q_tokens) / (p_tokens + q_tokens), 3),
        "ideal_prefix_share_speedup_k8": round(8 * (p_tokens + q_tokens) / (p_tokens + 8 * q_tokens), 2),
        "shared_k8_ms": round(t_shared8 * 1000, 1),
        "naive_k8_ms": round(t_naive * 1000, 1),
        "equivalence_max_abs_diff": float(f"{max(diffs):.3g}"),
    }


def _body(image_size: int, i: int) -> dict:
    buf = io.BytesIO()
    scene(i, image_size).save(buf, "PNG")
    b64 = base64.b64encode(buf.getvalue()).decode()
    qs = [{"id": f"s{k}", "text": q, "kind": "semantic", "tag": "spatial"} for k, q in enumerate(QUESTIONS)]
    return {"items": [{"image": b64, "questions": qs}]}


def http_throughput(model_path: Path, image_size: int, clients: int, requests_per_client: int, url: str) -> float:
    bodies = [_body(image_size, i) for i in range(8)]

    async def client(c: httpx.AsyncClient, k: int) -> None:
        for j in range(requests_per_client):
            r = await c.post(f"{url}/v1/verify", json=bodies[(k + j) % len(bodies)])
            r.raise_for_status()

    async def run() -> float:
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as c:
            await client(c, 0)  # warm-up
            t0 = time.perf_counter()
            await asyncio.gather(*(client(c, k) for k in range(clients)))
            return clients * requests_per_client / (time.perf_counter() - t0)

    return asyncio.run(run())


def batching_figure(model_path: Path, image_size: int) -> dict:
    from serving.launch import start_verifier

    server, url = start_verifier(env={"VERIFIER_HF_MODEL_PATH": str(model_path), "VERIFIER_MAX_BATCH_IMAGES": "32",
                                      "VERIFIER_MAX_WAIT_MS": "5"})  # fmt: skip
    with server:
        one = http_throughput(model_path, image_size, 1, 24, url)
        many = http_throughput(model_path, image_size, 32, 6, url)
    return {"batching_speedup_c32": round(many / one, 2), "images_per_s_c1": round(one, 2),
            "images_per_s_c32": round(many, 2)}


def run(repeats: int = 5) -> dict:
    import torch

    from verifier.models import resolve_model_path
    from verifier.tiny import build_tiny_vlm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        large = build_tiny_vlm(Path(tmp) / "large", "qwen2_vl", seed=0, hidden=256, layers=4, vision_hidden=128,
                               image_size=448, patch=14)  # fmt: skip
        steps = [("large", lambda: prefix_figures(large, 448, repeats)), ("large", lambda: batching_figure(large, 448))]
        tiny = resolve_model_path(None)
        steps += [("tiny", lambda: prefix_figures(tiny, 64, repeats)), ("tiny", lambda: batching_figure(tiny, 64))]
        for name, step in tqdm(steps, desc="verifier bench", file=sys.stderr):
            for k, v in step().items():
                out[k if name == "large" else f"tiny_{k}"] = v
    out["model"] = "qwen2_vl random weights: text 256x4, vision 128x2, 448 px images"
    return out
