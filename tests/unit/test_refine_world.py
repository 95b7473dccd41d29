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


def _spec(text):
    return next(p for p in prompts("train") + prompts("heldout") if p.text == text)


def _dets(*objs):
    from shapesworld.oracle import Detection

    return [Detection(o.shape, o.colour, o.size, o.x, o.y, 0.0) for o in objs]


def test_repair_makes_a_generated_scene_true_with_one_named_edit():
    """``repair`` reads the oracle's detections of a generated image: one edit of each kind, the untouched
    objects left where they were detected, the repaired scene judged correct by the oracle on a render."""
    from shapesworld.refine import repair
    from shapesworld.world import Obj

    rng = random.Random(0)
    spec = _spec("a photo of a blue star left of a red triangle")
    star, tri = Obj("star", "blue", "large", 0.25, 0.5), Obj("triangle", "red", "large", 0.75, 0.5)
    cases = {
        "keep": (_dets(star, tri), KEEP),
        "recolour": (_dets(star, Obj("triangle", "green", "large", 0.75, 0.5)), "make the triangle red"),
        "reshape": (_dets(Obj("circle", "blue", "large", 0.25, 0.5), tri), "turn the blue circle into a star"),
        "drop": (_dets(tri), "add a blue star"),
        "move": (_dets(Obj("star", "blue", "large", 0.9, 0.5), Obj("triangle", "red", "large", 0.6, 0.5)),
                 "move the star left of the triangle"),
    }
    for kind, (dets, edit) in cases.items():
        scene, got_edit, got_kind = repair(spec, dets, rng)
        assert (got_kind, got_edit) == (kind, edit)
        assert evaluate(render(scene, 64), spec).correct, kind
        before = {(d.shape, d.colour, round(d.x, 3)) for d in dets}
        after = {(o.shape, o.colour, round(o.x, 3)) for o in scene.objects}
        assert len(before ^ after) <= 2, kind  # one object changed, added or moved
    scene, edit, kind = repair(spec, _dets(Obj("star", "blue", "large", 0.9, 0.5), Obj("triangle", "red", "large",
                                                                                      0.6, 0.5)), rng)
    assert scene.objects[1].x < 0.6  # mirrored across the triangle, the triangle untouched
    count = _spec("a photo of three blue stars")
    stars = [Obj("star", "blue", "small", x, 0.5) for x in (0.15, 0.4, 0.65, 0.88)]
    scene, edit, kind = repair(count, _dets(*stars), rng)
    assert (kind, edit, len(scene.objects)) == ("extra", "remove one star", 3)
    assert repair(count, _dets(*stars[:1]), rng) is None  # two stars missing: no single edit
    two_wrong = _dets(Obj("circle", "green", "large", 0.25, 0.5), Obj("square", "green", "large", 0.75, 0.5))
    assert repair(spec, two_wrong, rng) is None
