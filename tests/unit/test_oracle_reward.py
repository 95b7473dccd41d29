"""The oracle-as-reward diagnostic: it scores like the evaluation's judge, fails unknown prompts as NaN with a
reason, and the trainer config accepts it only under its own name."""

import math
import random

import pytest
from PIL import Image

from shapesworld.oracle import evaluate
from shapesworld.oracle_reward import OracleRewards
from shapesworld.prompts import prompts, satisfying_scene
from shapesworld.world import render
from trainer.config import RewardConfig


def _pairs(n: int):
    rng = random.Random(0)
    specs, images = [p for p in prompts("train") if p.category == "position"][:n], []
    for s in specs:
        scene = None
        while scene is None:  # None: too crowded, draw again
            scene = satisfying_scene(s, rng, distractors=0)
        images.append(render(scene, 32))
    return specs, images


def test_oracle_reward_is_the_oracle_atom_accuracy():
    specs, images = _pairs(6)
    blank = Image.new("RGB", (32, 32), (255, 255, 255))
    fetcher = OracleRewards()
    r = fetcher.wait(fetcher.submit([s.text for s in specs] + [specs[0].text], images + [blank]))
    expected = [evaluate(im, s).atom_accuracy for im, s in zip(images, specs)]
    assert r.values[:6] == pytest.approx(expected)
    assert sum(r.values[:6]) / 6 > 0.8  # renders that satisfy their prompt mostly score full marks
    assert r.values[6] == 0.0 and r.reasons[6] is None  # nothing drawn: no atom holds, a real zero
    assert all(math.isnan(q) for q in r.quality)
    assert fetcher.waited_s >= 0.0


def test_correct_signal_and_unknown_prompts():
    specs, images = _pairs(3)
    f = OracleRewards(signal="correct")
    r = f.wait(f.submit([s.text for s in specs] + ["a photo of a unicorn"], images + [images[0]]))
    assert r.values[:3] == [float(evaluate(im, s).correct) for im, s in zip(images, specs)]
    assert math.isnan(r.values[3]) and "oracle cannot judge" in r.reasons[3]
    with pytest.raises(ValueError, match="signal"):
        OracleRewards(signal="reward")
    with pytest.raises(ValueError, match="2 prompts but 1 images"):
        f.submit(["a", "b"], [images[0]])


def test_config_names_the_mode():
    assert RewardConfig(mode="oracle").mode == "oracle"
    assert RewardConfig(mode="oracle", oracle_signal="correct").oracle_signal == "correct"
    with pytest.raises(ValueError, match="oracle_signal"):
        RewardConfig(mode="oracle", oracle_signal="reward")
    with pytest.raises(ValueError, match="diagnostic ceiling"):
        RewardConfig(mode="perfect")
    assert RewardConfig(aggregation="conjunctive").aggregation == "conjunctive"
    with pytest.raises(ValueError, match="reward.aggregation must be one of geometric"):
        RewardConfig(aggregation="median")


def test_weights_fingerprint_names_the_bytes(tmp_path):
    from verifier.backends.hf import weights_fingerprint

    assert weights_fingerprint(tmp_path) == ""  # nothing to hash: said, not invented
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    first = weights_fingerprint(tmp_path)
    assert len(first) == 12 and weights_fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert weights_fingerprint(tmp_path) != first
    assert OracleRewards().describe()["mode"] == "oracle"
