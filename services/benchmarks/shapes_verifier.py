"""``alphagrpo shapes eval-verifier``: the ShapesWorld verifier judged against the oracle, through the
verifier service's own scoring code (``HFVerifier``: shared prefix, full-distribution P(yes)).

On held-out scenes (seeds never used in training or validation):
* ``accuracy``: semantic questions (exist, count, fewer-than, colour, size, spatial) on clean and mildly
  degraded renders; truth = the oracle's verdict on the atom the question asks about; P(yes) > 0.5 = yes;
* ``quality_accuracy``: the four quality questions; truth = the defect applied;
* ``holistic_accuracy``: "Does the image match: <held-out prompt>?"; truth = the oracle's GenEval verdict;
* ``ece``: expected calibration error of semantic P(yes) (10 equal-width bins);
* ``reward_oracle_spearman``: over held-out prompts and a mix of good, semantically wrong and degraded
  images, Spearman correlation between DVReward (rules decomposer with the world's lexicon, this verifier,
  geometric aggregation) and the oracle's per-prompt atom accuracy.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from decomposer.backends.rules import RulesBackend
from decomposer.lexicon import Lexicon
from dvreward.aggregation import aggregate
from shapesworld import degrade
from shapesworld.oracle import atom_truth, detect, evaluate
from shapesworld.prompts import lexicon_extension, prompts, satisfying_scene
from shapesworld.questions import SEMANTIC_KINDS, holistic_example, quality_example, semantic_example
from shapesworld.world import render
from verifier.backends.base import ScoreItem
from verifier.backends.hf import HFVerifier

EVAL_SEED = 777_000  # far from training (seed) and validation (10_000 + seed) streams


def _p_yes(v: HFVerifier, pairs: list[tuple]) -> list[float]:
    out = []
    for i in range(0, len(pairs), 64):
        chunk = pairs[i : i + 64]
        scores = v.score_shared([ScoreItem(img, [("s", q)]) for img, q in chunk])
        out += [s[0].value for s in scores]
    return out


def ece(probs: list[float], truth: list[bool], bins: int = 10) -> float:
    total, err = len(probs), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            conf = sum(probs[i] for i in idx) / len(idx)
            acc = sum(truth[i] for i in idx) / len(idx)
            err += len(idx) / total * abs(conf - acc)
    return err


def semantic_figures(v: HFVerifier, n: int, rng: random.Random) -> dict:
    pairs, truth, kinds = [], [], []
    from shapesworld.questions import MILD

    while len(pairs) < n:
        kind = SEMANTIC_KINDS[len(pairs) % len(SEMANTIC_KINDS)]
        ex = semantic_example(rng, kind)
        if ex is None:
            continue
        if rng.random() < 0.25:
            name = rng.choice(MILD)
            ex.image = degrade.PIXEL_DEGRADATIONS[name](ex.scene, 64, rng)
        truth.append(atom_truth(ex.atom, detect(ex.image)))
        pairs.append((ex.image, ex.question))
        kinds.append(kind)
    probs = _p_yes(v, pairs)
    right = [(p > 0.5) == t for p, t in zip(probs, truth)]
    out = {"accuracy": sum(right) / len(right), "ece": ece(probs, truth)}
    for k in SEMANTIC_KINDS:
        sel = [r for r, kk in zip(right, kinds) if kk == k]
        out[f"accuracy_{k}"] = sum(sel) / len(sel)
    return out


def other_figures(v: HFVerifier, n: int, rng: random.Random) -> dict:
    q = [quality_example(rng) for _ in range(n)]
    pq = _p_yes(v, [(e.image, e.question) for e in q])
    held = prompts("heldout")
    h = []
    while len(h) < n:
        ex = holistic_example(rng, held)
        if ex is not None:
            h.append(ex)
    ph = _p_yes(v, [(e.image, e.question) for e in h])
    spec_of = {p.text: p for p in held}
    spec = lambda e: spec_of[e.question.removeprefix("Does the image match: ").removesuffix("?")]  # noqa: E731
    h_truth = [evaluate(e.image, spec(e)).correct for e in h]
    return {
        "quality_accuracy": sum((p > 0.5) == e.answer for p, e in zip(pq, q)) / n,
        "holistic_accuracy": sum((p > 0.5) == t for p, t in zip(ph, h_truth)) / n,
    }


def reward_spearman(v: HFVerifier, n_prompts: int, rng: random.Random) -> float:
    from scipy.stats import spearmanr

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(lexicon_extension(), f)
    rules = RulesBackend(Lexicon.load(f.name))
    rewards, oracle = [], []
    held = [p for p in prompts("heldout")]
    for spec in rng.sample(held, n_prompts):
        scene = None
        while scene is None:
            scene = satisfying_scene(spec, rng)
        variant = rng.choice(("good", "drop", "recolour", "add", "pixel"))
        if variant == "drop":
            scene = degrade.drop_object(scene, rng)
        elif variant == "recolour":
            scene = degrade.recolour(scene, rng)
        elif variant == "add":
            scene = degrade.add_object(scene, rng)
        img = render(scene)
        if variant == "pixel":
            img = degrade.PIXEL_DEGRADATIONS[rng.choice(list(degrade.PIXEL_DEGRADATIONS))](scene, 64, rng)
        qs = rules.decompose_one(spec.text).questions
        scores = v.score_shared([ScoreItem(img, [(q.id, q.text) for q in qs])])[0]
        rewards.append(aggregate(qs, [s.value for s in scores]).reward)
        oracle.append(evaluate(img, spec).atom_accuracy)
    return float(spearmanr(rewards, oracle).statistic)


def run(model: str | Path, n: int = 1200, n_prompts: int = 300, seed: int = EVAL_SEED) -> dict:
    v = HFVerifier(model)
    rng = random.Random(seed)
    steps = [lambda: semantic_figures(v, n, rng), lambda: other_figures(v, n // 3, rng),
             lambda: {"reward_oracle_spearman": reward_spearman(v, n_prompts, rng)}]  # fmt: skip
    out: dict = {}
    for step in tqdm(steps, desc="eval-verifier", file=sys.stderr):
        out.update(step())
    out = {k: round(val, 4) if isinstance(val, float) else val for k, val in out.items()}
    out.update(model=str(model), n_semantic=n, n_prompts=n_prompts)
    return out
