"""Measurements of the world itself: the oracle's self-test (``alphagrpo shapes oracle-selftest``).

Object-level accuracy: a render counts as right when the oracle's multiset of (shape, colour, size) equals
the scene's exactly. Prompt-level accuracy: on scenes generated to satisfy a prompt, the share the oracle
judges correct. Both on clean renders at 64 and 32 px, then under each degradation (robustness is
reported, not required: a half-erased star is arguably no longer a star).
"""

from __future__ import annotations

import random

from shapesworld.degrade import PIXEL_DEGRADATIONS
from shapesworld.oracle import detect, evaluate
from shapesworld.prompts import all_prompts, satisfying_scene
from shapesworld.world import random_scene, render


def _key(o) -> tuple:
    return (o.shape, o.colour, o.size)


def object_accuracy(n: int, size: int, seed: int, degrade=None) -> float:
    rng = random.Random(seed)
    ok = 0
    for _ in range(n):
        scene = random_scene(rng)
        img = degrade(scene, size, rng) if degrade else render(scene, size)
        ok += sorted(map(_key, scene.objects)) == sorted(map(_key, detect(img)))
    return ok / n


def prompt_accuracy(n: int, size: int, seed: int) -> float:
    rng = random.Random(seed)
    specs = all_prompts()
    ok = done = 0
    while done < n:
        spec = rng.choice(specs)
        scene = satisfying_scene(spec, rng)
        if scene is None:
            continue
        done += 1
        ok += evaluate(render(scene, size), spec).correct
    return ok / n


def oracle_selftest(n: int = 1000, seed: int = 0) -> dict:
    out = {
        "accuracy": round(object_accuracy(n, 64, seed), 4),
        "accuracy_32px": round(object_accuracy(n, 32, seed + 1), 4),
        "prompt_accuracy": round(prompt_accuracy(n, 64, seed + 2), 4),
        "prompt_accuracy_32px": round(prompt_accuracy(n, 32, seed + 3), 4),
        "n": n,
    }
    for name, fn in PIXEL_DEGRADATIONS.items():
        out[f"accuracy_{name}"] = round(object_accuracy(n // 2, 64, seed + 4, fn), 4)
    return out
