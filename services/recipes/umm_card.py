"""Writes the model card (README.md) of a tiny UMM folder from its ``umm_card.json`` (recipe, steps, training
time, the export's held-out evaluation) and the run's recipe history, so the card states only measured figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from recipes.umm import UMMRecipe

TEMPLATE = """# {name}: a tiny AR-diffusion unified multimodal model for ShapesWorld

{role} A real
`Qwen2ForCausalLM` ({lm_params:,} parameters, word-level vocabulary of {vocab} tokens) whose hidden states
condition a diffusers `UNet2DConditionModel` flow-matching head ({unet_params:,} parameters) in pixel space at
32x32, {params:,} parameters in all ({size_mb:.1f} MB of float32 safetensors), trained **from scratch on a 2-core
CPU** for {train_minutes:.0f} minutes ({steps:,} steps of {batch} images).

## What it does

* Text-to-image for ShapesWorld prompts (circles, squares, triangles, stars; six colours; small or large; counts;
  left/right/above/below), with classifier-free guidance (the null context is learnt; guidance {cfg:g} at
  evaluation: the figures below).
* Planning: after `prompt <think>` its language model writes the prompt's explicit resolution and `</think>`
  ("as many stars as a triangle has corners" -> "a photo of three stars"); images can be drawn from
  `prompt <think> plan </think>`.{plan_line}
{refine_line}
It knows nothing outside that world: other words are `<unk>`, and photographs or other objects are beyond it.

## Held-out evaluation (oracle, {n_prompts} fixed held-out explicit prompts, one image each)

`alphagrpo shapes export-umm --n-eval {n_prompts} --cfg-scale {cfg:g}` on the run's checkpoint ({steps_eval} ODE steps,
guidance {cfg:g}, fixed noise):

| figure | value |
|---|---|
| accuracy (GenEval-style, every atom of the prompt right) | {accuracy:.3f} (standard error {stderr:.3f}) |
| atom accuracy | {atom_accuracy:.3f} |
{per_category}{refined_row}
The held-out explicit prompts are mostly position prompts ({n_position} of {n_prompts}), so overall accuracy is close
to position accuracy. A GRPO base should leave room to improve (the trainer issue asks for 20-60 %).

## Recipe

`alphagrpo shapes train-umm` (seeded, resumable; `recipes/umm.py`), from the defaults of `UMMRecipe` (batch 32,
lr 5e-4, ...). The run changed its recipe on resume; what differed from the defaults, from the step it took
effect (as recorded in the run's `recipe-history.jsonl`, which began at a resume):

{history}

Flow matching (rectified flow, v = eps - x0, half uniform and half logit-normal times), AdamW, EMA 0.999 of the
weights is what is evaluated and shipped; see `BENCHMARKS.md` (UMM base pretraining) for the accuracy over
time.

## Known limits

* Per-category accuracy above is the honest map of its weak spots (relations and counts are the hard ones).
* Counting prompts (2-4 of a shape, exactly) are rare in training (55 of 1,278 explicit training prompts).
* The held-out split holds prompts never trained on, but every word and every attribute value was seen.
"""


def _params(model, prefix: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def write_card(folder: Path, history_path: Path | None = None) -> Path:
    from trainer.policies.tiny_umm import TinyUMM

    folder = Path(folder)
    card = json.loads((folder / "umm_card.json").read_text())
    model = TinyUMM.load(folder)
    ev, recipe = card["evaluation"], card["recipe"]
    n = ev.get("n_prompts", recipe.get("eval_prompts", 0))
    acc = ev["accuracy"]
    from collections import Counter

    from recipes.umm import eval_prompts

    counts = Counter(p.category for p in eval_prompts(UMMRecipe(eval_prompts=n)))
    cats = "".join(f"| accuracy, {k[4:].replace('_', ' ')} ({counts[k[4:]]} prompts) | {v:.3f} |\n"
                   for k, v in sorted(ev.items()) if k.startswith("acc_"))  # fmt: skip
    refined = ""
    if "refined_accuracy" in ev:
        refined = ("| accuracy after one refinement pass (reads its image, writes an edit, redraws) | "
                   f"{ev['refined_accuracy']:.3f} |\n")
    if "count_bias" in ev:
        refined += (f"| counting: mean signed miscount (objects drawn minus asked; 0 is unbiased) | "
                    f"{ev['count_bias']:+.2f} (mean absolute {ev['count_abs_error']:.2f}) |\n")
    plan_line = ""
    if "plan_exact_heldout" in ev:
        plan_line = (f" Its plan (temperature 0.3) is exactly the resolution for {ev['plan_exact_train']:.0%} of the "
                     f"training implicit prompts and {ev['plan_exact_heldout']:.0%} of the held-out ones.")  # fmt: skip
    refine_line = ""
    if model.cfg.image_patch:
        own = (" and, with `onpolicy_refine` in the recipe below, on its own images repaired by one edit (`repair`)"
               if recipe.get("onpolicy_refine") else "")  # fmt: skip
        refine_line = ("* Refinement: its language model reads an input image as patch tokens and writes an edit after "
                       "`prompt <think>` (\"make the square blue\"); the U-Net redraws conditioned on prompt, edit and "
                       "the old image (pretrained on near misses with their gold edit, "
                       f"`shapesworld/refine.py`{own}).\n")  # fmt: skip
    role = ("The base policy that `alphagrpo train` (GRPO), `alphagrpo demo` and `alphagrpo generate` use by default."
            if folder.name == "shapes-umm" else
            "A model of the `shapes-umm` family (the recipe below says how this one was trained); "
            "`model_path` in a training config or `--model` picks it.")  # fmt: skip
    lines, previous = [], None
    if history_path is not None and Path(history_path).exists():
        defaults = asdict(UMMRecipe())
        skip = {"from_step", "seed", "minutes", "max_steps", "eval_every_s", "checkpoint_every_s", "eval_prompts"}
        for raw in Path(history_path).read_text().splitlines():
            h = json.loads(raw)
            changed = {k: v for k, v in h.items()
                       if k not in skip and v != defaults.get(k, v) and not isinstance(v, list)}
            if changed == previous:
                continue  # a resume with the same recipe
            previous = changed
            listed = ", ".join(f"{k} {v}" for k, v in changed.items())
            lines.append(f"* from step {h['from_step']:,}: " + (listed or "the defaults of `UMMRecipe`"))
    size = (folder / "model.safetensors").stat().st_size / 2**20
    text = TEMPLATE.format(
        name=folder.name, role=role, n_position=counts["position"],
        lm_params=_params(model, "lm."), unet_params=_params(model, "unet."),
        params=sum(p.numel() for p in model.parameters()),
        vocab=model.cfg.vocab_size, size_mb=size, train_minutes=card["train_seconds"] / 60, steps=card["steps"],
        batch=recipe["batch"], refine_line=refine_line, plan_line=plan_line, n_prompts=n, accuracy=acc,
        stderr=(acc * (1 - acc) / max(n, 1)) ** 0.5, atom_accuracy=ev.get("atom_accuracy", float("nan")),
        per_category=cats, refined_row=refined, history="\n".join(lines) or "* (no history recorded)",
        cfg=ev.get("cfg_scale", recipe["cfg_scale"]), steps_eval=ev.get("sample_steps", recipe["sample_steps"]),
    )  # fmt: skip
    (folder / "README.md").write_text(text)
    return folder / "README.md"
