"""Pairwise comparison of two evaluations over the same images' prompts and noise (``alphagrpo
compare-evals``): the change in oracle accuracy with its paired standard error, per category, and how many
images turned right or wrong. Pairing removes the prompt-to-prompt variance that an unpaired standard error
carries, so a smaller change can be told from noise on the same 500 prompts.

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
    return [{"prompt": r["prompt"], "category": r["category"], "correct": int(r["correct"]), "reward": float(r["reward"]),
             "atoms": float(r["atom_accuracy"]) if r.get("atom_accuracy") not in (None, "") else None}
            for r in rows]  # fmt: skip


def paired_change(before: list[float], after: list[float]) -> dict:
    """Mean of after - before and its standard error over pairs: sqrt(var(d) / n), var with ddof 1."""
    if len(before) != len(after) or not before:
        raise ValueError(f"{len(before)} and {len(after)} verdicts: need the same, non-zero number")
    d = [b - a for a, b in zip(before, after)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    return {"n": n, "before": sum(before) / n, "after": sum(after) / n, "change": mean,
            "change_stderr": math.sqrt(var / n), "turned_right": d.count(1), "turned_wrong": d.count(-1)}  # fmt: skip


def compare(a: str | Path, b: str | Path) -> dict:
    """Two verdict files of the same evaluation (same prompts in the same order): overall and per category."""
    ra, rb = read_verdicts(a), read_verdicts(b)
    if [r["prompt"] for r in ra] != [r["prompt"] for r in rb]:
        raise ValueError(f"{a} and {b} do not list the same prompts in the same order: not the same evaluation")
    out = {k: round(v, 4) if isinstance(v, float) else v
           for k, v in paired_change([r["correct"] for r in ra], [r["correct"] for r in rb]).items()}  # fmt: skip
    rewards = [(x["reward"], y["reward"]) for x, y in zip(ra, rb) if not (math.isnan(x["reward"]) or math.isnan(y["reward"]))]
    if rewards:
        out["verifier_reward_before"] = round(sum(x for x, _ in rewards) / len(rewards), 4)
        out["verifier_reward_after"] = round(sum(y for _, y in rewards) / len(rewards), 4)
    if all(r["atoms"] is not None for r in ra + rb):  # partial credit, paired the same way
        c = paired_change([r["atoms"] for r in ra], [r["atoms"] for r in rb])
        out |= {"atoms_before": round(c["before"], 4), "atoms_after": round(c["after"], 4),
                "atoms_change": round(c["change"], 4), "atoms_change_stderr": round(c["change_stderr"], 4)}  # fmt: skip
    for cat in sorted({r["category"] for r in ra}):
        idx = [i for i, r in enumerate(ra) if r["category"] == cat]
        c = paired_change([ra[i]["correct"] for i in idx], [rb[i]["correct"] for i in idx])
        out[f"change_{cat}"] = round(c["change"], 4)
        out[f"n_{cat}"] = c["n"]
    return out
