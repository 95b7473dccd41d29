"""ShapesWorld prompts: GenEval's six categories plus implicit prompts, with gold atoms and fixed splits.

Every prompt carries its requirements (what the oracle checks), its gold atoms (``Atom`` keys in the
decomposer's convention) and, for implicit prompts, the explicit resolution and the kind of inference
(numbers, colours, shapes) that the knowledge base below supplies. ``lexicon_extension()`` turns that same
knowledge base into the rules decomposer's rewrites, so the decomposer resolves "as many stars as a
triangle has corners" into "three stars" from data, without importing this package.

Splits are by prompt text, seeded and fixed: no held-out prompt is ever a training prompt.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field

from shapesworld.world import COLOURS, SHAPES, SIZES, Obj, Scene, fits, place

NUMBER_NAMES = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
RELATIONS = ("left of", "right of", "above", "below")
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "implicit")

# The knowledge base of implicit prompts: three kinds of inference.
NUMBER_FACTS = {"a triangle has corners": 3, "a square has corners": 4, "a square has sides": 4,
                "a triangle has sides": 3, "a bicycle has wheels": 2, "there are days in a weekend": 2}  # fmt: skip
COLOUR_FACTS = {"grass": "green", "the sky": "blue", "a banana": "yellow", "a lemon": "yellow", "blood": "red",
                "a tomato": "red", "a pumpkin": "orange", "a carrot": "orange", "a plum": "purple",
                "an aubergine": "purple", "a frog": "green", "the sea": "blue"}  # fmt: skip
SHAPE_FACTS = {"shape with three corners": "triangle", "shape with four equal sides": "square",
               "shape with no corners": "circle", "shape with five points": "star"}  # fmt: skip


@dataclass(frozen=True)
class Requirement:
    shape: str
    colour: str | None = None
    count: int = 1
    exact: bool = False  # counting prompts need exactly `count` (GenEval's exclusion of count + 1)
    size: str | None = None
    position: tuple[str, int] | None = None  # (relation, index of the reference requirement)


@dataclass(frozen=True)
class PromptSpec:
    text: str
    category: str
    requirements: tuple[Requirement, ...]
    explicit: str = ""
    inference: str | None = None  # number | colour | shape, for implicit prompts

    @property
    def resolved(self) -> str:
        return self.explicit or self.text


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _np(r: Requirement) -> str:
    words = [w for w in (r.size, r.colour) if w]
    if r.count == 1:
        phrase = " ".join([*words, r.shape])
        return f"{_a(phrase)} {phrase}"
    return " ".join([NUMBER_NAMES[r.count], *words, r.shape + "s"])


def explicit_text(reqs: tuple[Requirement, ...], category: str) -> str:
    if category == "position":
        a, b = reqs
        return f"a photo of {_np(b)} {b.position[0]} {_np(a)}"
    return "a photo of " + " and ".join(_np(r) for r in reqs)


def gold_atoms(spec: PromptSpec) -> list[tuple[str, ...]]:
    """Atom keys a complete decomposition must contain (the decomposer's ``Atom.key()`` convention)."""
    atoms = []
    for r in spec.requirements:
        atoms.append(("entity", "whole", r.shape))
        if r.count > 1:
            atoms.append(("count", "exactly", r.shape, str(r.count)))
        if r.exact:
            atoms.append(("count", "fewer_than", r.shape, str(r.count + 1)))
        if r.colour:
            atoms.append(("attribute", "color", r.shape, r.colour))
        if r.size:
            atoms.append(("attribute", "size", r.shape, r.size))
        if r.position:
            rel, ref = r.position
            atoms.append(("relation", "spatial", r.shape, spec.requirements[ref].shape, rel))
    return atoms


def _explicit_prompts() -> list[PromptSpec]:
    out: list[PromptSpec] = []

    def add(category: str, *reqs: Requirement) -> None:
        out.append(PromptSpec(explicit_text(reqs, category), category, reqs))

    for s in SHAPES:
        add("single_object", Requirement(s))
        for size in SIZES:
            add("single_object", Requirement(s, size=size))
    for s1, s2 in itertools.permutations(SHAPES, 2):
        add("two_object", Requirement(s1), Requirement(s2))
    for s, n in itertools.product(SHAPES, (2, 3, 4)):
        add("counting", Requirement(s, count=n, exact=True))
        for c in COLOURS:
            add("counting", Requirement(s, c, count=n, exact=True))
    for s, c in itertools.product(SHAPES, COLOURS):
        add("colors", Requirement(s, c))
    for (s1, s2), rel in itertools.product(itertools.permutations(SHAPES, 2), RELATIONS):
        add("position", Requirement(s2), Requirement(s1, position=(rel, 0)))
        for c1, c2 in itertools.permutations(COLOURS, 2):
            add("position", Requirement(s2, c2), Requirement(s1, c1, position=(rel, 0)))
    for (s1, s2), (c1, c2) in itertools.product(itertools.permutations(SHAPES, 2), itertools.permutations(COLOURS, 2)):
        add("color_attr", Requirement(s1, c1), Requirement(s2, c2))
    return out


def _implicit_prompts() -> list[PromptSpec]:
    out: list[PromptSpec] = []
    for fact, n in NUMBER_FACTS.items():
        for s in SHAPES:
            r = Requirement(s, count=n, exact=True)
            out.append(PromptSpec(f"a photo of as many {s}s as {fact}", "implicit", (r,),
                                  explicit_text((r,), "counting"), "number"))
            for c in ("red", "blue", "green"):
                r = Requirement(s, c, count=n, exact=True)
                out.append(PromptSpec(f"a photo of as many {c} {s}s as {fact}", "implicit", (r,),
                                      explicit_text((r,), "counting"), "number"))  # fmt: skip
    for thing, c in COLOUR_FACTS.items():
        for s in SHAPES:
            r = Requirement(s, c)
            out.append(PromptSpec(f"a photo of a {s} the colour of {thing}", "implicit", (r,),
                                  explicit_text((r,), "colors"), "colour"))
    for desc, s in SHAPE_FACTS.items():
        r = Requirement(s)
        out.append(PromptSpec(f"a photo of a {desc}", "implicit", (r,), explicit_text((r,), "single_object"), "shape"))
        for c in COLOURS:
            r = Requirement(s, c)
            out.append(PromptSpec(f"a photo of {_a(c)} {c} {desc}", "implicit", (r,), explicit_text((r,), "colors"),
                                  "shape"))
    return out


def all_prompts() -> list[PromptSpec]:
    return _explicit_prompts() + _implicit_prompts()


def split_of(text: str, seed: int = 0) -> str:
    """train (65 %), val (10 %) or heldout (25 %), from a hash of the text: stable and order-free."""
    h = int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < 0.65 else ("val" if h < 0.75 else "heldout")


def prompts(split: str | None = None, category: str | None = None, seed: int = 0) -> list[PromptSpec]:
    return [p for p in all_prompts() if (split is None or split_of(p.text, seed) == split)
            and (category is None or p.category == category)]  # fmt: skip


def lexicon_extension() -> dict:
    """The rules decomposer's vocabulary for this world: the knowledge base as regex rewrites."""
    rewrites = []
    for fact, n in NUMBER_FACTS.items():
        rewrites.append([rf"as many (.+?) as {fact}", rf"{NUMBER_NAMES[n]} \1"])
    for thing, c in COLOUR_FACTS.items():
        rewrites.append([rf"\b(an?) (\w+) the colou?r of {thing}", rf"\1 {c} \2"])
    for desc, s in SHAPE_FACTS.items():
        plural = desc.replace("shape ", "shapes ", 1)
        rewrites.append([rf"\b{plural}\b", f"{s}s"])
        rewrites.append([rf"\b{desc}\b", s])
    return {"rewrites": rewrites}


# ---- scenes for a prompt ------------------------------------------------------------------------


def _relation_ok(a: Obj, b: Obj, rel: str, margin: float = 0.1) -> bool:
    """Generated scenes show relations clearly (10 % of the side); the oracle judges with a 2 % margin."""
    if rel == "left of":
        return a.x + margin < b.x
    if rel == "right of":
        return a.x > b.x + margin
    if rel == "above":
        return a.y + margin < b.y
    return a.y > b.y + margin  # below


def satisfying_scene(spec: PromptSpec, rng: random.Random, distractors: int | None = None) -> Scene | None:
    """A random scene the prompt is true of (plus distractors that keep it true), or None if crowded."""
    objs: list[Obj] = []
    firsts: list[Obj] = []
    for r in spec.requirements:
        size = r.size or rng.choice(list(SIZES)) if r.count <= 2 else (r.size or "small")
        colour = r.colour
        for k in range(r.count):
            c = colour or rng.choice(list(COLOURS))
            o = None
            for _ in range(100):
                o = place(rng, r.shape, c, size, objs)
                if o is None:
                    return None
                if r.position and k == 0 and not _relation_ok(o, firsts[r.position[1]], r.position[0]):
                    o = None
                    continue
                break
            if o is None:
                return None
            if k == 0:
                firsts.append(o)
            objs.append(o)
    n_extra = rng.randint(0, 2) if distractors is None else distractors
    for _ in range(n_extra):
        s, c = rng.choice(SHAPES), rng.choice(list(COLOURS))
        if any(s == r.shape for r in spec.requirements):
            continue  # a distractor of a required shape could break counts or relations
        o = place(rng, s, c, rng.choice(list(SIZES)), objs)
        if o is not None and fits(o, objs):
            objs.append(o)
    rng.shuffle(objs)
    return Scene(objs)


@dataclass
class Dataset:
    """Prompts of one split with a seeded stream of satisfying scenes (for tests and training data)."""

    split: str
    seed: int = 0
    specs: list[PromptSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.specs = prompts(self.split, seed=self.seed)
