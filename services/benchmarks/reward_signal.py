"""``alphagrpo bench reward-signal``: is there a GRPO signal before spending a training run on it?

GRPO learns only from differences *within* a prompt's group. This samples G images per prompt of a split
(``train``, what GRPO samples, by default; ``val`` for prompts an on-policy verifier fine-tune never saw)
from a UMM exactly as a rollout does (same sampler, SDE window, guidance), scores them through the real
services (decomposer + verifier over HTTP), judges them with the oracle, and reports, per reward variant:

* ``auc_<variant>``: over groups holding both oracle-correct and wrong images, the probability that a
  correct image out-scores a wrong one of the same group (0.5 = no signal, 1 = perfect ranking);
* ``spearman_<variant>``: the mean within-group Spearman correlation of the reward with the oracle's
  per-image atom accuracy (groups where either is constant are left out).

Variants are computed from the same per-question P(yes): ``geometric`` (DVReward's default, sqrt(semantic x
quality)), ``conjunctive`` (sqrt(product of semantic P(yes) x quality)), ``semantic`` (mean semantic P(yes)),
``gated`` (semantic mean with soft dependency gating), ``semantic_min`` and ``quality``. Also
``mixed_group_fraction`` (groups with at least one correct and one wrong image: where GRPO can learn at all) and the
oracle accuracy of the samples. A figure that cannot be computed (no mixed group) is null. The oracle judges here,
as in every evaluation; it never rewards training.
"""

from __future__ import annotations

import math
import random
import statistics

import torch

VARIANTS = ("geometric", "conjunctive", "semantic", "gated", "semantic_min", "quality")


def pair_auc(groups: list[list[tuple[float, bool]]]) -> tuple[float, int]:
    """P(score of a correct item > score of a wrong item of the same group), ties count half; (auc, pairs).
    NaN when no group holds both kinds."""
    wins = pairs = 0.0
    for g in groups:  # a NaN score (a failed reward) is left out, as training leaves it out
        good = [s for s, ok in g if ok and not math.isnan(s)]
        bad = [s for s, ok in g if not ok and not math.isnan(s)]
        for a in good:
            for b in bad:
                pairs += 1
                wins += 1.0 if a > b else 0.5 if a == b else 0.0
    return (wins / pairs if pairs else math.nan), int(pairs)


def within_spearman(groups: list[list[tuple[float, float]]]) -> float:
    """Mean Spearman correlation within groups; groups where either side is constant are skipped."""
    from scipy.stats import spearmanr

    rhos = []
    for g in groups:
        kept = [(a, b) for a, b in g if not (math.isnan(a) or math.isnan(b))]
        x, y = [a for a, _ in kept], [b for _, b in kept]
        if len(set(x)) > 1 and len(set(y)) > 1:
            rhos.append(float(spearmanr(x, y).statistic))
    return statistics.fmean(rhos) if rhos else math.nan


def variants(questions, scores: list[float]) -> dict[str, float]:
    from dvreward.aggregation import aggregate

    sem = [s for q, s in zip(questions, scores) if q.kind == "semantic" and not math.isnan(s)]
    plain = aggregate(questions, scores)
    return {"geometric": plain.reward, "conjunctive": aggregate(questions, scores, "conjunctive").reward,
            "semantic": plain.semantic, "quality": plain.quality,
            "gated": aggregate(questions, scores, gating=True).semantic,
            "semantic_min": min(sem) if sem else math.nan}  # fmt: skip


def run(model: str = "models/shapes-umm", verifier_model: str | None = None, n_prompts: int = 32, group: int = 8,
        n_steps: int = 10, cfg_scale: float = 5.0, seed: int = 7, split: str = "train",
        progress: bool = True) -> dict:  # fmt: skip
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from dvreward.adapters import to_base64_png
    from dvreward.client import VerifierClient
    from dvreward.schemas import RewardItem
    from recipes.umm import to_images, tokenize
    from serving.launch import start_decomposer, start_verifier
    from shapesworld.oracle import evaluate
    from shapesworld.prompts import CATEGORIES, prompts
    from trainer.policies.tiny_umm import TinyUMM
    from trainer.rollout import sample_images
    from verifier.models import resolve_model_path

    policy = TinyUMM.load(model).eval()
    tok = AutoTokenizer.from_pretrained(model)
    explicit = [c for c in CATEGORIES if c != "implicit"]
    pool = [p for p in prompts(split) if p.category in explicit]
    chosen = random.Random(seed).sample(pool, min(n_prompts, len(pool)))
    n_prompts = len(chosen)
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    vpath = str(resolve_model_path(verifier_model))
    rows: list[dict] = []
    dec, durl = start_decomposer()
    with dec:
        ver, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl, "VERIFIER_HF_MODEL_PATH": vpath})
        with ver:
            client = VerifierClient(vurl)
            per_call = max(1, 64 // group)  # images per request within the verifier's default limit
            for i in tqdm(range(0, n_prompts, per_call), disable=not progress, desc="reward-signal"):
                specs = chosen[i : i + per_call]
                texts = [s.text for s in specs for _ in range(group)]
                with torch.no_grad():
                    r = sample_images(policy, policy.encode(*tokenize(tok, texts, 24)), n_steps=n_steps, shift=3.0,
                                      window_start=rng.randrange(max(1, n_steps // 2)), window_len=2,
                                      noise_level=0.7, cfg_scale=cfg_scale, generator=g)  # fmt: skip
                images = to_images(r.images)
                items = [RewardItem(prompt=t, image=to_base64_png(im)) for t, im in zip(texts, images)]
                results = client.reward(items).results
                for j, (im, res) in enumerate(zip(images, results)):
                    verdict = evaluate(im, specs[j // group])
                    atoms = list(verdict.atoms.values())
                    rows.append({"group": i + j // group, "correct": verdict.correct,
                                 "atom_acc": sum(atoms) / len(atoms) if atoms else math.nan,
                                 **variants(res.questions, [s.value for s in res.scores])})  # fmt: skip
            client.close()
    by: dict[int, list[dict]] = {}
    for row in rows:
        by.setdefault(row["group"], []).append(row)
    mixed = [g_ for g_ in by.values() if 0 < sum(r["correct"] for r in g_) < len(g_)]
    out: dict = {"model": model, "verifier": vpath, "split": split, "prompts": n_prompts, "group": group,
                 "images": len(rows),
                 "oracle_accuracy": round(sum(r["correct"] for r in rows) / len(rows), 4),
                 "mixed_group_fraction": round(len(mixed) / len(by), 4)}  # fmt: skip
    for v in VARIANTS:
        auc, pairs = pair_auc([[(r[v], r["correct"]) for r in g_] for g_ in mixed])
        out[f"auc_{v}"] = round(auc, 4)
        out[f"spearman_{v}"] = round(within_spearman([[(r[v], r["atom_acc"]) for r in g_] for g_ in by.values()]), 4)
    out["pairs"] = pairs
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}  # strict JSON


