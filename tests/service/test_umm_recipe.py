"""The tiny UMM recipe: a few steps change the weights, evaluate with the oracle, checkpoint and resume."""

import json

import torch

from recipes.umm import UMMRecipe, build, to_images, to_tensor, train_umm, umm_tokenizer
from shapesworld.world import Obj, Scene, render

TINY = dict(batch=4, text_hidden=32, text_layers=1, unet_channels=(16, 32), eval_prompts=4, sample_steps=2,
            eval_every_s=1e9, checkpoint_every_s=1e9)  # fmt: skip


def test_images_round_trip_through_tensors():
    img = render(Scene([Obj("circle", "red", "large", 0.5, 0.5)]), 32)
    x = to_tensor([img])
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert list(to_images(x)[0].getdata()) == list(img.getdata())


def test_train_resume_and_ship(tmp_path):
    recipe = UMMRecipe(minutes=5, max_steps=3, **TINY)
    first = train_umm(recipe, tmp_path / "run", None, progress=False)
    assert set(first) >= {"accuracy", "atom_accuracy", "step"} and first["step"] == 3
    assert list((tmp_path / "run").glob("samples-*.png"))
    resumed = UMMRecipe(minutes=5, max_steps=5, **TINY)
    train_umm(resumed, tmp_path / "run", tmp_path / "umm", resume=True, progress=False)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 5
    card = json.loads((tmp_path / "umm" / "umm_card.json").read_text())
    assert card["steps"] == 5
    tok = umm_tokenizer()
    assert tok.convert_tokens_to_ids("<think>") != tok.unk_token_id
    fresh = build(resumed, tok)
    from trainer.policies.tiny_umm import TinyUMM

    shipped = TinyUMM.load(tmp_path / "umm")
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), shipped.state_dict().values()))
