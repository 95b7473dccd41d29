"""Near misses with their gold edit instruction: the data that teaches a generator to refine its own image.

``near_miss(spec, scene, rng)`` takes a scene that satisfies a prompt and breaks exactly one thing a
generator typically gets wrong, returning the broken scene and the instruction that repairs it:

    recolour   a required object has the wrong colour        "make the square blue"
    reshape    a required object has the wrong shape         "turn the red circle into a square"
    drop       a required object is missing                  "add a red square" / "add one star"
    extra      an exact count has one object too many        "remove one star"
    move       a relation is violated (mirrored position)    "move the square left of the star"
    keep       nothing is wrong                              "keep the image"

The broken scene keeps every other object where it was, so the repaired image is the input image with one
edit: the refinement target of the UMM's pretraining (``recipes/umm.py``), whose language model learns to
write the instruction after ``<think>`` from the image and whose image head learns to apply it. The
instruction is the critique and the edit in one line; the paper's policy writes a free-form critique first.
"""

from __future__ import annotations

import random
from dataclasses import replace

from shapesworld.prompts import PromptSpec, Requirement, _relation_ok
from shapesworld.world import COLOURS, SHAPES, Obj, Scene, fits, place

EDIT_WORDS = ("make", "turn", "into", "add", "remove", "move", "keep")  # the words instructions add to the vocabulary
KINDS = ("recolour", "reshape", "drop", "extra", "move", "keep")
KEEP = "keep the image"


def _matches(o: Obj, r: Requirement) -> bool:
    return o.shape == r.shape and (r.colour is None or o.colour == r.colour)


def _noun(r: Requirement) -> str:
    return " ".join(w for w in (r.colour, r.shape) if w)


def near_miss(spec: PromptSpec, scene: Scene, rng: random.Random,
              kinds: tuple[str, ...] = KINDS) -> tuple[Scene, str, str]:
    """(broken scene, instruction, kind) for a scene that satisfies ``spec``: kinds are tried in a random
    order and the first that applies to this prompt and scene is used (``keep`` always applies)."""
    for kind in rng.sample(list(kinds), len(kinds)):
        if kind == "keep":
            return scene, KEEP, "keep"
        out = _BREAK[kind](spec, list(scene.objects), rng)
        if out is not None:
            return Scene(out[0]), out[1], kind
    return scene, KEEP, "keep"


def _pick(spec: PromptSpec, objs: list[Obj], rng: random.Random, ok) -> tuple[Requirement, int] | None:
    """A requirement accepted by ``ok`` and the index of one object that satisfies it."""
    options = [(r, i) for r in spec.requirements if ok(r) for i, o in enumerate(objs) if _matches(o, r)]
    return rng.choice(options) if options else None


def _recolour(spec, objs, rng):
    got = _pick(spec, objs, rng, lambda r: r.colour is not None and r.count == 1)
    if got is None:
        return None
    r, i = got
    objs[i] = replace(objs[i], colour=rng.choice([c for c in COLOURS if c != r.colour]))
    return objs, f"make the {r.shape} {r.colour}"


def _reshape(spec, objs, rng):
    free = [s for s in SHAPES if s not in {q.shape for q in spec.requirements}]
    got = _pick(spec, objs, rng, lambda r: r.count == 1)
    if got is None or not free:
        return None
    r, i = got
    wrong = rng.choice(free)
    cand = replace(objs[i], shape=wrong)
    if not fits(cand, objs[:i] + objs[i + 1 :]):
        return None
    objs[i] = cand
    return objs, f"turn the {_noun(replace(r, shape=wrong))} into a {r.shape}"


def _drop(spec, objs, rng):
    if any(q.position for q in spec.requirements):
        return None  # a missing related object would need its place too: left to "move"
    got = _pick(spec, objs, rng, lambda r: True)
    if got is None:
        return None
    r, i = got
    objs.pop(i)
    noun = _noun(r)
    return objs, f"add one {r.shape}" if r.count > 1 else f"add {'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _extra(spec, objs, rng):
    got = _pick(spec, objs, rng, lambda r: r.exact)
    if got is None:
        return None
    r, i = got
    new = place(rng, r.shape, objs[i].colour, objs[i].size, objs)
    return None if new is None else ([*objs, new], f"remove one {r.shape}")


def _move(spec, objs, rng):
    for q in spec.requirements:
        if q.position is None:
            continue
        rel, ref_i = q.position
        ref = spec.requirements[ref_i]
        a = [j for j, x in enumerate(objs) if _matches(x, q)]
        b = [x for x in objs if _matches(x, ref)]
        if not a or not b:
            continue
        j, x = a[0], objs[a[0]]
        horizontal = rel in ("left of", "right of")
        flipped = replace(x, x=2 * b[0].x - x.x) if horizontal else replace(x, y=2 * b[0].y - x.y)
        if fits(flipped, objs[:j] + objs[j + 1 :]) and not _relation_ok(flipped, b[0], rel, margin=0.0):
            objs[j] = flipped
            return objs, f"move the {q.shape} {rel} the {ref.shape}"
    return None


_BREAK = {"recolour": _recolour, "reshape": _reshape, "drop": _drop, "extra": _extra, "move": _move}
