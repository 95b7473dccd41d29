"""Verifier training and evaluation data: (image, question, answer) triples with answers from the scene.

Questions are phrased exactly as the ``rules`` decomposer phrases them for ShapesWorld prompts (plus a few
paraphrases), the four standard quality questions, and one holistic question per prompt ("Does the image
match: ...?"). Answers are balanced *per exact question string*: the string is drawn first, then the
answer (50/50), then a scene that makes it so, so no wording leaks its answer (the calibration run's count
questions did). Semantic truth follows the oracle's atom semantics; quality truth is the degradation
applied; holistic truth is the prompt's GenEval-style verdict on the scene.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from shapesworld import degrade
from shapesworld.oracle import Detection, evaluate
from shapesworld.prompts import NUMBER_NAMES, PromptSpec, _relation_ok, satisfying_scene
from shapesworld.world import COLOURS, SHAPES, SIZES, Obj, Scene, place, render

RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
QUALITY = {
    "geometry": "Are the shapes and proportions of the objects correct and undistorted?",
    "coherence": "Is every object complete, with no broken, fragmented or merged parts?",
    "texture": "Are the colours and surfaces clean, without noise or smeared patches?",
    "aesthetics": "Is the image sharp and free of blur?",
}
# Which degradations make which quality question's answer "no" (mild ones are left out of quality data).
QUALITY_DEFECTS = {
    "geometry": ("partial_0.25", "partial_0.5"),
    "coherence": ("partial_0.25", "partial_0.5"),
    "texture": ("noise_25", "noise_50", "smear_0.4"),
    "aesthetics": ("blur_0.02", "blur_0.04"),
}
MILD = ("noise_10", "blur_0.01", "smear_0.2", "jpeg_30")
SEMANTIC_KINDS = ("exist", "count", "fewer", "colour", "size", "spatial")


@dataclass
class Example:
    image: Image.Image
    question: str
    answer: bool
    kind: str  # exist | count | fewer | colour | size | spatial | quality | holistic
    scene: Scene | None = None
    degradation: str | None = None
    atom: tuple[str, ...] | None = None  # for semantic questions: the atom it asks about (oracle-checkable)


def plural(shape: str) -> str:
    return shape + "s"


def _add(rng: random.Random, objs: list[Obj], shape: str, colour: str | None = None, size: str | None = None,
         n: int = 1) -> bool:  # fmt: skip
    for _ in range(n):
        o = place(rng, shape, colour or rng.choice(list(COLOURS)), size or rng.choice(list(SIZES)), objs)
        if o is None:
            return False
        objs.append(o)
    return True


def _distract(rng: random.Random, objs: list[Obj], avoid: set[str], k: int) -> None:
    others = [s for s in SHAPES if s not in avoid]
    for _ in range(k):
        if others:
            _add(rng, objs, rng.choice(others))


def semantic_example(rng: random.Random, kind: str, size: int = 64) -> Example | None:
    """One balanced semantic question of ``kind`` with a scene built to give a 50/50 drawn answer."""
    shape = rng.choice(SHAPES)
    yes = rng.random() < 0.5
    objs: list[Obj] = []
    if kind == "exist":
        q = f"Is there a {shape}?" if rng.random() < 0.7 else f"Are there {plural(shape)}?"
        atom = ("entity", "whole", shape)
        if yes and not _add(rng, objs, shape, n=rng.randint(1, 2)):
            return None
        _distract(rng, objs, {shape}, rng.randint(0 if yes else 1, 3))
    elif kind in ("count", "fewer"):
        n = rng.randint(2, 4)
        if kind == "count":
            q = f"Are there exactly {NUMBER_NAMES[n]} {plural(shape)}?"
            atom = ("count", "exactly", shape, str(n))
            k = n if yes else rng.choice([m for m in (n - 2, n - 1, n + 1) if 0 <= m <= 5])
        else:  # "fewer than n+1": GenEval's exclusion
            q = f"Are there fewer than {NUMBER_NAMES[n + 1]} {plural(shape)}?"
            atom = ("count", "fewer_than", shape, str(n + 1))
            k = rng.choice([m for m in (n - 1, n) if m >= 1]) if yes else rng.choice([n + 1, min(n + 2, 5)])
        colour = rng.choice(list(COLOURS)) if rng.random() < 0.5 else None
        if not _add(rng, objs, shape, colour, "small", n=k):
            return None
        _distract(rng, objs, {shape}, rng.randint(0, 5 - k) if k < 5 else 0)
    elif kind == "colour":
        colour = rng.choice(list(COLOURS))
        many = rng.random() < 0.3
        q = f"Are the {plural(shape)} {colour}?" if many else f"Is the {shape} {colour}?"
        atom = ("attribute", "color", shape, colour)
        k = 2 if many else 1
        wrong = rng.choice([c for c in COLOURS if c != colour])
        if yes:
            colours = [colour] * k
        elif k == 1:
            colours = [wrong]
        else:
            colours = [wrong, wrong] if rng.random() < 0.5 else [colour, wrong]
        for c in colours:
            if not _add(rng, objs, shape, c):
                return None
        _distract(rng, objs, {shape}, rng.randint(0, 2))
    elif kind == "size":
        sz = rng.choice(list(SIZES))
        q = f"Is the {shape} {sz}?"
        atom = ("attribute", "size", shape, sz)
        other = "small" if sz == "large" else "large"
        if not _add(rng, objs, shape, size=sz if yes else other):
            return None
        _distract(rng, objs, {shape}, rng.randint(0, 2))
    elif kind == "spatial":
        other = rng.choice([s for s in SHAPES if s != shape])
        rel = rng.choice(list(RELATION_WORDS))
        q = f"Is the {shape} {RELATION_WORDS[rel]} the {other}?"
        atom = ("relation", "spatial", shape, other, rel)
        _add(rng, objs, other)
        want = rel if yes else {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[rel]
        for _ in range(50):
            o = place(rng, shape, rng.choice(list(COLOURS)), rng.choice(list(SIZES)), objs)
            if o is not None and _relation_ok(o, objs[0], want, margin=0.06):
                objs.append(o)
                break
        else:
            return None
        _distract(rng, objs, {shape, other}, rng.randint(0, 2))
    else:
        raise ValueError(kind)
    rng.shuffle(objs)
    scene = Scene(objs)
    return Example(render(scene, size), q, yes, kind, scene, atom=atom)


def scene_detections(scene: Scene) -> list[Detection]:
    return [Detection(o.shape, o.colour, o.size, o.x, o.y, 0.0) for o in scene.objects]


def holistic_example(rng: random.Random, specs: list[PromptSpec], size: int = 64) -> Example | None:
    spec = rng.choice(specs)
    scene = satisfying_scene(spec, rng)
    if scene is None:
        return None
    yes = rng.random() < 0.5
    if not yes:
        for _ in range(10):  # perturb until the prompt no longer holds
            edit = rng.choice((degrade.drop_object, degrade.recolour, degrade.add_object))
            cand = edit(scene, rng)
            if not evaluate(None, spec, scene_detections(cand)).correct:  # type: ignore[arg-type]
                scene = cand
                break
        else:
            return None
    return Example(render(scene, size), f"Does the image match: {spec.text}?", yes, "holistic", scene)


def quality_example(rng: random.Random, size: int = 64) -> Example:
    aspect = rng.choice(list(QUALITY))
    scene = Scene([])
    while not scene.objects:
        from shapesworld.world import random_scene

        scene = random_scene(rng)
    yes = rng.random() < 0.5
    if yes:  # clean, or a defect that this aspect does not judge
        others = [d for a, ds in QUALITY_DEFECTS.items() if a != aspect for d in ds if d not in QUALITY_DEFECTS[aspect]]
        name = None if rng.random() < 0.5 else rng.choice(others)
    else:
        name = rng.choice(QUALITY_DEFECTS[aspect])
    img = degrade.PIXEL_DEGRADATIONS[name](scene, size, rng) if name else render(scene, size)
    return Example(img, QUALITY[aspect], yes, "quality", scene, name)


def mixed_example(rng: random.Random, specs: list[PromptSpec], weights: dict[str, float], size: int = 64,
                  mild_p: float = 0.25) -> Example:  # fmt: skip
    """One example of a kind drawn by ``weights`` (semantic kinds, "quality", "holistic")."""
    kinds, w = zip(*weights.items())
    while True:
        kind = rng.choices(kinds, w)[0]
        if kind == "quality":
            return quality_example(rng, size)
        ex = holistic_example(rng, specs, size) if kind == "holistic" else semantic_example(rng, kind, size)
        if ex is None:
            continue
        if rng.random() < mild_p and ex.scene is not None:  # mild defects must not change semantic answers
            name = rng.choice(MILD)
            ex.image, ex.degradation = degrade.PIXEL_DEGRADATIONS[name](ex.scene, size, rng), name
        return ex
