"""ShapesWorld wired into the generic GRPO trainer (``alphagrpo train --config configs/shapes-t2i.yaml``).

``ShapesTask`` gives the trainer its prompts (explicit training-split prompts), the UMM's tokenizer, and an
evaluation that logs, side by side, the verifier's DVReward and the oracle's GenEval accuracy on fixed
held-out prompts with fixed noise: training is rewarded by the verifier only, so reward hacking would show
as the two diverging. Each evaluation also saves an image grid.

For reasoning text-to-image (``reason`` given) the task also supplies the plan vocabulary (left-padded
``prompt <think>`` ids, ``</think>`` as the stop token), and its evaluation plans before drawing (seeded, at
the eval temperature), logs the share of well-formed plans and writes the plans beside the grid. Prompt
categories are configurable: the reasoning runs train and evaluate on implicit prompts, whose held-out
accuracy the oracle judges against their explicit resolution. With ``reflect`` the evaluation also runs one
refinement pass over its images (the model reads each image, writes an edit, redraws) and logs the refined
images' oracle accuracy and verifier reward beside the first ones, with the edits written down, and the
inference-time rule's figures (``reflect1_*``: each refined image kept only where its DVReward beats the first
image's, as ``alphagrpo generate --reflect 1`` does; ``reflect1_kept`` is how often). Every
evaluation also writes each image's verdict and reward (``eval-<step>-verdicts.tsv``): evaluations share
prompts and noise, so two of them can be compared pairwise (``alphagrpo compare-evals``).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch

from recipes.paired import clustered_stderr
from recipes.umm import THINK, PlanVocab, _grid, refine_images, to_images, tokenize
from shapesworld.oracle import evaluate
from shapesworld.prompts import CATEGORIES, prompts
from trainer.config import ReasonConfig, ReflectConfig, TrainConfig
from trainer.reasoning import sample_plans
from trainer.reflection import keep_refinement
from trainer.reward import RewardFetcher
from trainer.rollout import sample_images


def plan_resolution_accuracy(plans: list[str], specs: list) -> float:
    """Share of plans that state the prompt's explicit resolution word for word (``<think>a photo of three red
    circles</think>`` for "as many red circles as a triangle has corners"): did the text side infer what the
    user meant, whatever the image then shows. For prompts without a resolution the prompt itself counts; a plan
    without both tags (cut off, malformed) never counts."""
    if not plans:
        raise ValueError("no plans to judge")
    return round(sum(plan_hits(plans, specs)) / len(plans), 4)


def plan_hits(plans: list[str], specs: list) -> list[bool]:
    """Per plan: does it state its prompt's explicit resolution word for word (``plan_resolution_accuracy``)."""
    if len(plans) != len(specs):
        raise ValueError(f"{len(plans)} plans for {len(specs)} prompts")

    def stated(t: str, want: str) -> bool:
        t = t.strip()
        if not (t.startswith(THINK[0]) and t.endswith(THINK[1])):
            return False
        return " ".join(t[len(THINK[0]) : -len(THINK[1])].split()) == " ".join(want.split())

    return [stated(t, s.resolved) for t, s in zip(plans, specs)]


def build_fetcher(cfg: TrainConfig, api_key: str | None = None):
    """The reward source a config names: DVReward (or the holistic question) from the verifier at
    ``reward.verifier_url``, or with ``reward.mode: oracle`` the ShapesWorld oracle (a diagnostic ceiling that
    needs no services)."""
    if cfg.reward.mode == "oracle":
        from shapesworld.oracle_reward import OracleRewards

        return OracleRewards(signal=cfg.reward.oracle_signal)
    r = cfg.reward
    return RewardFetcher(r.verifier_url, aggregation=r.aggregation, patience_s=r.patience_s,
                         holistic=r.mode == "holistic", api_key=api_key, max_items=r.max_items_per_request,
                         incomplete=r.incomplete, signal=r.signal)  # fmt: skip


