"""Turning per-question P(yes) into one reward: pure functions, no I/O, no torch.

Methods (``AggregationMethod``):
  * ``geometric`` (the paper's default): R = sqrt(S_sem * S_qual), S_* the mean P(yes) of each kind;
  * ``mean``: R = (S_sem + S_qual) / 2;
  * ``pooled``: R = mean P(yes) over all questions together;
  * ``conjunctive`` (ours, not the paper's): R = sqrt(P_all * S_qual), P_all the *product* of the semantic
    P(yes), i.e. P(every semantic question holds) if the answers were independent. The three above give
    partial credit (an image with 4 of 5 facts right scores near one with 5 of 5); this one is AND-like, as
    GenEval's verdict is (every atom must hold), while quality stays a mean.
Soft dependency gating (optional, DSG-style but soft): a child's score is multiplied by its parent's
gated score, so "is the apple red?" cannot score high when "is there an apple?" scored low.

Defined behaviour where the reference crashes or guesses:
  * no questions at all -> reward NaN, reason "no questions";
  * one kind absent (say, no quality questions) -> R is the other kind's mean for every method (the
    reference would treat the missing side as 1.0, which inflates rewards);
  * a failed question is NaN with a reason, never 0. ``nan_policy="exclude"`` drops it from the means
    (a gated child of a failed parent fails too); a kind whose every question failed makes the reward
    NaN. ``nan_policy="fail"`` makes the reward NaN as soon as any question failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from dvreward.schemas import AggregationMethod, NanPolicy, Question
from dvreward.tags import QuestionKind


@dataclass(frozen=True)
class Aggregate:
    reward: float
    semantic: float
    quality: float
    reason: str | None = None
    n_failed: int = 0


def nanmean(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else math.nan


def _product(values: Sequence[float]) -> float:
    """Product of the non-NaN values (the caller has made sure there is at least one)."""
    return math.prod(v for v in values if not math.isnan(v))


def gate_scores(questions: Sequence[Question], scores: Sequence[float]) -> list[float]:
    """Soft dependency gating: score(child) * gated score of each parent (NaN propagates).

    Parents are looked up by id; ids that are not in ``questions`` are ignored. Cycles are rejected
    upstream by ``check_question_graph``; here a visiting guard keeps a bad graph from recursing forever.
    """
    by_id = {q.id: i for i, q in enumerate(questions)}
    gated: dict[int, float] = {}

    def value(i: int, depth: int = 0) -> float:
        if i in gated:
            return gated[i]
        if depth > len(questions):
            raise ValueError("dependency cycle in questions")
        v = scores[i]
        for pid in questions[i].parents:
            j = by_id.get(pid)
            if j is not None:
                v = v * value(j, depth + 1)
        gated[i] = v
        return v

    return [value(i) for i in range(len(questions))]


def aggregate(
    questions: Sequence[Question],
    scores: Sequence[float],
    method: AggregationMethod = "geometric",
    nan_policy: NanPolicy = "exclude",
    gating: bool = False,
) -> Aggregate:
    """Aggregate per-question P(yes) (NaN = failed) into one reward in [0, 1] or NaN with a reason.

    Args:
        questions: the questions, in the same order as ``scores``.
        scores: P(yes) per question, NaN where the question could not be scored.
        method: ``geometric`` | ``mean`` | ``pooled`` | ``conjunctive``.
        nan_policy: ``exclude`` (drop failed questions) or ``fail`` (any failure fails the reward).
        gating: multiply each child's score by its parents' gated scores.
    """
    if method not in get_args(AggregationMethod):
        raise ValueError(f"unknown aggregation method {method!r}")
    if len(questions) != len(scores):
        raise ValueError(f"{len(questions)} questions but {len(scores)} scores")
    if not questions:
        return Aggregate(math.nan, math.nan, math.nan, "no questions")
    raw_failed = [q.id for q, s in zip(questions, scores) if math.isnan(s)]
    if raw_failed and nan_policy == "fail":
        return Aggregate(math.nan, math.nan, math.nan, f"questions failed: {raw_failed}", len(raw_failed))
    vals = gate_scores(questions, scores) if gating else [float(s) for s in scores]
    n_failed = sum(1 for v in vals if math.isnan(v))
    sem = [v for q, v in zip(questions, vals) if q.kind == QuestionKind.semantic.value]
    qual = [v for q, v in zip(questions, vals) if q.kind == QuestionKind.quality.value]
    s_sem, s_qual = nanmean(sem), nanmean(qual)
    for name, part, s in (("semantic", sem, s_sem), ("quality", qual, s_qual)):
        if part and math.isnan(s):
            return Aggregate(math.nan, s_sem, s_qual, f"every {name} question failed", n_failed)
    if method == "pooled":
        reward = nanmean(vals)
    elif not sem or not qual:
        reward = (_product(sem) if method == "conjunctive" else s_sem) if sem else s_qual
    elif method == "geometric":
        reward = math.sqrt(s_sem * s_qual)
    elif method == "mean":
        reward = 0.5 * (s_sem + s_qual)
    else:  # conjunctive
        reward = math.sqrt(_product(sem) * s_qual)
    return Aggregate(reward, s_sem, s_qual, None, n_failed)
