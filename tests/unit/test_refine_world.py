"""Near misses: each breaks exactly one thing the oracle sees, and its instruction names the repair."""

import random

from shapesworld.oracle import evaluate
from shapesworld.prompts import prompts, satisfying_scene
from shapesworld.refine import KEEP, near_miss
from shapesworld.world import render


def test_every_near_miss_fails_the_prompt_and_its_target_passes():
    rng = random.Random(0)
    specs = [p for p in prompts("train") if p.category != "implicit"]
    kinds = {}
    for _ in range(300):
        spec = rng.choice(specs)
        scene = satisfying_scene(spec, rng, 0)
        if scene is None:
            continue
        broken, edit, kind = near_miss(spec, scene, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        assert evaluate(render(scene, 64), spec).correct
        if kind == "keep":
            assert edit == KEEP and broken is scene
        else:
            assert not evaluate(render(broken, 64), spec).correct, (spec.text, edit)
            assert len(broken.objects) - len(scene.objects) in (-1, 0, 1)
            assert edit.split()[0] in ("make", "turn", "add", "remove", "move")
    assert set(kinds) >= {"recolour", "reshape", "drop", "move", "keep"}


def test_instructions_name_the_repair():
    spec = next(p for p in prompts("train") if p.text == "a photo of a blue star left of a red triangle")
    rng = random.Random(3)
    seen = {}
    for _ in range(60):
        scene = satisfying_scene(spec, rng, 0)
        if scene is not None:
            _, edit, kind = near_miss(spec, scene, rng)
            seen[kind] = edit
    assert seen["recolour"] in ("make the star blue", "make the triangle red")
    assert seen["move"] == "move the star left of the triangle"
    assert seen["reshape"].startswith("turn the ") and seen["reshape"].endswith(("into a star", "into a triangle"))
