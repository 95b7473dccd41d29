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

``repair(spec, detections, rng)`` goes the other way, for the generator's *own* images: from what the oracle
detects in a generated image it builds the scene that one edit of the same kinds makes true of the prompt (or
None when no single edit does), so refinement can also be pretrained on the mistakes the generator really
makes (``train-umm --onpolicy-refine``), not only on synthetic ones: on the step-8,923 base a gold "move"
repaired 1 of 46 of its own images and 0 of 48 synthetic near misses, and its own images refined no better under
the gold edit than under "keep the image" (``alphagrpo bench refinement``; BENCHMARKS.md, refinement section).
"""

from __future__ import annotations

import random
from dataclasses import replace

from shapesworld.oracle import Detection, evaluate
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


def _holds(spec: PromptSpec, objs: list[Obj]) -> bool:
    """The oracle's verdict on a scene given as objects (what it would detect in a clean render)."""
    return evaluate(None, spec, detections=[Detection(o.shape, o.colour, o.size, o.x, o.y, 0.0) for o in objs]).correct


def _placed(spec: PromptSpec, q: Requirement, objs: list[Obj], colour: str, size: str, rng: random.Random,
            tries: int = 20) -> list[Obj] | None:  # fmt: skip
    """``objs`` plus one object for requirement ``q`` at a free spot where the prompt then holds."""
    for _ in range(tries):
        o = place(rng, q.shape, colour, size, objs)
        if o is not None and _holds(spec, [*objs, o]):
            return [*objs, o]
    return None


def repair(spec: PromptSpec, detections: list, rng: random.Random) -> tuple[Scene, str, str] | None:
    """(repaired scene, instruction, kind) for a generated image, from the oracle's ``detections`` of it: the
    detected objects with exactly one edit (a kind of ``near_miss``'s) after which the oracle judges the prompt
    true; ``keep`` when it already is; None when no single edit does (several mistakes, a crowded image).
    Objects the edit does not touch stay where they were detected."""
    objs = [Obj(d.shape, d.colour, d.size, d.x, d.y) for d in detections]
    if _holds(spec, objs):
        return Scene(objs), KEEP, "keep"
    for q in spec.requirements:
        have = [i for i, o in enumerate(objs) if _matches(o, q) and (q.size is None or o.size == q.size)]
        size = q.size or rng.choice(["small", "large"])
        if len(have) < q.count:
            others = [i for i in range(len(objs)) if i not in have]
            if q.colour is not None:  # recolour: an object of the right shape has the wrong colour
                for i in others:
                    if objs[i].shape == q.shape:
                        out = objs[:i] + [replace(objs[i], colour=q.colour)] + objs[i + 1 :]
                        if _holds(spec, out):
                            return Scene(out), f"make the {q.shape} {q.colour}", "recolour"
            for i in others:  # reshape: an object of the right colour (or any, unqualified) has the wrong shape
                o = objs[i]
                if q.colour in (None, o.colour) and o.shape != q.shape:
                    cand = replace(o, shape=q.shape)
                    out = objs[:i] + [cand] + objs[i + 1 :]
                    if fits(cand, objs[:i] + objs[i + 1 :]) and _holds(spec, out):
                        was = _noun(replace(q, shape=o.shape, colour=o.colour))
                        return Scene(out), f"turn the {was} into a {q.shape}", "reshape"
            if len(have) == q.count - 1:  # drop: one object is missing
                out = _placed(spec, q, objs, q.colour or rng.choice(list(COLOURS)), size, rng)
                if out is not None:
                    noun = _noun(q)
                    return Scene(out), (f"add one {q.shape}" if q.count > 1
                                        else f"add {'an' if noun[0] in 'aeiou' else 'a'} {noun}"), "drop"  # fmt: skip
            return None
        if q.exact and len(have) == q.count + 1:  # extra: one object too many
            for i in have:
                out = objs[:i] + objs[i + 1 :]
                if _holds(spec, out):
                    return Scene(out), f"remove one {q.shape}", "extra"
            return None
    for q in spec.requirements:  # every count holds: a relation is violated
        if q.position is None:
            continue
        rel, ref_i = q.position
        ref = spec.requirements[ref_i]
        for j, o in enumerate(objs):
            if not _matches(o, q):
                continue
            rest = objs[:j] + objs[j + 1 :]
            for b in (x for x in rest if _matches(x, ref)):
                horizontal = rel in ("left of", "right of")
                moved = replace(o, x=2 * b.x - o.x) if horizontal else replace(o, y=2 * b.y - o.y)
                if fits(moved, rest) and _holds(spec, rest + [moved]):
                    return Scene(rest + [moved]), f"move the {q.shape} {rel} the {ref.shape}", "move"
            out = _placed(spec, replace(q, position=None), rest, o.colour, o.size, rng)
            if out is not None:
                return Scene(out), f"move the {q.shape} {rel} the {ref.shape}", "move"
    return None
