"""Recipe of the tiny UMM base model (``alphagrpo shapes train-umm``): flow-matching pretraining of
``trainer.policies.tiny_umm.TinyUMM`` on ShapesWorld, on CPU, seeded and resumable.

Data: explicit training-split prompts with scenes that satisfy them, rendered at 32x32 and scaled to [-1, 1]; 10 %
of rows see the null context (for classifier-free guidance). Planning (for reasoning text-to-image): with
``plan_cond`` > 0 that share of image rows is conditioned on ``prompt <think> plan </think>``, where the plan is the
prompt's explicit resolution, and implicit training prompts join the image rows only in that form; with
``plan_lm_weight`` > 0 the language model also learns to write the plan after ``<think>`` (cross-entropy on the
plan's tokens), so the reasoning trainer starts from a policy that plans. The text model trains end to end with the
image loss. ``category_weights`` draws the explicit prompts of the image rows by category (the plan-LM and
refinement rows stay uniform). Refinement (``image_patch`` > 0): ``refine_batch`` rows per step of synthetic near
misses with their gold edit (``shapesworld.refine.near_miss``), and with ``onpolicy_refine`` rows of the model's own
images, each with the one edit that repairs it (``shapesworld.refine.repair``, from the oracle's detections), redrawn
from the EMA every ``onpolicy_every`` steps: the synthetic rows alone taught an image head that ignores the edit on its
own images (``alphagrpo bench refinement``). An EMA of the weights (decay 0.999) is what gets evaluated and
shipped. Evaluation: a fixed set of held-out explicit prompts, one image each from a fixed noise with the ODE
sampler (guidance 3), judged by the ShapesWorld oracle, per GenEval category.

Recipes import the world and the model classes; nothing imports recipes (README, layout).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from checkpoint import latest as latest_checkpoint
from shapesworld.oracle import count_errors, evaluate
from shapesworld.prompts import prompts, satisfying_scene
from shapesworld.refine import EDIT_WORDS, near_miss, repair
from shapesworld.verifier_recipe import build_tokenizer, checkpoint, restore, usable_cores
from shapesworld.world import render
from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig
from trainer.rollout import sample_images

THINK = ["<think>", "</think>"]
GROWABLE = ("image_in.", "image_pos")  # parts a resumed recipe may add (the LM's view of input images)


@dataclass
class UMMRecipe:
    seed: int = 0
    minutes: float = 120.0  # training wall-time budget (evaluation excluded)
    max_steps: int = 1_000_000
    batch: int = 32
    lr: float = 5e-4
    warmup: int = 200
    ema: float = 0.999
    drop_cond: float = 0.1
    max_tokens: int = 24
    text_hidden: int = 128
    text_layers: int = 4
    unet_channels: tuple[int, ...] = (32, 64, 96)
    eval_prompts: int = 120
    eval_every_s: float = 900.0
    checkpoint_every_s: float = 300.0
    sample_steps: int = 20
    cfg_scale: float = 3.0
    plan_cond: float = 0.0  # share of image rows conditioned on "prompt <think> plan </think>"
    plan_lm_weight: float = 0.0  # weight of the plan-writing LM loss
    plan_lm_batch: int = 16
    plan_max_tokens: int = 32
    fg_weight: float = 0.0  # extra flow-loss weight on object pixels (0: plain mean over pixels)
    distractors: int | None = None  # extra objects per training scene (None: 0-2 at random)
    image_patch: int = 0  # > 0: the LM reads input images as patch tokens (needed for refinement)
    refine_batch: int = 0  # refinement rows per step: (near miss, "prompt <think> edit </think>") -> repaired scene
    refine_lm_weight: float = 0.0  # weight of the LM loss on the edit instruction (given image and prompt)
    # on-policy refinement rows per step: the EMA model's own images of training prompts, each with the one edit
    # that repairs it (``shapesworld.refine.repair``) and the repaired scene as the target; the pool of such rows is
    # redrawn every ``onpolicy_every`` steps from ``onpolicy_pool`` images (the GRPO evaluation's sampler: 10 steps,
    # guidance ``onpolicy_cfg``); rows that need no edit are at most ``onpolicy_keep`` of the pool
    onpolicy_refine: int = 0
    onpolicy_pool: int = 640
    onpolicy_every: int = 150
    onpolicy_cfg: float = 5.0
    onpolicy_keep: float = 0.25
    # sampling weight of an explicit prompt by its category (absent: 1), e.g. {"counting": 8}; the training split is
    # 70 % position prompts and 4 % counting ones, so without it the base rarely sees a count
    category_weights: dict[str, float] | None = None


def umm_tokenizer():
    """The verifier's word-level vocabulary plus the plan tags and the words of edit instructions (121 + 7
    = 128 tokens: the LM's embedding table, padded to a multiple of 32, keeps its size)."""
    from tokenizers import AddedToken

    tok = build_tokenizer()
    tok.add_tokens(THINK, special_tokens=True)
    tok.add_tokens([AddedToken(w, single_word=True) for w in EDIT_WORDS])
    return tok


