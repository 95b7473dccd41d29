"""The tiny UMM recipe: a few steps change the weights, evaluate with the oracle, checkpoint and resume."""

import json
from pathlib import Path

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


def test_planning_rows_and_plan_lm_loss(tmp_path):
    """With planning on, image rows include 'prompt <think> plan </think>' (implicit prompts only in that
    form), the LM learns the plan (its loss falls on a repeated batch), and the recipe history keeps both
    versions of a run whose recipe changed on resume."""
    import random

    from recipes.umm import batch_of, plan_lm_loss, with_plan
    from shapesworld.prompts import prompts

    specs = [p for p in prompts("train") if p.category != "implicit"]
    implicit = [p for p in prompts("train") if p.category == "implicit"]
    texts, x = batch_of(random.Random(0), specs, 40, plan_cond=0.5, implicit=implicit)
    planned = [t for t in texts if "<think>" in t]
    assert 8 < len(planned) < 32 and x.shape == (40, 3, 32, 32)
    implicit_texts = {p.text for p in implicit}
    assert all(t.split(" <think>")[0] not in implicit_texts for t in texts if "<think>" not in t)
    spec = implicit[0]
    assert with_plan(spec) == f"{spec.text} <think> {spec.explicit} </think>"

    tok = umm_tokenizer()
    model = build(UMMRecipe(**TINY), tok)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = plan_lm_loss(model, tok, random.Random(1), implicit, 8, 40)  # the same 8 plans each time
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    train_umm(UMMRecipe(minutes=5, max_steps=2, **TINY), tmp_path / "run", None, progress=False)
    train_umm(UMMRecipe(minutes=5, max_steps=4, plan_cond=0.5, plan_lm_weight=0.2, **TINY), tmp_path / "run", None,
              resume=True, progress=False)  # fmt: skip
    history = [json.loads(line) for line in (tmp_path / "run" / "recipe-history.jsonl").read_text().splitlines()]
    assert [(h["from_step"], h["plan_cond"]) for h in history] == [(0, 0.0), (2, 0.5)]
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged


def test_refinement_rows_grow_the_model_and_evaluate_a_refinement_pass(tmp_path):
    """A run without an image path resumed with refinement rows: the LM's image tokens start fresh (the
    only keys allowed to be missing), AdamW restarts, the log carries the refinement and edit losses, and
    the evaluation reports the accuracy after one refinement pass. Any other missing key is refused."""
    import pytest

    from checkpoint import load

    train_umm(UMMRecipe(minutes=5, max_steps=2, **TINY), tmp_path / "run", None, progress=False)
    grown = UMMRecipe(minutes=5, max_steps=4, image_patch=8, refine_batch=3, refine_lm_weight=0.5, **TINY)
    last = train_umm(grown, tmp_path / "run", tmp_path / "umm", resume=True, progress=False)
    assert last["step"] == 4 and 0 <= last["refined_accuracy"] <= 1
    logged = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert logged  # losses are logged every 20 steps: none here; the eval line is there
    from trainer.policies.tiny_umm import TinyUMM

    model = TinyUMM.load(tmp_path / "umm")
    assert model.cfg.image_patch == 8 and model.image_pos.shape == (1, 16, 32)
    # an export of the checkpoint's EMA is the model the run ships, evaluated on request
    from recipes.umm import export_umm

    got = export_umm(tmp_path / "run", tmp_path / "export", n_eval=3)
    assert got["step"] == 4 and got["n_prompts"] == 3 and 0 <= got["refined_accuracy"] <= 1
    from recipes.umm_card import write_card

    text = write_card(tmp_path / "export", tmp_path / "run" / "recipe-history.jsonl").read_text()
    row = "| accuracy after one refinement pass (reads its image, writes an edit, redraws) | "
    assert f"{row}{got['refined_accuracy']:.3f}" in text
    (line,) = [x for x in text.splitlines() if x.startswith("* from step 2: ")]
    assert "image_patch 8, refine_batch 3, refine_lm_weight 0.5" in line and "batch 4" in line
    from recipes.umm import plan_accuracy

    exported = TinyUMM.load(tmp_path / "export")
    assert plan_accuracy(exported, umm_tokenizer(), "heldout", max_tokens=4) == 0.0  # 4 tokens cannot hold a plan
    # `shapes eval-umm` on the exported folder reproduces the run's own evaluation (same prompts, same noise), and
    # every guidance scale it sweeps sees those prompts and noises too
    from recipes.umm import evaluate_folder

    w = got["cfg_scale"]
    again = evaluate_folder(tmp_path / "export", "heldout", 3, (7.0, w), n_steps=2)  # the run's scale second
    assert again[f"cfg_{w:g}"]["accuracy"] == got["accuracy"]
    assert again[f"cfg_{w:g}"]["atom_accuracy"] == got["atom_accuracy"]
    assert again["prompts"] == 3 and "cfg_7" in again
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), exported.state_dict().values()))
    plain = build(UMMRecipe(**TINY), umm_tokenizer())
    with pytest.raises(RuntimeError, match="does not fit"):  # the grown checkpoint into a smaller model
        load(tmp_path / "run", plain, torch.optim.AdamW(plain.parameters()))


