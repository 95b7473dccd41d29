"""``alphagrpo bench refinement``: which mistakes does a UMM's refinement pass repair, and does the edit matter?

The GRPO evaluation's refinement pass adds a few points over the first image; this measures where they come from.
It draws one first image per prompt (a seeded sample of a split's explicit prompts, the deterministic sampler at the
GRPO configs' guidance, as the evaluation draws), and classifies each by the one edit that would repair it
(``shapesworld.refine.repair`` on the oracle's detections: ``keep`` for a right image, ``recolour``, ``reshape``,
``drop``, ``extra``, ``move``, or ``unrepairable`` when no single edit does). It then refines every first image
three times from the **same noise**, under three edit texts:

* ``model``: the edit the model writes itself after ``<think>`` (sampled as the evaluation samples it, temperature
  0.3; the redraw then reads ``prompt <think> edit </think>`` right-padded, as all three texts do);
* ``gold``: the edit ``repair`` names (``keep the image`` for right and unrepairable images);
* ``keep``: ``keep the image`` for every image, i.e. a redraw conditioned on the old image that asks for nothing.

Per kind it reports how many first images are wrong in that way and how many each text repairs (and how many right
images each breaks). ``gold`` over ``keep`` is what a correct critique is worth to the image head; ``model`` over
``keep`` is what the model's own critique is worth. A second table does the same on the **synthetic** near misses
refinement pretraining uses (``shapesworld.refine.near_miss`` of scenes that satisfy the prompts): the image head's
ability on its training distribution, per kind. The oracle judges here as in every evaluation; nothing is trained.
"""

from __future__ import annotations

import random

import torch

KINDS = ("keep", "recolour", "reshape", "drop", "extra", "move", "unrepairable")
EDITS = ("model", "gold", "keep")


def _refine(policy, tok, texts: list[str], images: torch.Tensor, seed: int, cfg_scale: float, n_steps: int,
            max_tokens: int, batch: int) -> torch.Tensor:  # fmt: skip
    """Images drawn from ``prompt <think> edit </think>`` and the input images, from a seeded noise."""
    from recipes.umm import tokenize
    from trainer.rollout import sample_images

    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            ids, mask = tokenize(tok, texts[i : i + batch], max_tokens)
            ctx = policy.encode(ids, mask, images[i : i + batch])
            out.append(sample_images(policy, ctx, n_steps=n_steps, shift=3.0, cfg_scale=cfg_scale, generator=g).images)
    return torch.cat(out)


def tally(kinds: list[str], before: list[bool], after: dict[str, list[bool]]) -> dict:
    """Per kind of first image: how many, and per edit text how many the refinement repaired (a right image:
    how many it broke); plus each text's accuracy after refinement."""
    refined = {e: round(sum(v) / len(v), 4) for e, v in after.items()}
    out: dict = {"images": len(kinds), "first_accuracy": round(sum(before) / len(before), 4),
                 "refined_accuracy": refined, "by_kind": {}}  # fmt: skip
    for k in KINDS:
        idx = [i for i, x in enumerate(kinds) if x == k]
        if not idx:
            continue
        row: dict = {"n": len(idx)}
        for e, v in after.items():
            if k == "keep":
                row[f"broken_{e}"] = sum(not v[i] for i in idx)
            else:
                row[f"repaired_{e}"] = sum(v[i] for i in idx)
        out["by_kind"][k] = row
    return out