def tokenize(tok, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tok(texts, padding="max_length", truncation=True, max_length=max_tokens, return_tensors="pt",
              add_special_tokens=False)  # fmt: skip
    return enc["input_ids"], enc["attention_mask"]


def tokenize_left(tok, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids (every row ends in its last real token), for continuing text by sampling."""
    sides = tok.padding_side, tok.truncation_side
    tok.padding_side = tok.truncation_side = "left"  # a too-long prompt loses its start, never its <think>
    try:
        return tokenize(tok, texts, max_tokens)
    finally:
        tok.padding_side, tok.truncation_side = sides


def to_tensor(images) -> torch.Tensor:
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def to_images(x: torch.Tensor):
    from PIL import Image

    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


def build(recipe: UMMRecipe, tok) -> TinyUMM:
    torch.manual_seed(recipe.seed)
    cfg = TinyUMMConfig(vocab_size=len(tok) + (-len(tok)) % 32, pad_token_id=tok.pad_token_id,
                        text_hidden=recipe.text_hidden, text_layers=recipe.text_layers, image_size=32,
                        unet_channels=tuple(recipe.unet_channels), cross_dim=recipe.text_hidden,
                        image_patch=recipe.image_patch)  # fmt: skip
    return TinyUMM(cfg)


def with_plan(spec) -> str:
    """The reasoning form of a prompt: the prompt, then its explicit resolution as the plan."""
    return f"{spec.text} {THINK[0]} {spec.resolved} {THINK[1]}"


def spec_weights(specs, category_weights: dict[str, float] | None) -> list[float] | None:
    """Per-spec sampling weights from per-category ones (None: uniform, drawn exactly as before weights existed)."""
    if not category_weights:
        return None
    bad = {k: v for k, v in category_weights.items() if not (v >= 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"category weights must be finite numbers >= 0, got {bad}")
    weights = [float(category_weights.get(s.category, 1.0)) for s in specs]
    if not sum(weights) > 0:
        raise ValueError("category weights leave no prompt to draw")
    return weights


def batch_of(rng: random.Random, specs, n: int, plan_cond: float = 0.0, implicit=(), distractors: int | None = None,
             category_weights: dict[str, float] | None = None):
    """``n`` (text, image) rows; with ``plan_cond`` that share of rows is in plan form, drawn from the explicit
    and the implicit specs together (implicit prompts only ever appear with their plan). ``category_weights``
    reweights prompts by category; its ``implicit`` entry (default 1) weighs each implicit prompt among the
    plan-form rows, the only rows where they appear."""
    texts, images = [], []
    pool = list(specs) + list(implicit)
    weights = spec_weights(specs, category_weights)
    implicit_w = float((category_weights or {}).get("implicit", 1.0))
    pool_weights = None if weights is None else weights + [implicit_w] * len(implicit)
    while len(texts) < n:
        planned = plan_cond > 0 and rng.random() < plan_cond
        if weights is None:
            spec = rng.choice(pool) if planned else rng.choice(specs)
        else:
            spec = rng.choices(pool, pool_weights)[0] if planned else rng.choices(specs, weights)[0]
        scene = satisfying_scene(spec, rng, distractors)
        if scene is not None:
            texts.append(with_plan(spec) if planned else spec.text)
            images.append(render(scene, 32))
    return texts, to_tensor(images)


def refine_batch_of(rng: random.Random, specs, n: int, distractors: int | None = None):
    """``n`` refinement rows: the text ``prompt <think> edit </think>``, the near miss as the input image and
    the scene that satisfies the prompt as the target (``shapesworld.refine``)."""
    texts, inputs, targets = [], [], []
    if n == 0:
        return texts, torch.zeros(0, 3, 32, 32), torch.zeros(0, 3, 32, 32)
    while len(texts) < n:
        spec = rng.choice(specs)
        scene = satisfying_scene(spec, rng, distractors)
        if scene is None:
            continue
        broken, edit, _ = near_miss(spec, scene, rng)
        texts.append(f"{spec.text} {THINK[0]} {edit} {THINK[1]}")
        inputs.append(render(broken, 32))
        targets.append(render(scene, 32))
    return texts, to_tensor(inputs), to_tensor(targets)


@torch.no_grad()
def onpolicy_refine_pool(model: TinyUMM, tok, rng: random.Random, specs, recipe: UMMRecipe,
                         generator: torch.Generator) -> tuple[list[tuple], dict]:
    """Refinement rows from the model's own images: ``recipe.onpolicy_pool`` training prompts drawn uniformly
    (as the GRPO runs and their evaluations draw), one image each (``recipe.onpolicy_cfg``, 10 ODE steps, as the GRPO
    evaluation draws), judged by the oracle and repaired by one edit (``repair``); images no single edit
    repairs are left out, and images that need none are capped at ``recipe.onpolicy_keep`` of the rows. Returns
    the rows (text ``prompt <think> edit </think>``, input image, target) and the count of each kind."""
    was_training = model.training
    model.eval()
    chosen = [rng.choice(specs) for _ in range(recipe.onpolicy_pool)]
    rows, keep, kinds = [], [], {"unrepairable": 0}
    for i in range(0, len(chosen), 32):
        part = chosen[i : i + 32]
        ids, mask = tokenize(tok, [s.text for s in part], recipe.max_tokens)
        x = sample_images(model, model.encode(ids, mask), n_steps=10, shift=3.0, cfg_scale=recipe.onpolicy_cfg,
                          generator=generator).images  # fmt: skip
        for spec, xi, im in zip(part, x, to_images(x)):
            got = repair(spec, evaluate(im, spec).detections, rng)
            if got is None:
                kinds["unrepairable"] += 1
                continue
            scene, edit, kind = got
            kinds[kind] = kinds.get(kind, 0) + 1
            row = (f"{spec.text} {THINK[0]} {edit} {THINK[1]}", xi.clone(), to_tensor([render(scene, 32)])[0])
            (keep if kind == "keep" else rows).append(row)
    cap = int(recipe.onpolicy_keep / (1 - recipe.onpolicy_keep) * len(rows)) if recipe.onpolicy_keep < 1 else len(keep)
    rows += keep[:cap]
    model.train(was_training)
    return rows, kinds


def continuation_loss(model: TinyUMM, ids: torch.Tensor, mask: torch.Tensor, start_id: int,
                      image: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Cross-entropy of every real token after the first ``start_id`` (e.g. ``<think>``) of each row, given
    what comes before it (and the input image); the prompt itself is not trained."""
    lp = model.token_logprobs(ids, mask, image)  # column k predicts token k + 1
    after = (ids == start_id).long().cumsum(-1) > 0
    target = (after & ~(ids == start_id) & (mask == 1))[:, 1:]
    return -(lp * target).sum() / target.sum().clamp(min=1)


def foreground(x0: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) 1 where a pixel differs from the white background (with a one-pixel margin)."""
    fg = (x0 < 0.98).any(1, keepdim=True).float()
    return torch.nn.functional.max_pool2d(fg, 3, stride=1, padding=1)


def plan_lm_loss(model: TinyUMM, tok, rng: random.Random, specs, n: int, max_tokens: int) -> torch.Tensor:
    """Cross-entropy of the plan and the closing tag given ``prompt <think>`` (the prompt is not trained)."""
    chosen = [rng.choice(specs) for _ in range(n)]
    ids, mask = tokenize(tok, [with_plan(s) for s in chosen], max_tokens)
    labels = torch.full_like(ids, -100)
    think = tok.convert_tokens_to_ids(THINK[0])
    for i in range(n):
        start = int((ids[i] == think).nonzero()[0]) + 1
        labels[i, start:] = torch.where(mask[i, start:] == 1, ids[i, start:], torch.full_like(ids[i, start:], -100))
    return model.lm(input_ids=ids, attention_mask=mask, labels=labels).loss


class PlanVocab:
    """The plan vocabulary of a UMM tokenizer, in the shape ``trainer.reasoning.sample_plans`` asks for:
    left-padded ``prompt <think>`` ids (where plans and edits start), ``</think>`` as the stop token."""

    def __init__(self, tok, max_tokens: int):
        self.tok, self.max_tokens = tok, max_tokens
        self.think_close_id, self.pad_id = tok.convert_tokens_to_ids(THINK[1]), tok.pad_token_id

    def plan_prompts(self, texts: list[str]):
        return tokenize_left(self.tok, [f"{t} {THINK[0]}" for t in texts], self.max_tokens + 1)

    def decode(self, ids: torch.Tensor) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)


@torch.no_grad()
def refine_images(model: TinyUMM, tok, texts: list[str], images: torch.Tensor, *, max_tokens: int = 24,
                  edit_tokens: int = 12, temperature: float = 0.3, n_steps: int = 20, shift: float = 3.0,
                  cfg_scale: float = 3.0, generator: torch.Generator | None = None,
                  ) -> tuple[torch.Tensor, list[str]]:  # fmt: skip
    """One refinement pass: the model reads each prompt and its image, writes an edit after ``<think>``, and
    draws a new image conditioned on prompt, edit and the old image. Returns (new images, edit texts)."""
    from trainer.reasoning import sample_plans

    plans = sample_plans(model, PlanVocab(tok, max_tokens), texts, max_tokens=edit_tokens, temperature=temperature,
                         generator=generator, image=images)  # fmt: skip
    r = sample_images(model, model.encode(plans.ids, plans.mask, images), n_steps=n_steps, shift=shift,
                      cfg_scale=cfg_scale, generator=generator)  # fmt: skip
    return r.images, plans.texts


@torch.no_grad()
def evaluate_umm(model: TinyUMM, tok, recipe: UMMRecipe, specs) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(1234)
    ids, mask = tokenize(tok, [s.text for s in specs], recipe.max_tokens)
    out, first = [], []
    for i in range(0, len(specs), 32):
        ctx = model.encode(ids[i : i + 32], mask[i : i + 32])
        r = sample_images(model, ctx, n_steps=recipe.sample_steps, cfg_scale=recipe.cfg_scale, generator=g)
        out += to_images(r.images)
        first.append(r.images)
    verdicts = [evaluate(img, spec) for img, spec in zip(out, specs)]
    per: dict[str, list] = {}
    for v, s in zip(verdicts, specs):
        per.setdefault(s.category, []).append(v.correct)
    res = {"accuracy": sum(v.correct for v in verdicts) / len(verdicts),
           "atom_accuracy": sum(v.atom_accuracy for v in verdicts) / len(verdicts)}  # fmt: skip
    res.update({f"acc_{k}": sum(v) / len(v) for k, v in sorted(per.items())})
    errors = [e for v, s in zip(verdicts, specs) for e in count_errors(s, v.detections)]
    if errors:  # mean signed miscount of exact-count prompts: 0 unbiased, > 0 too many objects
        res["count_bias"] = sum(errors) / len(errors)
        res["count_abs_error"] = sum(map(abs, errors)) / len(errors)
    if recipe.refine_batch > 0:  # one refinement pass over the same images: what it adds
        refined = []
        for i, x in zip(range(0, len(specs), 32), first):
            new, _ = refine_images(model, tok, [s.text for s in specs[i : i + 32]], x, max_tokens=recipe.max_tokens,
                                   n_steps=recipe.sample_steps, cfg_scale=recipe.cfg_scale, generator=g)  # fmt: skip
            refined += to_images(new)
        res["refined_accuracy"] = sum(evaluate(im, s).correct for im, s in zip(refined, specs)) / len(specs)
    model.train()
    return {k: round(v, 4) for k, v in res.items()}, out


@torch.no_grad()
def plan_accuracy(model: TinyUMM, tok, split: str, max_tokens: int = 24, temperature: float = 0.3) -> float:
    """Share of the split's implicit prompts whose plan (seeded, at ``temperature``) is exactly the prompt's
    explicit resolution ("as many stars as a triangle has corners" -> "a photo of three stars")."""
    from trainer.reasoning import sample_plans

    specs = [p for p in prompts(split) if p.category == "implicit"]
    plans = sample_plans(model, PlanVocab(tok, max_tokens), [s.text for s in specs], max_tokens=max_tokens,
                         temperature=temperature, generator=torch.Generator().manual_seed(0))  # fmt: skip
    plain = [t.removeprefix(THINK[0]).removesuffix(THINK[1]).strip() for t in plans.texts]
    return sum(p == s.explicit for p, s in zip(plain, specs)) / len(specs)


def eval_prompts(recipe: UMMRecipe):
    held = [p for p in prompts("heldout") if p.category != "implicit"]
    return random.Random(99).sample(held, min(recipe.eval_prompts, len(held)))


def train_umm(recipe: UMMRecipe, run: Path, out: Path | None, resume: bool = False, progress: bool = True) -> dict:
    from tqdm import tqdm

    from checkpoint import load_extra

    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(usable_cores())  # respects taskset / cpusets: a pinned run does not oversubscribe
    tok = umm_tokenizer()
    model = build(recipe, tok)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    rng = random.Random(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    step, elapsed, last = 0, 0.0, {}
    warm_from = 0  # the step the learning-rate warm-up counts from
    if resume and latest_checkpoint(run) is not None:
        state = restore(run, model, opt, rng, grow=GROWABLE)
        step, elapsed, last = state["step"], state["elapsed"], state["last_eval"]
        _truncate_log(run / "log.jsonl", step)  # a crash may have logged steps past the checkpoint
        if not state["optimizer_restored"]:
            warm_from = step  # fresh AdamW moments: warm up again rather than take full-size first steps
            print(f"train-umm: {run} holds weights without optimizer state; "  # noqa: T201
                  f"AdamW restarts at step {step}")
        if state["grown"]:
            print(f"train-umm: new parts start fresh at step {step}: {state['grown']}")  # noqa: T201
        ema = load_extra(run, "ema")
        for k, v in model.state_dict().items():  # a grown part's EMA starts at its fresh weights
            ema.setdefault(k, v.detach().clone())
        gen.manual_seed(recipe.seed + step)
    (run / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    specs = [p for p in prompts("train") if p.category != "implicit"]
    implicit = [p for p in prompts("train") if p.category == "implicit"]
    with open(run / "recipe-history.jsonl", "a") as f:  # a resumed run may change the recipe: keep every version
        f.write(json.dumps({"from_step": step, **asdict(recipe)}) + "\n")
    planning = recipe.plan_cond > 0 or recipe.plan_lm_weight > 0
    max_tokens = recipe.plan_max_tokens if planning else recipe.max_tokens
    held = eval_prompts(recipe)
    budget = recipe.minutes * 60
    bar = tqdm(total=int(budget), initial=int(elapsed), unit="s", disable=not progress, desc="train-umm")
    last_eval_t = last_ckpt_t = elapsed
    log = open(run / "log.jsonl", "a")
    pool, pool_step = [], None  # on-policy refinement rows (recipe.onpolicy_refine), drawn at the first step
    model.train()
    while elapsed < budget and step < recipe.max_steps:
        t0 = time.perf_counter()
        if recipe.onpolicy_refine > 0 and (pool_step is None or step - pool_step >= recipe.onpolicy_every):
            live = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)  # the pool shows the mistakes of the model that gets shipped
            pool, kinds = onpolicy_refine_pool(model, tok, rng, specs, recipe,
                                               torch.Generator().manual_seed(recipe.seed + 7919 * (step + 1)))
            model.load_state_dict(live)
            pool_step = step
            log.write(json.dumps({"step": step, "t": round(elapsed, 1), "onpolicy_pool": kinds}) + "\n")
        texts, x0 = batch_of(rng, specs, recipe.batch, recipe.plan_cond, implicit, recipe.distractors,
                             recipe.category_weights)  # fmt: skip
        ids, mask = tokenize(tok, texts, max_tokens)
        ctx = model.encode(ids, mask)
        drop = torch.rand(recipe.batch, generator=gen) < recipe.drop_cond
        weight = 1 + recipe.fg_weight * foreground(x0) if recipe.fg_weight > 0 else None
        loss = model.flow_loss(x0, ctx, drop_cond=drop, generator=gen, weight=weight)
        lm_loss = None
        if recipe.plan_lm_weight > 0:
            lm_loss = plan_lm_loss(model, tok, rng, specs + implicit, recipe.plan_lm_batch, max_tokens)
            loss = loss + recipe.plan_lm_weight * lm_loss
        refine_loss = None
        if recipe.refine_batch > 0 or pool:  # refinement rows: same flow loss, conditioned on the input image too
            r_texts, r_in, r_x0 = refine_batch_of(rng, specs, recipe.refine_batch, recipe.distractors)
            if pool:  # the model's own mistakes, repaired by one edit
                picked = [rng.choice(pool) for _ in range(recipe.onpolicy_refine)]
                r_texts = r_texts + [p[0] for p in picked]
                r_in = torch.cat([r_in, torch.stack([p[1] for p in picked])])
                r_x0 = torch.cat([r_x0, torch.stack([p[2] for p in picked])])
            r_ids, r_mask = tokenize(tok, r_texts, max_tokens)
            r_drop = torch.rand(len(r_texts), generator=gen) < recipe.drop_cond
            r_weight = 1 + recipe.fg_weight * foreground(torch.minimum(r_x0, r_in)) if recipe.fg_weight > 0 else None
            refine_loss = model.flow_loss(r_x0, model.encode(r_ids, r_mask, r_in), drop_cond=r_drop, generator=gen,
                                          weight=r_weight)  # fmt: skip
            loss = loss + len(r_texts) / recipe.batch * refine_loss
            if recipe.refine_lm_weight > 0:
                edit_loss = continuation_loss(model, r_ids, r_mask, tok.convert_tokens_to_ids(THINK[0]), r_in)
                loss = loss + recipe.refine_lm_weight * edit_loss
        lr = recipe.lr * min(1.0, (step + 1 - warm_from) / recipe.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        d = min(recipe.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d) if v.is_floating_point() else ema[k].copy_(v)
        elapsed += time.perf_counter() - t0
        bar.update(int(elapsed) - bar.n)
        if step % 20 == 0:
            rec = {"step": step, "t": round(elapsed, 1), "loss": round(loss.item(), 5)}
            if lm_loss is not None:
                rec["plan_lm_loss"] = round(lm_loss.item(), 5)
            if refine_loss is not None:
                rec["refine_loss"] = round(refine_loss.item(), 5)
                if recipe.refine_lm_weight > 0:
                    rec["edit_lm_loss"] = round(edit_loss.item(), 5)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        done = elapsed >= budget or step >= recipe.max_steps
        if elapsed - last_eval_t >= recipe.eval_every_s or done:
            last = _eval_ema(model, ema, tok, recipe, held, run, step) | {"step": step}
            log.write(json.dumps({"step": step, "t": round(elapsed, 1), "eval": last}) + "\n")
            log.flush()
            bar.write(f"step {step} t={elapsed:.0f}s eval {last}")
            last_eval_t = elapsed
        if elapsed - last_ckpt_t >= recipe.checkpoint_every_s or done:
            checkpoint(run, model, opt, step, rng, elapsed, last, extra={"ema": ema})
            last_ckpt_t = elapsed
    bar.close()
    log.close()
    if out is not None:
        model.load_state_dict(ema)
        _save(model, tok, recipe, step, elapsed, last, out)
    return last


def _save(model: TinyUMM, tok, recipe: UMMRecipe, step: int, elapsed: float, last: dict, out: Path) -> None:
    model.save(out)
    tok.save_pretrained(out)
    card = {"recipe": asdict(recipe), "steps": step, "train_seconds": round(elapsed), "evaluation": last}
    (out / "umm_card.json").write_text(json.dumps(card, indent=2))


def export_umm(run: Path, out: Path, n_eval: int = 0, cfg_scale: float | None = None) -> dict:
    """The EMA weights of ``run``'s latest checkpoint as a model folder (what ``train-umm`` writes at the end
    of its budget), without stopping or touching the run; with ``n_eval`` > 0 the export is evaluated
    on that many held-out explicit prompts (the same seeded sample and noise as the run's evaluations), at the
    run's guidance scale or ``cfg_scale``, which is then recorded in the card."""
    from checkpoint import latest, load_extra

    ck = latest(run)
    if ck is None:
        raise FileNotFoundError(f"no complete checkpoint under {run}")
    recipe = UMMRecipe(**{k: tuple(v) if k == "unet_channels" else v
                          for k, v in json.loads((run / "recipe.json").read_text()).items()})  # fmt: skip
    state = json.loads((ck / "state.json").read_text())
    tok = umm_tokenizer()
    model = build(recipe, tok)
    model.load_state_dict(load_extra(run, "ema"))
    last = state.get("last_eval", {})
    if n_eval > 0:
        recipe.eval_prompts = n_eval
        recipe.cfg_scale = cfg_scale or recipe.cfg_scale
        last, images = evaluate_umm(model, tok, recipe, eval_prompts(recipe))
        last |= {"n_prompts": n_eval, "cfg_scale": recipe.cfg_scale, "sample_steps": recipe.sample_steps}
        if recipe.plan_lm_weight > 0:
            last |= {f"plan_exact_{split}": round(plan_accuracy(model, tok, split), 4)
                     for split in ("train", "heldout")}
        out.mkdir(parents=True, exist_ok=True)
        _grid(images[:48]).save(out / "samples.png")
    _save(model.eval(), tok, recipe, state["step"], state["elapsed"], last, out)
    return {"step": state["step"], "train_minutes": round(state["elapsed"] / 60, 1), **last}


def evaluate_folder(folder: str | Path, split: str, n_prompts: int, cfg_scales: tuple[float, ...],
                    n_steps: int = 10, seed: int = 99, progress: bool = False) -> dict:  # fmt: skip
    """A UMM model folder judged by the oracle on a seeded sample of ``n_prompts`` explicit prompts of ``split``
    at each guidance scale (same prompts and noises for every scale): how to pick the guidance on training
    prompts before an evaluation on held-out ones."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    pool = [p for p in prompts(split) if p.category != "implicit"]
    specs = random.Random(seed).sample(pool, min(n_prompts, len(pool)))
    model = TinyUMM.load(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    out: dict = {"model": str(folder), "split": split, "prompts": len(specs), "n_steps": n_steps}
    for w in tqdm(cfg_scales, desc="eval-umm (guidance scales)", disable=not progress):
        recipe = UMMRecipe(cfg_scale=w, sample_steps=n_steps, refine_batch=0)
        out[f"cfg_{w:g}"], _ = evaluate_umm(model, tok, recipe, specs)
    return out


def _eval_ema(model: TinyUMM, ema: dict, tok, recipe: UMMRecipe, held, run: Path, step: int) -> dict:
    live = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema)
    figures, images = evaluate_umm(model, tok, recipe, held)
    model.load_state_dict(live)
    grid = _grid(images[:48])
    grid.save(run / f"samples-{step:07d}.png")
    return figures


def _grid(images, cols: int = 8):
    from PIL import Image

    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (w + 2), rows * (h + 2)), (128, 128, 128))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * (w + 2), (i // cols) * (h + 2)))
    return sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST)


def _truncate_log(path: Path, upto: int) -> None:
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= upto]
        path.write_text("".join(ln + "\n" for ln in lines))
