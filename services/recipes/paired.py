"""Pairwise comparison of two evaluations over the same images' prompts and noise (``alphagrpo
compare-evals``): the change in oracle accuracy with its paired standard error, per category, and how many
images turned right or wrong. Pairing removes the prompt-to-prompt variance that an unpaired standard error
carries, so a smaller change can be told from noise on the same 500 prompts. When an evaluation draws several
images per prompt (``eval.repeats``), those images are not independent draws: standard errors are then
clustered by prompt (``clustered_stderr``), which for one image per prompt is the plain one.

Input: the ``eval-<step>-verdicts.tsv`` files the ShapesTask evaluation writes (prompt, category, correct,
reward per image, in a fixed order; newer files add the image's oracle atom accuracy, compared too).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_verdicts(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [{"prompt": r["prompt"], "category": r["category"], "correct": int(r["correct"]),
             "reward": float(r["reward"]),
             "atoms": float(r["atom_accuracy"]) if r.get("atom_accuracy") not in (None, "") else None}
            for r in rows]  # fmt: skip


def clustered_stderr(values: list[float], groups: list | None = None) -> float:
    """Standard error of the mean of ``values``, clustered by ``groups`` (cluster-robust, with the G / (G - 1)
    small-sample factor): sqrt(G / (G - 1) * sum_g S_g^2) / n, S_g the sum of a cluster's deviations from the
    mean. With one value per cluster (or no groups) this is sqrt(var(values) / n), var with ddof 1; with equal
    clusters it is the standard error of the cluster means."""
    n = len(values)
    groups = list(range(n)) if groups is None else groups
    if len(groups) != n:
        raise ValueError(f"{n} values and {len(groups)} group labels")
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    sums: dict = {}
    for v, g in zip(values, groups):
        sums[g] = sums.get(g, 0.0) + (v - mean)
    n_clusters = len(sums)
    if n_clusters < 2:
        return 0.0
    return math.sqrt(n_clusters / (n_clusters - 1) * sum(x * x for x in sums.values())) / n


def paired_change(before: list[float], after: list[float], groups: list | None = None) -> dict:
    """Mean of after - before and its standard error over pairs: sqrt(var(d) / n), var with ddof 1, or, with
    ``groups`` (the prompt of each pair, when prompts repeat), clustered by group."""
    if len(before) != len(after) or not before:
        raise ValueError(f"{len(before)} and {len(after)} verdicts: need the same, non-zero number")
    d = [b - a for a, b in zip(before, after)]
    n = len(d)
    out = {"n": n, "before": sum(before) / n, "after": sum(after) / n, "change": sum(d) / n,
           "change_stderr": clustered_stderr(d, groups), "turned_right": d.count(1),
           "turned_wrong": d.count(-1)}  # fmt: skip
    if groups is not None and len(set(groups)) < n:
        out["n_clusters"] = len(set(groups))
    return out


def compare(a: str | Path, b: str | Path) -> dict:
    """Two verdict files of the same evaluation (same prompts in the same order): overall and per category."""
    ra, rb = read_verdicts(a), read_verdicts(b)
    if [r["prompt"] for r in ra] != [r["prompt"] for r in rb]:
        raise ValueError(f"{a} and {b} do not list the same prompts in the same order: not the same evaluation")
    groups = [r["prompt"] for r in ra]  # repeated prompts (eval.repeats): clustered standard errors
    out = {k: round(v, 4) if isinstance(v, float) else v
           for k, v in paired_change([r["correct"] for r in ra], [r["correct"] for r in rb],
                                     groups).items()}  # fmt: skip
    rewards = [(x["reward"], y["reward"]) for x, y in zip(ra, rb)
               if not (math.isnan(x["reward"]) or math.isnan(y["reward"]))]
    if rewards:
        out["verifier_reward_before"] = round(sum(x for x, _ in rewards) / len(rewards), 4)
        out["verifier_reward_after"] = round(sum(y for _, y in rewards) / len(rewards), 4)
    if all(r["atoms"] is not None for r in ra + rb):  # partial credit, paired the same way
        c = paired_change([r["atoms"] for r in ra], [r["atoms"] for r in rb], groups)
        out |= {"atoms_before": round(c["before"], 4), "atoms_after": round(c["after"], 4),
                "atoms_change": round(c["change"], 4), "atoms_change_stderr": round(c["change_stderr"], 4)}  # fmt: skip
    for cat in sorted({r["category"] for r in ra}):
        idx = [i for i, r in enumerate(ra) if r["category"] == cat]
        c = paired_change([ra[i]["correct"] for i in idx], [rb[i]["correct"] for i in idx], [groups[i] for i in idx])
        out[f"change_{cat}"] = round(c["change"], 4)
        out[f"n_{cat}"] = c["n"]
    return out
