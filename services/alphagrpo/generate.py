"""``alphagrpo generate``: one image for a prompt from a UMM folder, optionally planned first (``--think``),
then refined up to K times (``--reflect K``).

Each refinement pass lets the model read its image, write an edit and redraw; the new image is kept only if
its DVReward (from the verifier, against the prompt's own questions) beats the current one by more than
``margin``, and the first pass that does not improve stops the loop. The stopping rule is DVReward itself,
never the ShapesWorld oracle or any benchmark's verdict, so it works for any prompt the services can score.
Every round's image, text and reward are written to the output folder and summarised as one JSON object.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def generate(prompt: str, model_path: Path, verifier_url: str, out: Path, *, reflect: int = 0, think: bool = False,
             seed: int = 0, n_steps: int = 20, cfg_scale: float = 3.0, temperature: float = 0.3,
             margin: float = 0.0, max_tokens: int = 24) -> dict:  # fmt: skip
    from transformers import AutoTokenizer

    from recipes.umm import PlanVocab, refine_images, to_images, tokenize
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.reasoning import sample_plans
    from trainer.reflection import keep_refinement
    from trainer.reward import RewardFetcher
    from trainer.rollout import sample_images

    policy = TinyUMM.load(model_path)
    tok = AutoTokenizer.from_pretrained(model_path)
    if reflect and not policy.cfg.image_patch:
        raise ValueError(f"{model_path} cannot read images (image_patch = 0): it was not trained to refine")
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    fetcher = RewardFetcher(verifier_url)

    why_nan: list[str] = []

    def score(x: torch.Tensor) -> float:
        r = fetcher.wait(fetcher.submit([prompt], to_images(x)))
        if math.isnan(r.values[0]):
            why_nan.append(r.reasons[0] or "no reason given")
        return r.values[0]

    try:
        with torch.no_grad():
            text = None
            if think:
                plans = sample_plans(policy, PlanVocab(tok, max_tokens), [prompt], max_tokens=max_tokens,
                                     temperature=temperature, generator=g)  # fmt: skip
                ctx, text = policy.encode(plans.ids, plans.mask), plans.texts[0]
            else:
                ctx = policy.encode(*tokenize(tok, [prompt], max_tokens))
            x = sample_images(policy, ctx, n_steps=n_steps, cfg_scale=cfg_scale, generator=g).images
        reward = score(x)
        to_images(x)[0].save(out / "round-0.png")
        rounds = [{"round": 0, "reward": reward, "text": text, "image": str(out / "round-0.png")}]
        stop = "no refinement asked" if reflect == 0 else f"refined {reflect} times"
        for k in range(1, reflect + 1):
            if math.isnan(reward):
                stop = f"the current image has no DVReward ({why_nan[-1]}): nothing to compare a refinement against"
                break
            new, edits = refine_images(policy, tok, [prompt], x, max_tokens=max_tokens, temperature=temperature,
                                       n_steps=n_steps, cfg_scale=cfg_scale, generator=g)  # fmt: skip
            r_new = score(new)
            better = keep_refinement(reward, r_new, margin)  # a failed reward never counts as better
            to_images(new)[0].save(out / f"round-{k}.png")
            rounds.append({"round": k, "reward": r_new, "text": edits[0], "accepted": better,
                           "image": str(out / f"round-{k}.png")})  # fmt: skip
            if not better:
                why = (f"has no DVReward ({why_nan[-1]})" if math.isnan(r_new)
                       else f"did not raise DVReward ({r_new:.4f} vs {reward:.4f})")
                stop = f"round {k} {why}: kept round {k - 1}"
                break
            x, reward = new, r_new
    finally:
        fetcher.close()
    to_images(x)[0].save(out / "final.png")
    for r in rounds:  # strict JSON: a failed reward is null with the reason in "stopped", never NaN or 0
        r["reward"] = None if math.isnan(r["reward"]) else r["reward"]
    summary = {"prompt": prompt, "reward": None if math.isnan(reward) else reward, "rounds": rounds, "stopped": stop,
               "final_image": str(out / "final.png")}  # fmt: skip
    if math.isnan(reward):
        summary["reason"] = why_nan[-1]  # why the kept image has no DVReward
    (out / "generate.json").write_text(json.dumps(summary, indent=2))
    return summary
