"""The reward-signal figures on hand-computed groups."""

import math

import pytest

from benchmarks.reward_signal import pair_auc, within_spearman


def test_pair_auc_counts_within_group_pairs_only():
    # group 1: correct 0.9 beats wrong 0.5 and 0.8 (2 wins of 2); group 2: correct 0.3 vs wrong 0.3 (tie) and
    # 0.6 (loss); an all-correct group holds no pair; across groups 0.3 < 0.5 would be a loss but is not a pair
    groups = [[(0.9, True), (0.5, False), (0.8, False)], [(0.3, True), (0.3, False), (0.6, False)], [(0.1, True)]]
    auc, pairs = pair_auc(groups)
    assert pairs == 4 and auc == pytest.approx((2 + 0.5 + 0) / 4)


def test_pair_auc_leaves_out_failed_scores_and_is_nan_without_pairs():
    assert pair_auc([[(math.nan, True), (0.2, False), (0.4, True)]]) == (1.0, 1)
    auc, pairs = pair_auc([[(0.5, True), (0.7, True)]])
    assert math.isnan(auc) and pairs == 0


def test_within_spearman_skips_constant_groups():
    perfect = [(0.1, 0.0), (0.5, 0.5), (0.9, 1.0)]
    reversed_ = [(0.9, 0.0), (0.1, 1.0)]
    constant = [(0.4, 0.5), (0.4, 1.0)]
    assert within_spearman([perfect, reversed_, constant]) == pytest.approx(0.0)
    assert within_spearman([perfect, [(0.2, math.nan), (0.3, 0.5)]]) == pytest.approx(1.0)
    assert math.isnan(within_spearman([constant]))
