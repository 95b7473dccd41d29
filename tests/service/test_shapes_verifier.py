"""The ShapesWorld verifier recipe: it trains (a few steps), resumes, writes a folder the verifier service
loads, and its training inputs are exactly what the service feeds the model."""

import json
import random

import pytest
import torch
from transformers import AutoModelForImageTextToText

from shapesworld.prompts import prompts
from shapesworld.questions import mixed_example, semantic_example
from shapesworld.verifier_recipe import (
    Encoder,
    RecipeConfig,
    aux_targets,
    build_model,
    build_tokenizer,
    train,
    yes_no_logit,
)
from verifier.backends.base import ScoreItem
from verifier.backends.hf import HFVerifier

TINY = dict(text_hidden=32, text_layers=1, vision_hidden=32, vision_depth=1, batch=8, eval_size=24,
            eval_every_s=1e9, checkpoint_every_s=1e9)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes-verifier")
    cfg = RecipeConfig(minutes=1.0, max_steps=6, **TINY)
    train(cfg, root / "run", root / "model", progress=False)
    return root


def test_training_writes_a_model_folder_with_card(trained):
    card = json.loads((trained / "model" / "verifier_card.json").read_text())
    assert card["steps"] == 6 and card["system_prompt"] == "Answer yes or no." and card["examples"] == 48
    assert set(card["validation"]) >= {"semantic", "quality", "holistic"}
    log = [json.loads(line) for line in (trained / "run" / "log.jsonl").read_text().splitlines()]
    assert any("eval" in rec for rec in log)


def test_service_scores_equal_training_logits(trained):
    folder = trained / "model"
    verifier = HFVerifier(folder)
    assert verifier.system_prompt == "Answer yes or no."
    encoder = Encoder(build_tokenizer())
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    rng = random.Random(0)
    examples = [e for e in (semantic_example(rng, k) for k in ("exist", "count", "colour", "spatial")) if e]
    with torch.no_grad():
        z = yes_no_logit(model, encoder(examples), encoder)
    served = [verifier.score_shared([ScoreItem(e.image, [("s", e.question)])])[0][0].p_yes for e in examples]
    assert served == pytest.approx(torch.sigmoid(z).tolist(), abs=1e-5)


def test_resume_continues_from_the_checkpoint(tmp_path):
    cfg = RecipeConfig(minutes=1.0, max_steps=3, **{**TINY, "checkpoint_every_s": 0.0})
    train(cfg, tmp_path / "run", None, progress=False)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    train(RecipeConfig(minutes=1.0, max_steps=5, **{**TINY, "checkpoint_every_s": 0.0}), tmp_path / "run", None,
          resume=True, progress=False)  # fmt: skip
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["step"] == 5
    assert not (tmp_path / "run" / "checkpoint.tmp").exists()


def test_one_step_changes_parameters_and_losses_are_finite():
    cfg = RecipeConfig(**TINY)
    tok = build_tokenizer()
    model = build_model(cfg, tok)
    encoder = Encoder(tok)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = random.Random(1)
    batch = [mixed_example(rng, prompts("train"), {"exist": 1, "count": 1, "holistic": 1}) for _ in range(8)]
    z = yes_no_logit(model, encoder(batch), encoder)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, encoder(batch)["answer"])
    assert torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("visual" in k for k in changed) and any("language_model" in k for k in changed)
    targets = aux_targets(batch)
    assert targets.shape == (8 * 16, 24) and targets.sum() == sum(len(e.scene.objects) for e in batch)


def test_cli_training_writes_into_its_run_dir_not_the_shipped_folder(tmp_path, monkeypatch):
    """The export replaces its folder whole: by default it must land in the run dir, never in models/ (the
    shipped verifier's folder holds a hand-written model card)."""
    from typer.testing import CliRunner

    from alphagrpo.cli import app

    monkeypatch.chdir(tmp_path)  # a wrong default would write tmp_path/models/..., not the repository's
    res = CliRunner().invoke(app, ["shapes", "train-verifier", "--minutes", "0.005", "--run-dir", "run"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "model" / "verifier_card.json").read_text())["steps"] >= 1
    assert not (tmp_path / "models").exists()