class ShapesTask(PlanVocab):
    def __init__(self, tokenizer, fetcher: RewardFetcher, run_dir: str | Path, *, eval_prompts: int = 100,
                 eval_seed: int = 1234, n_steps: int = 12, shift: float = 3.0, cfg_scale: float = 3.0,
                 max_tokens: int = 24, train_categories: list[str] | None = None,
                 eval_categories: list[str] | None = None, reason: ReasonConfig | None = None,
                 reflect: ReflectConfig | None = None, eval_repeats: int = 1):  # fmt: skip
        if (reason or reflect) and any(t not in tokenizer.get_vocab() for t in THINK):
            raise ValueError(f"planning and refinement need a model whose tokenizer has {THINK} "
                             "(train-umm --plan-cond)")
        super().__init__(tokenizer, max_tokens)
        self.fetcher, self.run = fetcher, Path(run_dir)
        explicit = [c for c in CATEGORIES if c != "implicit"]
        train_cats, eval_cats = set(train_categories or explicit), set(eval_categories or explicit)
        unknown = sorted((train_cats | eval_cats) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown prompt categories {unknown}; known: {list(CATEGORIES)}")
        self.train_specs = [p.text for p in prompts("train") if p.category in train_cats]
        held = [p for p in prompts("heldout") if p.category in eval_cats]
        self.eval_specs = random.Random(eval_seed).sample(held, min(eval_prompts, len(held))) * eval_repeats
        self.n_eval_prompts = len(self.eval_specs) // eval_repeats
        self.eval_seed, self.n_steps, self.shift, self.cfg_scale = eval_seed, n_steps, shift, cfg_scale
        self.reason, self.reflect = reason, reflect

    def train_prompts(self, rng: random.Random, n: int) -> list[str]:
        return rng.sample(self.train_specs, n)

    def tokenize(self, texts: list[str]):
        return tokenize(self.tok, texts, self.max_tokens)

    def to_images(self, x: torch.Tensor) -> list:
        return to_images(x)

    @torch.no_grad()
    def evaluate(self, policy, step: int) -> dict:
        g = torch.Generator().manual_seed(self.eval_seed)
        # plans draw from their own stream, so a reasoning run's images get the same noise, row for row, as the
        # evaluation of the same prompts without reasoning: reason-vs-baseline compares pair by image, not by
        # prompt only
        g_text = torch.Generator().manual_seed(self.eval_seed + 1)
        first, plans = [], []
        for i in range(0, len(self.eval_specs), 32):
            texts = [s.text for s in self.eval_specs[i : i + 32]]
            if self.reason is not None:
                p = sample_plans(policy, self, texts, max_tokens=self.reason.max_plan_tokens,
                                 temperature=self.reason.eval_temperature, generator=g_text)  # fmt: skip
                ctx = policy.encode(p.ids, p.mask)
                plans = plans + [(p.texts[j], float(p.format[j])) for j in range(len(texts))]
            else:
                ctx = policy.encode(*self.tokenize(texts))
            first.append(sample_images(policy, ctx, n_steps=self.n_steps, shift=self.shift, cfg_scale=self.cfg_scale,
                                       generator=g).images)  # fmt: skip
        out, verdicts, r0 = self._judge(torch.cat(first), step, "")
        if plans:
            out["format_rate"] = round(sum(f for _, f in plans) / len(plans), 4)
            out["plan_resolution_accuracy"] = plan_resolution_accuracy([t for t, _ in plans], self.eval_specs)
            texts = [t for t, _ in plans]
            self._write_texts(step, "plans", texts, verdicts, plan_hits(texts, self.eval_specs))
        if self.reflect is not None:  # one refinement pass over the same images: what it adds
            refined, edits = [], []
            for i, x in zip(range(0, len(self.eval_specs), 32), first):
                new, e = refine_images(policy, self.tok, [s.text for s in self.eval_specs[i : i + 32]], x,
                                       max_tokens=self.max_tokens, edit_tokens=self.reflect.max_edit_tokens,
                                       temperature=self.reflect.eval_temperature, n_steps=self.n_steps,
                                       shift=self.shift,
                                       cfg_scale=self.cfg_scale, generator=g)  # fmt: skip
                refined.append(new)
                edits += e
            x0, x1 = torch.cat(first), torch.cat(refined)
            after, verdicts, r1 = self._judge(x1, step, "-refined")
            out |= {f"refined_{k}": v for k, v in after.items() if k in ("oracle_accuracy", "verifier_reward")}
            self._write_texts(step, "edits", edits, verdicts)
            # `generate --reflect 1`: the refined image is kept only where DVReward says it is better
            keep = [keep_refinement(a, b, self.reflect.margin) for a, b in zip(r0, r1)]
            kept = torch.where(torch.tensor(keep).view(-1, 1, 1, 1), x1, x0)
            gated, _, _ = self._judge(kept, step, "-reflect1", [b if k else a for a, b, k in zip(r0, r1, keep)])
            out |= {f"reflect1_{k}": v for k, v in gated.items() if k in ("oracle_accuracy", "oracle_atom_accuracy")}
            out["reflect1_kept"] = round(sum(keep) / len(keep), 4)
        return out

    def _judge(self, x: torch.Tensor, step: int, suffix: str,
               rewards: list[float] | None = None) -> tuple[dict, list[bool], list[float]]:  # fmt: skip
        """Oracle accuracy (overall and per category) and verifier reward of one image per eval row (fetched
        unless given); a grid and the per-image verdicts."""
        images = to_images(x)
        judged = [evaluate(im, s) for im, s in zip(images, self.eval_specs)]
        verdicts = [j.correct for j in judged]
        atoms = [j.atom_accuracy for j in judged]  # partial credit: the share of the prompt's gold atoms that hold
        if rewards is None:
            rewards = self.fetcher.wait(self.fetcher.submit([s.text for s in self.eval_specs], images)).values
        valid = [r for r in rewards if not math.isnan(r)]
        acc = sum(verdicts) / len(verdicts)
        self.run.mkdir(parents=True, exist_ok=True)
        _grid(images[:48]).save(self.run / f"eval-{step:06d}{suffix}.png")
        # per image, so two evaluations (same prompts, same noise) can be compared pairwise
        lines = [f"{s.text}\t{s.category}\t{int(v)}\t{r:.4f}\t{a:.4f}"
                 for s, v, r, a in zip(self.eval_specs, verdicts, rewards, atoms)]  # fmt: skip
        (self.run / f"eval-{step:06d}{suffix}-verdicts.tsv").write_text(
            "prompt\tcategory\tcorrect\treward\tatom_accuracy\n" + "\n".join(lines) + "\n")
        out = {
            "oracle_accuracy": round(acc, 4),
            # clustered by prompt: with eval.repeats the images of one prompt are not independent draws
            "oracle_accuracy_stderr": round(clustered_stderr([float(v) for v in verdicts],
                                                             [s.text for s in self.eval_specs]), 4),
            "oracle_atom_accuracy": round(sum(atoms) / len(atoms), 4),
            "verifier_reward": round(sum(valid) / len(valid), 4) if valid else None,
            "n_prompts": self.n_eval_prompts,
        }
        if len(verdicts) != self.n_eval_prompts:
            out["n_images"] = len(verdicts)  # repeats: the stderr above is over images
        per: dict[str, list[bool]] = {}
        for v, s in zip(verdicts, self.eval_specs):
            per.setdefault(s.category, []).append(v)
        return out | {f"acc_{k}": round(sum(v) / len(v), 4) for k, v in sorted(per.items())}, verdicts, rewards

    def _write_texts(self, step: int, name: str, texts: list[str], verdicts: list[bool],
                     stated: list[bool] | None = None) -> None:
        """One row per image: prompt, the text written before it, the image's oracle verdict (ok / wrong) and,
        for plans, whether the plan states the prompt's resolution (1 / 0)."""
        extra = [f"\t{int(h)}" for h in stated] if stated is not None else [""] * len(texts)
        lines = [f"{s.text}\t{t}\t{'ok' if v else 'wrong'}{x}"
                 for s, t, v, x in zip(self.eval_specs, texts, verdicts, extra)]
        (self.run / f"eval-{step:06d}-{name}.tsv").write_text("\n".join(lines) + "\n")
