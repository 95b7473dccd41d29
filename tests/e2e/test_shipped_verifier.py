"""The shipped ShapesWorld verifier: the embedded default, loaded by the verifier service's own code, and it
answers the easier question kinds on clean held-out scenes well above chance (its card has the full figures)."""

import json
import random

import pytest

from shapesworld.questions import semantic_example
from verifier.backends.base import ScoreItem
from verifier.backends.hf import HFVerifier
from verifier.models import SHIPPED, resolve_model_path

pytestmark = pytest.mark.slow


def test_shipped_model_is_the_default_and_is_documented():
    assert (SHIPPED / "config.json").exists(), "models/shapes-verifier is missing"
    assert resolve_model_path(None) == SHIPPED
    card = json.loads((SHIPPED / "verifier_card.json").read_text())
    assert card["world"] == "shapesworld" and card["system_prompt"] == "Answer yes or no."
    assert (SHIPPED / "README.md").read_text().startswith("# shapes-verifier")
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 15 * 2**20


@pytest.mark.parametrize("kind, floor", [("exist", 0.8), ("size", 0.8), ("colour", 0.75)])
def test_answers_easy_kinds_on_clean_scenes(kind, floor):
    v = HFVerifier(SHIPPED)
    rng = random.Random(4242)
    examples = []
    while len(examples) < 60:
        ex = semantic_example(rng, kind)
        if ex is not None:
            examples.append(ex)
    scores = v.score_shared([ScoreItem(e.image, [("s", e.question)]) for e in examples])
    accuracy = sum((s[0].p_yes > 0.5) == e.answer for s, e in zip(scores, examples)) / len(examples)
    assert accuracy >= floor, f"{kind}: {accuracy:.2f}"


def test_onpolicy_verifier_agrees_with_the_oracle_on_generated_images_where_the_default_does_not():
    """On the generator's own images (val prompts neither model trained on) the refreshed verifier agrees with
    the oracle far more often than the renders-only default (measured: 0.763 vs 0.619 on these 354 questions)."""
    from pathlib import Path

    from shapesworld.onpolicy import OnPolicyPool

    folder = SHIPPED.parent / "shapes-verifier-onpolicy"
    assert (folder / "README.md").read_text().startswith("# shapes-verifier-onpolicy")
    assert sum(f.stat().st_size for f in folder.iterdir()) < 15 * 2**20
    examples = OnPolicyPool(Path(__file__).parents[1] / "data" / "onpolicy-val", "val").examples()
    items = [ScoreItem(e.image, [("s", e.question)]) for e in examples]

    def accuracy(path) -> float:
        scores = HFVerifier(path).score_shared(items)
        return sum((s[0].p_yes > 0.5) == e.answer for s, e in zip(scores, examples)) / len(examples)

    default, refreshed = accuracy(SHIPPED), accuracy(folder)
    assert len(examples) == 354 and refreshed >= 0.72 and refreshed >= default + 0.08, (default, refreshed)