def run(model: str, split: str = "heldout", n_prompts: int = 300, sample_seed: int = 1234, seed: int = 0,
        cfg_scale: float = 5.0, n_steps: int = 10, synthetic: int = 48, edit_temperature: float = 0.3,
        max_tokens: int = 24, batch: int = 32, progress: bool = True) -> dict:  # fmt: skip
    """The two tables (own first images; synthetic near misses, ``synthetic`` per kind, 0: none). The own-image
    prompts are ``random.Random(sample_seed).sample`` of the split's explicit prompts, as the GRPO evaluation
    picks its held-out prompts (``eval.seed`` 1234), so with the defaults they are the reflect configs' 300."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from recipes.umm import THINK, PlanVocab, to_images, to_tensor, tokenize
    from shapesworld.oracle import evaluate
    from shapesworld.prompts import CATEGORIES, prompts, satisfying_scene
    from shapesworld.refine import KEEP, near_miss, repair
    from shapesworld.world import render
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.reasoning import sample_plans
    from trainer.rollout import sample_images

    policy = TinyUMM.load(model).eval()
    if not policy.cfg.image_patch:
        raise ValueError(f"{model} does not read input images (image_patch 0): it cannot refine")
    tok = AutoTokenizer.from_pretrained(model)
    pool = [p for p in prompts(split) if p.category in CATEGORIES and p.category != "implicit"]
    specs = random.Random(sample_seed).sample(pool, min(n_prompts, len(pool)))
    out: dict = {"model": model, "split": split, "prompts": len(specs), "cfg_scale": cfg_scale, "n_steps": n_steps,
                 "seed": seed}  # fmt: skip
    bar = tqdm(total=4 * len(specs) + 2 * synthetic * (len(KINDS) - 2), disable=not progress, desc="refinement")
    g = torch.Generator().manual_seed(seed)
    first = []
    with torch.no_grad():
        for i in range(0, len(specs), batch):
            ids, mask = tokenize(tok, [s.text for s in specs[i : i + batch]], max_tokens)
            first.append(sample_images(policy, policy.encode(ids, mask), n_steps=n_steps, shift=3.0,
                                       cfg_scale=cfg_scale, generator=g).images)  # fmt: skip
            bar.update(len(first[-1]))
    x0 = torch.cat(first)
    judged = [evaluate(im, s) for im, s in zip(to_images(x0), specs)]
    rng = random.Random(seed)
    repairs = [repair(s, j.detections, rng) for s, j in zip(specs, judged)]
    kinds = [r[2] if r else "unrepairable" for r in repairs]
    edits = {"gold": [r[1] if r else KEEP for r in repairs], "keep": [KEEP] * len(specs), "model": []}
    g_text = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for i in range(0, len(specs), batch):
            p = sample_plans(policy, PlanVocab(tok, max_tokens), [s.text for s in specs[i : i + batch]],
                             max_tokens=12, temperature=edit_temperature, generator=g_text,
                             image=x0[i : i + batch])  # fmt: skip
            edits["model"] += [t.removeprefix(THINK[0]).removesuffix(THINK[1]).strip() for t in p.texts]
    after = {}
    for e in EDITS:
        texts = [f"{s.text} {THINK[0]} {t} {THINK[1]}" for s, t in zip(specs, edits[e])]
        x1 = _refine(policy, tok, texts, x0, seed + 2, cfg_scale, n_steps, max_tokens, batch)
        after[e] = [evaluate(im, s).correct for im, s in zip(to_images(x1), specs)]
        bar.update(len(specs))
    out["own_images"] = tally(kinds, [j.correct for j in judged], after)
    out["own_images"]["model_edit_verbs"] = {
        k: _verbs([t for t, x in zip(edits["model"], kinds) if x == k]) for k in KINDS if k in kinds}
    if synthetic > 0:
        out["synthetic"] = {}
        srng = random.Random(seed + 3)
        for kind in KINDS[1:-1]:
            rows = []
            for _ in range(50 * synthetic):
                if len(rows) == synthetic:
                    break
                s = srng.choice(pool)
                scene = satisfying_scene(s, srng, 0)
                if scene is None:
                    continue
                broken, edit, got = near_miss(s, scene, srng, kinds=(kind,))
                if got == kind:
                    rows.append((s, broken, edit))
            if not rows:
                continue
            xin = to_tensor([render(b, 32) for _, b, _ in rows])
            fig = {"n": len(rows)}
            for e, eds in (("gold", [r[2] for r in rows]), ("keep", [KEEP] * len(rows))):
                texts = [f"{s.text} {THINK[0]} {t} {THINK[1]}" for (s, _, _), t in zip(rows, eds)]
                x1 = _refine(policy, tok, texts, xin, seed + 4, cfg_scale, n_steps, max_tokens, batch)
                fig[f"repaired_{e}"] = sum(evaluate(im, s).correct for im, (s, _, _) in zip(to_images(x1), rows))
                bar.update(len(rows))
            out["synthetic"][kind] = fig
    bar.close()
    return out


def _verbs(edits: list[str]) -> dict[str, int]:
    """How many edits start with each instruction verb (``make``, ``move``, ``keep`` ...)."""
    out: dict[str, int] = {}
    for t in edits:
        v = t.split()[0] if t.split() else "(empty)"
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
