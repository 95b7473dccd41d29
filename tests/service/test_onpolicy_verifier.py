"""On-policy verifier data and fine-tuning: the generator's rollouts get DVReward's questions with the oracle's
answers (never for held-out prompts), the pool balances answers, and train-verifier --init --onpolicy starts
from the given folder, logs its starting point on on-policy validation and moves the weights."""

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from shapesworld.onpolicy import OnPolicyPool, kind_of, label_rollouts, labelled_questions, world_decomposer
from shapesworld.oracle import Detection, atom_truth, detect
from shapesworld.verifier_recipe import RecipeConfig, train
from trainer.config import RolloutConfig

TINY = dict(text_hidden=32, text_layers=1, vision_hidden=32, vision_depth=1, batch=8, eval_size=24,
            eval_every_s=1e9, checkpoint_every_s=1e9)  # fmt: skip


def _det(shape, colour, x, y=0.5):
    return Detection(shape, colour, "large", x, y, 0.05)


def test_questions_get_the_oracle_truth_of_their_atom():
    decompose = world_decomposer()
    prompt = "a photo of a red circle left of a blue square"
    right = labelled_questions(prompt, [_det("circle", "red", 0.2), _det("square", "blue", 0.7)], decompose)
    assert {q["kind"] for q in right} == {"exist", "colour", "spatial"} and all(q["answer"] for q in right)
    swapped = labelled_questions(prompt, [_det("circle", "green", 0.8), _det("square", "blue", 0.3)], decompose)
    answers = {q["text"]: q["answer"] for q in swapped}
    assert answers["Is the circle red?"] is False and answers["Is the square blue?"] is True
    assert answers["Is the circle to the left of the square?"] is False and answers["Is there a circle?"] is True
    assert not any(q["kind"] == "quality" for q in swapped)  # no label exists for quality on generated images
    assert kind_of(("count", "fewer_than", "star", "3")) == "fewer" and kind_of(("text", "rendered", "x")) is None


ROLLOUT = RolloutConfig(n_steps=3, window_len=1, window_range=(0, 2), cfg_scale=5.0)


@pytest.mark.parametrize("per_prompt, max_prompts, message", [
    ({"train": 1, "heldout": 1}, None, "held-out"), ({"train": 1, "test": 1}, None, "'test'"),
    ({"train": 1, "val": 0}, None, "val rollouts per prompt must be >= 1"), ({"train": 1}, 0, "max_prompts"),
])  # fmt: skip
def test_bad_requests_are_refused_before_any_work(tmp_path, per_prompt, max_prompts, message):
    with pytest.raises(ValueError, match=message):
        label_rollouts("models/shapes-umm", tmp_path, per_prompt, ROLLOUT, max_prompts=max_prompts, progress=False)
    assert not (tmp_path / "labels.jsonl").exists()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    out = tmp_path_factory.mktemp("onpolicy")
    summary = label_rollouts("models/shapes-umm", out, {"train": 2, "val": 1}, ROLLOUT, max_prompts=4, batch=6,
                             progress=False)  # fmt: skip
    return out, summary


def test_label_rollouts_writes_images_and_oracle_labels(labelled):
    out, summary = labelled
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows].count("train") == 8 and [r["split"] for r in rows].count("val") == 4
    assert summary["splits"]["train"]["images"] == 8 and summary["rollout"]["n_steps"] == 3
    for r in rows:
        dets = detect(Image.open(out / r["image"]))  # PNG is lossless: the saved image gives the same verdicts
        assert r["questions"] and all(q["answer"] == atom_truth(tuple(q["atom"]), dets) for q in r["questions"])
    assert sum(summary["splits"]["train"]["questions"].values()) == sum(len(r["questions"]) for r in rows[:8])


def _write_labels(root: Path, rows: list[tuple[str, str, bool]]) -> None:
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), "white").save(root / "images/0.png")
    lines = [json.dumps({"split": split, "prompt": "p", "image": "images/0.png", "correct": False,
                         "questions": [{"text": f"q {kind}", "kind": kind, "atom": ["entity", "whole", "circle"],
                                        "answer": a}]})
             for split, kind, a in rows]  # fmt: skip
    (root / "labels.jsonl").write_text("\n".join(lines) + "\n")


def test_pool_balances_kinds_and_answers(tmp_path):
    _write_labels(tmp_path, [("train", "exist", True)] * 9 + [("train", "exist", False)]
                  + [("train", "spatial", False)] * 5 + [("val", "exist", True)])  # fmt: skip
    pool = OnPolicyPool(tmp_path, "train")
    assert len(pool) == 15 and pool.kinds == ["exist", "spatial"]
    rng = random.Random(0)
    draws = [pool.draw(rng) for _ in range(4000)]
    exist = [d.answer for d in draws if d.kind == "exist"]
    # kinds by sqrt(count): 10 exist vs 5 spatial questions -> sqrt(10) / (sqrt(10) + sqrt(5)) = 0.586
    assert 0.56 < len(exist) / len(draws) < 0.61 and 0.45 < sum(exist) / len(exist) < 0.55
    assert not any(d.answer for d in draws if d.kind == "spatial")  # only "no" exists for it: never invented
    assert len(pool.examples()) == 15 and len(pool.examples(limit=4)) == 4
    with pytest.raises(ValueError, match="no labelled test"):
        OnPolicyPool(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="label-rollouts"):
        OnPolicyPool(tmp_path / "missing", "train")


def test_fine_tune_starts_from_the_folder_and_mixes_in_rollouts(labelled, tmp_path):
    out, _ = labelled
    base = tmp_path / "base"
    train(RecipeConfig(minutes=1.0, max_steps=2, **TINY), tmp_path / "run0", base, progress=False)
    cfg = RecipeConfig(minutes=1.0, max_steps=3, init=str(base), onpolicy=str(out), onpolicy_fraction=0.5, lr=1e-3,
                       **TINY)  # fmt: skip
    last = train(cfg, tmp_path / "run1", tmp_path / "tuned", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run1" / "log.jsonl").read_text().splitlines()]
    start = log[0]["eval"]
    assert start["step"] == 0 and "onpolicy_semantic" in start and last["step"] == 3 and "onpolicy_semantic" in last
    before, after = load_file(base / "model.safetensors"), load_file(tmp_path / "tuned" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    card = json.loads((tmp_path / "tuned" / "verifier_card.json").read_text())
    assert card["recipe"]["init"] == str(base) and card["recipe"]["onpolicy"] == str(out)


def test_cli_names_the_bad_option():
    from typer.testing import CliRunner

    from alphagrpo.cli import app

    res = CliRunner().invoke(app, ["shapes", "label-rollouts", "--val-per-prompt", "0", "--out", "unused"])
    assert res.exit_code == 2 and "val rollouts per prompt must be >= 1" in res.output
