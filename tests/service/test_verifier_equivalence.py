"""Shared image prefill == one full forward per question, on every supported architecture."""

import pytest
from PIL import Image, ImageDraw

from verifier.backends.base import ScoreItem
from verifier.backends.hf import HFVerifier
from verifier.tiny import FAMILIES, build_tiny_vlm

QUESTIONS = [("s1", "Is there a red circle?"), ("s2", "Are there exactly two stars?"),
             ("s3", "Is the square to the left of the circle?"),
             ("q1", "Is the image sharp and free of blur?")]  # fmt: skip


def image(colour, size=(64, 64)):
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).ellipse((8, 8, 40, 40), fill=colour)
    return img


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_prefix_equals_separate(family, tmp_path):
    verifier = HFVerifier(build_tiny_vlm(tmp_path / family, family, seed=1))
    items = [ScoreItem(image("red"), QUESTIONS), ScoreItem(image("blue"), QUESTIONS[:2])]
    if family.startswith("qwen"):  # dynamic resolution: a second image size forms its own prefix group
        items.append(ScoreItem(image("green", (48, 64)), QUESTIONS[1:]))
    shared = verifier.score_shared(items)
    separate = [verifier.score_separate(it) for it in items]
    for got, want, item in zip(shared, separate, items):
        assert [s.id for s in got] == [qid for qid, _ in item.questions]
        for a, b in zip(got, want):
            assert 0 < a.p_yes < 1 and abs(a.p_yes - b.p_yes) <= 1e-4
            assert abs(a.yes_mass - b.yes_mass) <= 1e-5


def test_split_cuts_after_a_special_token(tmp_path):
    v = HFVerifier(build_tiny_vlm(tmp_path / "m", "qwen2_vl"))
    prefix, rest = v.split([v.render("Is it red?"), v.render("Is it blue?")])
    assert prefix.endswith("<|vision_end|>") and rest[0].startswith("Is it red?")


def test_small_chunks_give_the_same_scores(tmp_path):
    path = build_tiny_vlm(tmp_path / "m", "llava")
    big, small = HFVerifier(path), HFVerifier(path, max_pairs=3)
    items = [ScoreItem(image("red"), QUESTIONS), ScoreItem(image("blue"), QUESTIONS)]
    for a, b in zip(big.score_shared(items), small.score_shared(items)):
        assert [x.p_yes for x in a] == pytest.approx([x.p_yes for x in b], abs=1e-6)
