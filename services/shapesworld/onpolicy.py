"""On-policy verifier data: a generator's own rollouts, asked DVReward's questions, labelled by the oracle.

The shipped verifier learned from renders and their degradations. A 45-minute GRPO run showed it
over-crediting this generator's images: the held-out reward of oracle-*wrong* images rose 0.748 -> 0.796
while accuracy did not move (BENCHMARKS.md). The fix of RLHF practice is a reward-model refresh on the
policy's own samples. ``label_rollouts`` samples a UMM exactly as a GRPO rollout does (same sampler, SDE
window, guidance) on *training* prompts (and on *val* prompts, for validation only), decomposes each prompt
with the ``rules`` backend (the questions the reward service asks) and labels every semantic question with
the oracle's truth of its atom; ``OnPolicyPool`` serves the labels to ``train-verifier --onpolicy`` as
answer-balanced examples.

What this departs from, said plainly: the oracle, which judges every evaluation, here stands in for the human
labellers of a reward-model refresh, so a verifier fine-tuned on these labels moves toward the judge. It
never sees a held-out prompt (GRPO's evaluation split is never sampled), and it stays a learned model
answering from pixels. Quality questions have no label on generated images and are left out (the synthetic
share of each fine-tuning batch keeps them trained).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch

from shapesworld.questions import Example
from trainer.config import RolloutConfig

# atom (category, detail) -> the verifier recipe's question kind
_KIND = {("entity", "whole"): "exist", ("count", "exactly"): "count", ("count", "fewer_than"): "fewer",
         ("attribute", "color"): "colour", ("attribute", "size"): "size",
         ("relation", "spatial"): "spatial"}  # fmt: skip


def kind_of(atom: tuple[str, ...]) -> str | None:
    """The recipe's question kind for an atom key, or None when the oracle cannot judge it."""
    return _KIND.get(tuple(atom[:2]))


def world_decomposer():
    """The ``rules`` backend with this world's knowledge base: the decomposer the reward service runs."""
    from decomposer.backends.rules import RulesBackend
    from decomposer.lexicon import Lexicon
    from shapesworld.prompts import lexicon_extension

    return RulesBackend(Lexicon(**lexicon_extension())).decompose_one


def labelled_questions(prompt: str, detections, decompose) -> list[dict]:
    """DVReward's semantic questions for ``prompt``, each with the oracle's answer on ``detections``."""
    from shapesworld.oracle import atom_truth

    out = []
    for q in decompose(prompt).questions:
        if q.kind != "semantic" or q.atom is None:
            continue
        atom = (str(q.atom.category), q.atom.detail, *q.atom.args)
        kind = kind_of(atom)
        if kind is not None:
            out.append({"text": q.text, "kind": kind, "atom": list(atom), "answer": atom_truth(atom, detections)})
    return out


def check_request(per_prompt: dict[str, int], max_prompts: int | None = None) -> None:
    """ValueError naming the bad field: only train / val prompts, at least one rollout each (the fine-tune
    validates on val), a positive prompt sample."""
    if "heldout" in per_prompt:
        raise ValueError("the held-out split is GRPO's evaluation set: never label its rollouts")
    for split, k in per_prompt.items():
        if split not in ("train", "val"):
            raise ValueError(f"split {split!r}: label train or val prompts")
        if k < 1:
            raise ValueError(f"{split} rollouts per prompt must be >= 1 (got {k}); the fine-tune validates on val")
    if max_prompts is not None and max_prompts < 1:
        raise ValueError(f"max_prompts must be >= 1 (got {max_prompts})")


