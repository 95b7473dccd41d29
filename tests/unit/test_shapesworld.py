"""ShapesWorld: renderer, prompt grammar and splits, the oracle, degradations, and the decomposer's view."""

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from decomposer.backends.rules import RulesBackend
from decomposer.lexicon import Lexicon
from shapesworld import degrade
from shapesworld.evaluation import object_accuracy, prompt_accuracy
from shapesworld.oracle import atom_truth, count_errors, detect, evaluate
from shapesworld.prompts import (
    CATEGORIES,
    all_prompts,
    gold_atoms,
    lexicon_extension,
    prompts,
    satisfying_scene,
    split_of,
)
from shapesworld.world import COLOURS, Obj, Scene, fits, random_scene, render

ROOT = Path(__file__).resolve().parents[2]


def test_render_is_deterministic_with_exact_palette():
    scene = random_scene(random.Random(0), 4)
    a, b = np.asarray(render(scene)), np.asarray(render(scene))
    assert (a == b).all() and a.shape == (64, 64, 3)
    colours = {tuple(c) for c in a.reshape(-1, 3)}
    assert colours <= {*COLOURS.values(), (255, 255, 255)}
    assert render(scene, 32).size == (32, 32)


def test_scenes_never_overlap_and_round_trip():
    rng = random.Random(1)
    for _ in range(200):
        s = random_scene(rng)
        for i, o in enumerate(s.objects):
            assert fits(o, s.objects[:i] + s.objects[i + 1 :])
        assert Scene.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_prompt_grammar_categories_and_gold():
    ps = all_prompts()
    assert set(Counter(p.category for p in ps)) == set(CATEGORIES)
    assert len({p.text for p in ps}) == len(ps)
    by_text = {p.text: p for p in ps}
    p = by_text["a photo of a blue circle left of a red square"]
    assert p.category == "position" and ("relation", "spatial", "circle", "square", "left of") in gold_atoms(p)
    p = by_text["a photo of three stars"]
    assert gold_atoms(p) == [("entity", "whole", "star"), ("count", "exactly", "star", "3"),
                             ("count", "fewer_than", "star", "4")]
    p = by_text["a photo of as many stars as a triangle has corners"]
    assert p.inference == "number" and p.resolved == "a photo of three stars"
    assert by_text["a photo of a circle the colour of grass"].resolved == "a photo of a green circle"
    assert by_text["a photo of a red shape with three corners"].resolved == "a photo of a red triangle"
    assert {p.inference for p in ps if p.category == "implicit"} == {"number", "colour", "shape"}


def test_splits_are_fixed_disjoint_and_large_enough():
    train, val, held = (set(p.text for p in prompts(s)) for s in ("train", "val", "heldout"))
    assert not (train & held) and not (train & val) and not (val & held)
    assert len(train) + len(val) + len(held) == len(all_prompts())
    assert len([p for p in prompts("heldout") if p.category != "implicit"]) >= 500
    assert split_of("a photo of a red circle") == split_of("a photo of a red circle")
    assert {p.category for p in prompts("heldout")} == set(CATEGORIES)


def test_oracle_reads_clean_renders_at_64_and_32():
    assert object_accuracy(300, 64, seed=3) >= 0.99
    assert object_accuracy(300, 32, seed=4) >= 0.95
    assert prompt_accuracy(300, 64, seed=5) >= 0.99


def test_oracle_judges_prompts_and_atoms():
    by_text = {p.text: p for p in all_prompts()}
    spec = by_text["a photo of a blue circle left of a red square"]
    good = Scene([Obj("circle", "blue", "large", 0.25, 0.5), Obj("square", "red", "small", 0.75, 0.5)])
    swapped = Scene([Obj("circle", "blue", "large", 0.75, 0.5), Obj("square", "red", "small", 0.25, 0.5)])
    assert evaluate(render(good), spec).correct and not evaluate(render(swapped), spec).correct
    r = evaluate(render(swapped), spec)
    assert r.atoms[("entity", "whole", "circle")]
    assert not r.atoms[("relation", "spatial", "circle", "square", "left of")]
    assert r.atom_accuracy == pytest.approx(4 / 5)
    three = by_text["a photo of three stars"]
    stars = [Obj("star", "red", "small", x, 0.5) for x in (0.15, 0.5, 0.85)]
    assert evaluate(render(Scene(stars)), three).correct
    four = Scene(stars + [Obj("star", "red", "small", 0.5, 0.15)])
    assert not evaluate(render(four), three).correct  # the "fewer than four" atom fails
    assert not atom_truth(("count", "fewer_than", "star", "4"), detect(render(four)))


def test_count_errors_are_signed_per_exact_requirement():
    by_text = {p.text: p for p in all_prompts()}
    three = by_text["a photo of three stars"]
    stars = [Obj("star", "red", "small", x, 0.5) for x in (0.15, 0.5, 0.85)]
    assert count_errors(three, detect(render(Scene(stars)))) == [0]
    assert count_errors(three, detect(render(Scene(stars + [Obj("star", "blue", "small", 0.5, 0.15)])))) == [1]
    circle = [Obj("circle", "red", "small", 0.5, 0.15)]  # another shape does not count
    assert count_errors(three, detect(render(Scene(stars[:1] + circle)))) == [-2]
    assert count_errors(three, []) == [-3]
    # a prompt without an exact count has nothing to miscount
    assert count_errors(by_text["a photo of a blue circle left of a red square"], detect(render(Scene(stars)))) == []


def test_satisfying_scenes_satisfy_every_category():
    rng = random.Random(7)
    for cat in CATEGORIES:
        for spec in rng.sample(prompts(category=cat), min(20, len(prompts(category=cat)))):
            scene = None
            while scene is None:
                scene = satisfying_scene(spec, rng)
            assert evaluate(render(scene), spec).correct, spec.text


def test_degradations_change_pixels_and_semantics():
    rng = random.Random(2)
    scene = Scene([Obj("circle", "red", "large", 0.3, 0.3), Obj("star", "blue", "large", 0.7, 0.7)])
    clean = np.asarray(render(scene), dtype=float)
    for name, fn in degrade.PIXEL_DEGRADATIONS.items():
        img = np.asarray(fn(scene, 64, random.Random(0)), dtype=float)
        assert img.shape == clean.shape and np.abs(img - clean).mean() > 0.1, name
    assert len(degrade.drop_object(scene, rng).objects) == 1
    assert len(degrade.add_object(scene, rng).objects) == 3
    recoloured = degrade.recolour(scene, rng)
    assert [o.colour for o in recoloured.objects] != [o.colour for o in scene.objects]
    assert detect(degrade.blur(render(scene), 0.01))[0].shape in ("circle", "star")


def test_rules_decomposer_covers_every_world_prompt_with_the_world_lexicon(tmp_path):
    path = tmp_path / "lex.json"
    path.write_text(json.dumps(lexicon_extension()))
    rules = RulesBackend(Lexicon.load(path))
    for spec in all_prompts():
        out = rules.decompose_one(spec.text)
        have = {q.atom.key() for q in out.questions if q.atom}
        assert out.complete and set(gold_atoms(spec)) <= have, spec.text


def test_shipped_lexicon_file_is_current():
    shipped = json.loads((ROOT / "configs" / "shapesworld-lexicon.json").read_text())
    assert shipped == json.loads(json.dumps(lexicon_extension()))