def test_image_tokens_condition_the_lm_and_the_edit_loss_trains_on_the_edit_only():
    import random

    from recipes.umm import continuation_loss, refine_batch_of, tokenize
    from shapesworld.prompts import prompts

    tok = umm_tokenizer()
    assert len(tok) == 128 and all(tok.convert_tokens_to_ids(w) != tok.unk_token_id for w in ("make", "remove", "move"))
    ids_plain = tokenize(tok, ["a photo of a red circle left of a blue square"], 16)[0]
    assert tok.unk_token_id not in ids_plain.tolist()  # the new words split no old word
    specs = [p for p in prompts("train") if p.category != "implicit"]
    texts, inp, tgt = refine_batch_of(random.Random(1), specs, 6, distractors=0)
    assert all(" <think> " in t and t.endswith("</think>") for t in texts) and inp.shape == tgt.shape == (6, 3, 32, 32)
    torch.manual_seed(0)
    model = build(UMMRecipe(image_patch=8, **TINY), tok)
    ids, mask = tokenize(tok, texts, 32)
    think = tok.convert_tokens_to_ids("<think>")
    loss = continuation_loss(model, ids, mask, think, inp)
    loss.backward()
    assert torch.isfinite(loss) and model.image_in.weight.grad.abs().sum() > 0  # the image tokens are read
    # the loss ignores the prompt: changing prompt words before <think> changes nothing but the context
    ctx = model.encode(ids, mask, inp)
    assert ctx.hidden.shape[1] == 16 + ids.shape[1] and ctx.mask.shape == (6, 16 + ids.shape[1])
    other = model.encode(ids, mask, -inp)
    assert not torch.allclose(ctx.hidden, other.hidden)  # the LM's hidden states depend on the image
    assert torch.allclose(model.encode(ids, mask).hidden, model.encode(ids, mask).hidden)  # no image: text only


def test_category_weights_reweight_explicit_prompts():
    """counting=8 raises the share of counting rows about eightfold (4 % -> about 25 % of the training split),
    weight 0 removes a category, no weights draw exactly as before they existed, and bad weights are refused."""
    import random

    import pytest

    from recipes.umm import batch_of, spec_weights
    from shapesworld.prompts import prompts

    specs = [p for p in prompts("train") if p.category != "implicit"]
    by_text = {p.text: p.category for p in specs}
    base_share = sum(p.category == "counting" for p in specs) / len(specs)
    texts, _ = batch_of(random.Random(0), specs, 200, category_weights={"counting": 8.0}, distractors=0)
    share = sum(by_text[t] == "counting" for t in texts) / len(texts)
    expected = 8 * base_share / (1 + 7 * base_share)
    assert abs(share - expected) < 0.08 and share > 3 * base_share, (share, expected, base_share)
    texts, _ = batch_of(random.Random(0), specs, 60, category_weights={"position": 0.0}, distractors=0)
    assert not any(by_text[t] == "position" for t in texts)
    assert batch_of(random.Random(3), specs, 6, distractors=0)[0] == batch_of(random.Random(3), specs, 6,
                                                                            distractors=0, category_weights={})[0]
    # implicit=W weighs the implicit prompts among plan-form rows (they appear nowhere else)
    implicit = [p for p in prompts("train") if p.category == "implicit"]
    planned = {f"{p.text} <think> {p.resolved} </think>" for p in implicit}
    share = [sum(t in planned for t in batch_of(random.Random(0), specs, 300, plan_cond=1.0, implicit=implicit,
                                                distractors=0, category_weights=w)[0]) / 300
             for w in ({"counting": 8.0}, {"counting": 8.0, "implicit": 8.0}, {"implicit": 0.0})]  # fmt: skip
    base_w = sum(8.0 if p.category == "counting" else 1.0 for p in specs)  # 1,663 on the training split
    for got, iw in zip(share, (1.0, 8.0)):
        expected = iw * len(implicit) / (base_w + iw * len(implicit))  # 0.062 and 0.346
        assert abs(got - expected) < 0.06, (got, expected)
    assert share[2] == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        spec_weights(specs, {"counting": -1.0})
    with pytest.raises(ValueError, match="finite"):
        spec_weights(specs, {"implicit": float("inf")})
    with pytest.raises(ValueError, match="finite"):
        spec_weights(specs, {"counting": float("nan")})
    with pytest.raises(ValueError, match="no prompt"):
        spec_weights(specs, {c: 0.0 for c in by_text.values()})


