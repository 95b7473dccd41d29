"""``alphagrpo bench counting``: does a UMM draw the number of objects its text asks for, and under which text?

Reasoning text-to-image rests on one assumption: an image conditioned on ``prompt <think> plan </think>``, whose
plan states the count ("a photo of three red stars"), gets that count right about as often as the explicit prompt
alone would. This measures it. For every implicit number prompt of a split ("as many stars as a triangle has
corners") it draws each image once per text from the **same initial noise** (deterministic sampler), under up to
five texts:

* ``explicit``: the prompt's explicit resolution alone ("a photo of three stars");
* ``implicit``: the implicit prompt alone (what the no-reasoning baseline conditions on);
* ``planned``: the implicit prompt followed by the gold plan, in the form pretraining and reasoning rollouts use;
* ``plan_span``: the same text through the language model, but the image head attends only to the hidden states
  from ``<think>`` on (which saw the prompt through causal attention): is it the prompt's own tokens that pull the
  count away?
* ``plan_only``: ``<think> plan </think>`` with no prompt at all.

The oracle counts the objects matching the required shape (and colour) in each image. Per text and guidance scale
it reports the oracle accuracy, the mean count drawn and the exact-count rate per target count, and ``slope``: the
least-squares slope of the count drawn against the target (1: the count follows the text; 0: the text does not
move it). Differences between texts are paired (same noise), so they are measured more sharply than their
standard errors alone suggest. Training prompts by default: this is a diagnostic of the generator, not an
evaluation. The oracle judges here as in every evaluation; nothing is trained.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

CONDITIONS = ("explicit", "implicit", "planned", "plan_span", "plan_only")


@dataclass(frozen=True)
class Drawn:
    target: int  # objects the prompt asks for
    drawn: int  # objects matching the requirement that the oracle found
    correct: bool  # the oracle's verdict on the whole prompt


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs; NaN when xs is constant."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else math.nan


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def summarise(rows: list[Drawn]) -> dict:
    """Accuracy, slope and, per target count, the mean count drawn (with its standard error), the exact rate
    and the number of images. Figures that cannot be computed are None (strict JSON)."""

    def r(v: float) -> float | None:
        return None if math.isnan(v) else round(v, 4)

    out: dict = {"images": len(rows), "accuracy": r(statistics.fmean(d.correct for d in rows)),
                 "slope": r(slope([d.target for d in rows], [d.drawn for d in rows])), "by_target": {}}  # fmt: skip
    for t in sorted({d.target for d in rows}):
        of = [d for d in rows if d.target == t]
        drawn = [float(d.drawn) for d in of]
        out["by_target"][str(t)] = {"n": len(of), "mean_drawn": r(statistics.fmean(drawn)), "se": r(_se(drawn)),
                                    "exact": r(statistics.fmean(d.drawn == t for d in of))}  # fmt: skip
    return out


def texts_of(spec) -> dict[str, str]:
    from recipes.umm import THINK, with_plan

    planned = with_plan(spec)
    return {"explicit": spec.resolved, "implicit": spec.text, "planned": planned, "plan_span": planned,
            "plan_only": f"{THINK[0]} {spec.resolved} {THINK[1]}"}  # fmt: skip


def from_think(ids: torch.Tensor, mask: torch.Tensor, think_id: int) -> torch.Tensor:
    """The mask keeping only each row's tokens from its first ``think_id`` on (rows without one keep none)."""
    hit = (ids == think_id) & mask.bool()
    after = hit.int().cumsum(1) > 0
    return (mask.bool() & after).to(mask.dtype)


def run(model: str, split: str = "train", repeats: int = 2, cfg_scales: tuple[float, ...] = (5.0,),
        n_steps: int = 10, shift: float = 3.0, seed: int = 0, max_tokens: int = 32, batch: int = 32,
        texts: tuple[str, ...] = CONDITIONS, progress: bool = True) -> dict:  # fmt: skip
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from recipes.umm import THINK, to_images, tokenize
    from shapesworld.oracle import count_errors, evaluate
    from shapesworld.prompts import prompts
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.rollout import sample_images

    unknown = [t for t in texts if t not in CONDITIONS]
    if unknown or not texts:
        raise ValueError(f"texts must be among {CONDITIONS}, got {list(texts)}")
    policy = TinyUMM.load(model).eval()
    tok = AutoTokenizer.from_pretrained(model)
    think_id = tok.convert_tokens_to_ids(THINK[0])
    specs = [p for p in prompts(split) if p.category == "implicit" and p.inference == "number"]
    if not specs:
        raise ValueError(f"split {split!r} holds no implicit number prompt")
    rows = [s for s in specs for _ in range(repeats)]
    out: dict = {"model": model, "split": split, "prompts": len(specs), "repeats": repeats, "n_steps": n_steps,
                 "shift": shift, "seed": seed}  # fmt: skip
    bar = tqdm(total=len(cfg_scales) * len(texts) * len(rows), disable=not progress, desc="counting")
    for w in cfg_scales:
        per: dict[str, list[Drawn]] = {}
        for cond in texts:
            strings = [texts_of(s)[cond] for s in rows]
            ids, mask = tokenize(tok, strings, max_tokens)
            cut = [t for t in strings if len(tok(t, add_special_tokens=False)["input_ids"]) > max_tokens]
            if cut:
                raise ValueError(f"max_tokens {max_tokens} truncates {cut[0]!r}")
            g = torch.Generator().manual_seed(seed)  # every text starts from the same noises, row for row
            images = []
            with torch.no_grad():
                for i in range(0, len(rows), batch):
                    ctx = policy.encode(ids[i : i + batch], mask[i : i + batch])
                    if cond == "plan_span":
                        ctx.mask = from_think(ids[i : i + batch], ctx.mask, think_id)
                        if not bool(ctx.mask.any(1).all()):
                            raise RuntimeError("a plan_span row has no <think> token: its image would see nothing")
                    r = sample_images(policy, ctx, n_steps=n_steps, shift=shift, cfg_scale=w, generator=g)
                    images += to_images(r.images)
                    bar.update(len(r.images))
            per[cond] = []
            for img, spec in zip(images, rows):
                v = evaluate(img, spec)
                (err,) = count_errors(spec, v.detections)  # one exact-count requirement per number prompt
                req = spec.requirements[0].count
                per[cond].append(Drawn(req, req + err, v.correct))
        out[f"cfg_{w:g}"] = {c: summarise(per[c]) for c in texts}
    bar.close()
    return out