def label_rollouts(model: str, out: Path, per_prompt: dict[str, int], rollout: RolloutConfig, *, seed: int = 0,
                   batch: int = 32, max_prompts: int | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Sample ``per_prompt[split]`` rollouts of every explicit prompt of each split (or of a seeded sample
    of ``max_prompts`` of them) with the sampler settings of a GRPO config's ``rollout`` section (the window
    start drawn as the trainer draws it), label them, write ``out/images/*.png`` and ``out/labels.jsonl``;
    returns a summary (per split: images, oracle accuracy, questions and share of "yes" per kind)."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from recipes.umm import to_images, tokenize
    from shapesworld.oracle import evaluate
    from shapesworld.prompts import prompts
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.rollout import sample_images

    check_request(per_prompt, max_prompts)
    policy = TinyUMM.load(model).eval()
    tok = AutoTokenizer.from_pretrained(model)
    decompose = world_decomposer()
    rng, g, ro = random.Random(seed), torch.Generator().manual_seed(seed), rollout
    jobs = []
    for split, k in per_prompt.items():
        specs = [p for p in prompts(split) if p.category != "implicit"]
        if max_prompts is not None and len(specs) > max_prompts:
            specs = random.Random(seed).sample(specs, max_prompts)
        jobs += [(split, p) for p in specs for _ in range(k)]
    (out / "images").mkdir(parents=True, exist_ok=True)
    tmp = out / "labels.jsonl.tmp"
    rows: list[dict] = []
    with open(tmp, "w") as f:
        for i in tqdm(range(0, len(jobs), batch), disable=not progress, desc="label-rollouts", unit="batch"):
            chunk = jobs[i : i + batch]
            with torch.no_grad():
                ctx = policy.encode(*tokenize(tok, [p.text for _, p in chunk], 24))
                r = sample_images(policy, ctx, n_steps=ro.n_steps, shift=ro.shift,
                                  window_start=rng.randint(*ro.window_range),
                                  window_len=ro.window_len, noise_level=ro.noise_level, cfg_scale=ro.cfg_scale,
                                  generator=g, noise_block=ro.noise_block)  # fmt: skip
            for j, ((split, spec), im) in enumerate(zip(chunk, to_images(r.images))):
                name = f"images/{i + j:06d}.png"
                im.save(out / name)
                verdict = evaluate(im, spec)
                questions = labelled_questions(spec.text, verdict.detections, decompose)
                row = {"split": split, "prompt": spec.text, "category": spec.category, "image": name,
                       "correct": verdict.correct, "questions": questions}  # fmt: skip
                rows.append(row)
                f.write(json.dumps(row) + "\n")
    tmp.replace(out / "labels.jsonl")
    summary = {"model": model, "seed": seed, "rollout": asdict(ro), "splits": {}}
    for split in per_prompt:
        mine = [r for r in rows if r["split"] == split]
        qs = [q for r in mine for q in r["questions"]]
        n, yes = Counter(q["kind"] for q in qs), Counter(q["kind"] for q in qs if q["answer"])
        accuracy = sum(r["correct"] for r in mine) / max(1, len(mine))
        summary["splits"][split] = {"images": len(mine), "oracle_accuracy": round(accuracy, 4),
                                    "questions": {k: n[k] for k in sorted(n)},
                                    "yes_share": {k: round(yes[k] / n[k], 3) for k in sorted(n)}}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


class OnPolicyPool:
    """Labelled rollouts of one split, served as verifier examples.

    ``draw`` picks a question kind with weight sqrt(its count) (rare kinds, e.g. a dozen size questions, are
    neither drowned nor repeated into memorisation), then the answer 50/50 where both occur: the raw labels
    are skewed (a weak generator's relations are mostly "no", its existence questions mostly "yes").
    ``examples`` gives every labelled question once, in the natural proportions, for validation.
    """

    def __init__(self, root: Path, split: str):
        from PIL import Image

        labels = root / "labels.jsonl"
        if not labels.exists():
            raise FileNotFoundError(f"{labels} not found: make it with alphagrpo shapes label-rollouts --out {root}")
        self.buckets: dict[tuple[str, bool], list[tuple[int, dict]]] = {}
        self.images: list = []
        for line in labels.read_text().splitlines():
            row = json.loads(line)
            if row["split"] != split:
                continue
            with Image.open(root / row["image"]) as im:
                self.images.append(im.convert("RGB"))
            for q in row["questions"]:
                self.buckets.setdefault((q["kind"], q["answer"]), []).append((len(self.images) - 1, q))
        if not self.buckets:
            raise ValueError(f"{root / 'labels.jsonl'} holds no labelled {split} questions")
        self.kinds = sorted({k for k, _ in self.buckets})
        counts = [sum(len(self.buckets.get((k, a), [])) for a in (True, False)) for k in self.kinds]
        self.kind_weights = [math.sqrt(n) for n in counts]

    def __len__(self) -> int:
        return sum(len(v) for v in self.buckets.values())

    def _example(self, item: tuple[int, dict]) -> Example:
        i, q = item
        return Example(self.images[i], q["text"], q["answer"], q["kind"], atom=tuple(q["atom"]))

    def draw(self, rng: random.Random) -> Example:
        kind = rng.choices(self.kinds, self.kind_weights)[0]
        answers = [a for a in (True, False) if (kind, a) in self.buckets]
        return self._example(rng.choice(self.buckets[(kind, rng.choice(answers))]))

    def examples(self, limit: int | None = None, seed: int = 0) -> list[Example]:
        items = [it for key in sorted(self.buckets) for it in self.buckets[key]]
        if limit is not None and len(items) > limit:
            items = random.Random(seed).sample(items, limit)
        return [self._example(it) for it in items]
