"""Writes the model card (README.md) of a trained ShapesWorld verifier folder from its ``verifier_card.json``
(recipe, steps, training time, validation) and the figures of ``alphagrpo shapes eval-verifier``."""

from __future__ import annotations

import json
from pathlib import Path

from shapesworld.verifier_recipe import CAPTION_QUESTION, SYSTEM_PROMPT

TEMPLATE = """# shapes-verifier: a tiny Qwen2-VL that answers yes/no questions about ShapesWorld images

The embedded default model of the alphagrpo verifier service (`VERIFIER_HF_MODEL_PATH` unset). A real
`Qwen2VLForConditionalGeneration` ({params:,} parameters, {size_mb:.1f} MB of float32 safetensors) trained
**from scratch on CPU** on ShapesWorld renders; its tokenizer is word-level over the world's vocabulary.

## What it can and cannot judge

It was trained on, and is only meaningful for, 64x64 ShapesWorld images (circles, squares, triangles and
stars in red, green, blue, yellow, purple and orange, small or large, on white) and questions phrased as the
`rules` decomposer phrases them for ShapesWorld prompts: existence ("Is there a star?", "Are there stars?"),
exact counts 2-4 ("Are there exactly three stars?"), "fewer than" counts, colour ("Is the circle red?", "Are
the stars blue?"), size ("Is the square large?"), relative position ("Is the circle to the left of the
square?"), the four standard quality questions, and holistic questions ("Does the image match: <prompt>?").
Words outside its vocabulary become `<unk>`; photographs, other shapes or colours, text rendering, actions or
styles are outside what it knows, and its P(yes) there is meaningless. The system prompt it was trained with
is "{system_prompt}" (stored in `verifier_card.json`; the service uses it).

## Accuracy (held-out scenes, judged against the ShapesWorld oracle)

`alphagrpo shapes eval-verifier --json` on this folder:

```json
{eval_json}
```

| figure | value | target |
|---|---|---|
| semantic accuracy | {accuracy:.3f} | >= 0.97 |
| per kind: exist / count / fewer / colour / size / spatial | {per_kind} | |
| quality accuracy | {quality_accuracy:.3f} | |
| holistic accuracy | {holistic_accuracy:.3f} | |
| ECE (semantic, 10 bins) | {ece:.3f} | <= 0.05 |
| Spearman(DVReward, oracle atom accuracy) | {reward_oracle_spearman:.3f} | reported |

## Data and recipe

Training data is generated on the fly, seeded, by `shapesworld.questions`: answers balanced per exact question
string (string first, then the answer, then a scene that makes it so), mild defects (noise, slight blur, JPEG,
slight colour smear) on a quarter of the semantic examples, quality examples on clean and defective renders
(noise, blur, smear, partial shapes), holistic examples on training-split prompts with missing, extra and
recoloured objects as negatives. Tricks that make grounding learnable on a CPU: 16 image tokens (patch 8,
2x2 merge), the loss on the yes/no decision as the service computes it, a dense auxiliary target per image
token, and captioning ("{caption_question}") as a second task.

Recipe (`alphagrpo shapes train-verifier`, `services/shapesworld/verifier_recipe.py`):

```json
{recipe_json}
```

Trained for {steps:,} steps ({examples:,} examples, three quarters questions and one quarter captions) in
{minutes:.0f} minutes of CPU
time on the project's 2-core machine. Last validation during training: {validation}.

## Known limits

{limits}
"""


def write_card(folder: str | Path, figures: dict, limits: list[str]) -> Path:
    folder = Path(folder)
    card = json.loads((folder / "verifier_card.json").read_text())
    weights = folder / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        params = sum(f.get_slice(k).get_shape().numel() if hasattr(f.get_slice(k).get_shape(), "numel")
                     else _prod(f.get_slice(k).get_shape()) for k in f.keys())  # fmt: skip
    per_kind = " / ".join(f"{figures.get('accuracy_' + k, float('nan')):.3f}"
                          for k in ("exist", "count", "fewer", "colour", "size", "spatial"))  # fmt: skip
    text = TEMPLATE.format(
        params=params, size_mb=weights.stat().st_size / 2**20, system_prompt=card.get("system_prompt", SYSTEM_PROMPT),
        eval_json=json.dumps(figures), per_kind=per_kind, caption_question=CAPTION_QUESTION,
        recipe_json=json.dumps(card["recipe"], indent=1), steps=card["steps"], examples=card["examples"],
        minutes=card["train_seconds"] / 60, validation=json.dumps(card["validation"]),
        limits="\n".join(f"* {x}" for x in limits), **{k: figures[k] for k in
        ("accuracy", "quality_accuracy", "holistic_accuracy", "ece", "reward_oracle_spearman")},
    )  # fmt: skip
    (folder / "README.md").write_text(text)
    return folder / "README.md"


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
