import math

import pytest

from dvreward.aggregation import aggregate, gate_scores, nanmean
from dvreward.schemas import Question

NAN = math.nan


def sem(i, parents=()):
    return Question(id=f"s{i}", text=f"s{i}?", kind="semantic", tag="existence", parents=list(parents))


def qual(i):
    return Question(id=f"q{i}", text=f"q{i}?", kind="quality", tag="geometry")


QS = [sem(1), sem(2), qual(1), qual(2)]


def test_geometric_mean_of_kind_means_by_hand():
    # S_sem = (0.8 + 0.4) / 2 = 0.6, S_qual = (0.9 + 0.5) / 2 = 0.7, R = sqrt(0.42)
    a = aggregate(QS, [0.8, 0.4, 0.9, 0.5])
    assert a.semantic == pytest.approx(0.6) and a.quality == pytest.approx(0.7)
    assert a.reward == pytest.approx(math.sqrt(0.42)) and a.reason is None


def test_mean_and_pooled_by_hand():
    assert aggregate(QS, [0.8, 0.4, 0.9, 0.5], "mean").reward == pytest.approx(0.65)
    qs = [sem(1), sem(2), sem(3), qual(1)]
    assert aggregate(qs, [1.0, 1.0, 1.0, 0.0], "pooled").reward == pytest.approx(0.75)
    assert aggregate(qs, [1.0, 1.0, 1.0, 0.0], "mean").reward == pytest.approx(0.5)


def test_conjunctive_is_the_product_of_semantic_answers_by_hand():
    # P_all = 0.8 * 0.4 = 0.32, S_qual = 0.7, R = sqrt(0.224); the semantic field stays the mean
    a = aggregate(QS, [0.8, 0.4, 0.9, 0.5], "conjunctive")
    assert a.reward == pytest.approx(math.sqrt(0.32 * 0.7)) and a.semantic == pytest.approx(0.6)
    # AND-like: one wrong fact of three costs far more than under the mean
    qs = [sem(1), sem(2), sem(3), qual(1)]
    assert aggregate(qs, [1.0, 1.0, 0.1, 1.0], "conjunctive").reward == pytest.approx(math.sqrt(0.1))
    assert aggregate(qs, [1.0, 1.0, 0.1, 1.0], "geometric").reward == pytest.approx(math.sqrt(0.7))
    # one-sided, failed items excluded from the product, the fail policy still fails
    assert aggregate([sem(1), sem(2)], [0.5, 0.6], "conjunctive").reward == pytest.approx(0.3)
    assert aggregate([qual(1), qual(2)], [0.5, 0.7], "conjunctive").reward == pytest.approx(0.6)
    assert aggregate(QS, [0.8, NAN, 0.9, 0.5], "conjunctive").reward == pytest.approx(math.sqrt(0.8 * 0.7))
    assert math.isnan(aggregate(QS, [0.8, NAN, 0.9, 0.5], "conjunctive", nan_policy="fail").reward)
    # gating multiplies a child by its parent before the product
    gq = [sem(1), sem(2, parents=["s1"]), qual(1)]
    assert aggregate(gq, [0.5, 0.8, 1.0], "conjunctive", gating=True).reward == pytest.approx(math.sqrt(0.5 * 0.4))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown aggregation method 'median'"):
        aggregate([sem(1)], [0.5], "median")


def test_empty_and_one_sided():
    a = aggregate([], [])
    assert math.isnan(a.reward) and a.reason == "no questions"
    only_sem = aggregate([sem(1), sem(2)], [0.2, 0.6])
    assert only_sem.reward == pytest.approx(0.4) and math.isnan(only_sem.quality)


def test_nan_exclude_drops_failed_items():
    a = aggregate(QS, [0.8, NAN, 0.9, 0.5])
    assert a.semantic == pytest.approx(0.8) and a.n_failed == 1
    assert a.reward == pytest.approx(math.sqrt(0.8 * 0.7))


def test_nan_exclude_fails_when_a_whole_kind_failed():
    a = aggregate(QS, [NAN, NAN, 0.9, 0.5])
    assert math.isnan(a.reward) and a.reason == "every semantic question failed"


def test_nan_fail_policy():
    a = aggregate(QS, [0.8, NAN, 0.9, 0.5], nan_policy="fail")
    assert math.isnan(a.reward) and "s2" in a.reason and a.n_failed == 1
    assert aggregate(QS, [0.8, 0.4, 0.9, 0.5], nan_policy="fail").reward == pytest.approx(math.sqrt(0.42))


def test_reward_is_never_zero_for_failures():
    a = aggregate(QS, [NAN] * 4)
    assert math.isnan(a.reward)


def test_soft_gating_chains_by_hand():
    qs = [sem(1), sem(2, ["s1"]), sem(3, ["s2"]), qual(1)]
    assert gate_scores(qs, [0.5, 0.8, 0.5, 1.0]) == pytest.approx([0.5, 0.4, 0.2, 1.0])
    a = aggregate(qs, [0.5, 0.8, 0.5, 1.0], gating=True)
    assert a.semantic == pytest.approx((0.5 + 0.4 + 0.2) / 3)


def test_gating_with_failed_parent_fails_child():
    qs = [sem(1), sem(2, ["s1"]), sem(3), qual(1)]
    a = aggregate(qs, [NAN, 0.9, 0.6, 1.0], gating=True)
    assert a.n_failed == 2 and a.semantic == pytest.approx(0.6)


def test_length_mismatch_and_nanmean():
    with pytest.raises(ValueError, match="2 questions but 1 scores"):
        aggregate([sem(1), sem(2)], [0.1])
    assert math.isnan(nanmean([NAN])) and nanmean([1.0, NAN, 0.0]) == 0.5