def test_train_umm_cli_refuses_bad_category_weights(tmp_path):
    """The CLI names the flag and the limit (an unknown category, a non-number, a negative or infinite weight,
    weights that leave nothing to draw) and trains nothing."""
    from typer.testing import CliRunner

    from alphagrpo.cli import app

    all_zero = [f"{c}=0" for c in ("position", "color_attr", "counting", "colors", "two_object", "single_object")]
    for bad, says in [(["shape=2"], "category must be one of"), (["implicit=-2"], "must be finite numbers >= 0"),
                      (["counting=lots"], "must be a number"),
                      (["counting=-1"], "must be finite numbers >= 0"), (["counting=inf"], "must be finite"),
                      (all_zero, "leave no prompt")]:  # fmt: skip
        flags = [arg for item in bad for arg in ("--category-weight", item)]
        out = CliRunner().invoke(app, ["shapes", "train-umm", "--run-dir", str(tmp_path / "run"), *flags])
        text = " ".join(out.output.replace("│", " ").split())  # the error box wraps lines
        assert out.exit_code == 2 and says in text and "--category-weight" in text, out.output
    assert not (tmp_path / "run").exists()


def test_evaluation_reports_the_count_bias_of_its_own_images():
    """On counting prompts the evaluation reports the mean signed and absolute miscount of the images it drew
    (the card's counting row), recomputed here from those images by the oracle; without an exact-count prompt
    there is no such figure."""
    from recipes.umm import evaluate_umm
    from shapesworld.oracle import count_errors, detect
    from shapesworld.prompts import prompts

    held = prompts("heldout")
    counting = [p for p in held if p.category == "counting"][:3]
    position = [p for p in held if p.category == "position"][:2]
    recipe = UMMRecipe(**TINY)
    model = build(recipe, umm_tokenizer())
    res, images = evaluate_umm(model, umm_tokenizer(), recipe, counting + position)
    errors = [e for im, s in zip(images, counting) for e in count_errors(s, detect(im))]
    assert len(errors) == 3
    assert res["count_bias"] == round(sum(errors) / 3, 4)
    assert res["count_abs_error"] == round(sum(map(abs, errors)) / 3, 4) >= abs(res["count_bias"])
    res, _ = evaluate_umm(model, umm_tokenizer(), recipe, position)
    assert "count_bias" not in res


def test_eval_umm_sweeps_guidance_on_the_same_prompts_and_noises():
    """``shapes eval-umm`` on the shipped base: a scale's figures do not depend on which scales come before it
    (each scale redraws the same noises), and the scale changes what the base draws."""
    from recipes.umm import evaluate_folder

    folder = Path(__file__).resolve().parents[2] / "models" / "shapes-umm"
    both = evaluate_folder(folder, "train", 12, (1.0, 5.0), n_steps=6)
    alone = evaluate_folder(folder, "train", 12, (5.0,), n_steps=6)
    assert both["cfg_5"] == alone["cfg_5"] and both["prompts"] == 12 and both["split"] == "train"
    assert both["cfg_1"]["atom_accuracy"] != both["cfg_5"]["atom_accuracy"]


def test_onpolicy_refinement_rows_come_from_the_models_own_images(tmp_path):
    """``onpolicy_refine``: the pool is the (EMA) model's own images of training prompts, each row the image, the
    edit that repairs it and the repaired scene; every image drawn is accounted for by kind, rows that need no
    edit are capped, and a run logs each redraw of the pool."""
    import random

    from recipes.umm import onpolicy_refine_pool
    from shapesworld.oracle import evaluate
    from shapesworld.prompts import prompts

    recipe = UMMRecipe(image_patch=8, onpolicy_refine=2, onpolicy_pool=24, onpolicy_every=2, onpolicy_keep=0.25,
                       **TINY)  # fmt: skip
    tok = umm_tokenizer()
    model = build(recipe, tok)
    specs = [p for p in prompts("train") if p.category == "single_object"]  # a blank image is one "add" away
    rows, kinds = onpolicy_refine_pool(model, tok, random.Random(0), specs, recipe, torch.Generator().manual_seed(0))
    assert sum(kinds.values()) == 24 and kinds.get("drop", 0) > 0
    by_text = {s.text: s for s in specs}
    n_keep = sum(" <think> keep the image </think>" in r[0] for r in rows)
    assert n_keep <= 0.25 / 0.75 * (len(rows) - n_keep)
    for text, x_in, x_target in rows:
        prompt, edit = text.split(" <think> ")
        assert edit.endswith(" </think>") and x_in.shape == x_target.shape == (3, 32, 32)
        assert evaluate(to_images(x_target[None])[0], by_text[prompt]).correct  # the target is the repair
    train_umm(recipe.__class__(**{**recipe.__dict__, "max_steps": 3}), tmp_path / "run", None, progress=False)
    pools = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if "onpolicy_pool" in x]
    assert pools and all(sum(p["onpolicy_pool"].values()) == 24 for p in pools)
