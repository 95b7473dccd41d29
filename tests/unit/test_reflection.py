"""False-positive rectification, initial-image selection and the plan format reward, case by case."""

import math

import torch

from trainer.grpo import group_advantages
from trainer.reflection import rectify, select_initial, think_format_reward

T = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731

nan = math.nan


def test_select_initial_takes_the_lowest_valid_reward():
    idx, r = select_initial(T([[0.7, 0.2, 0.5], [nan, 0.9, 0.4], [nan, nan, nan]]))
    assert idx.tolist() == [1, 2, -1]
    assert r[:2].tolist() == [0.2, 0.4] and math.isnan(r[2])


def test_rectify_cases():
    # group 0 refines an image with R_init 0.4, group 1 one with R_init 0.6
    refined = T([0.7, 0.4, 0.3, nan, 0.5, 0.55, 0.6, 0.59])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out, improved, st = rectify(refined, groups, T([0.4, 0.6]))
    # 0.7 > 0.4 improves and keeps its reward; 0.4 == R_init is NOT an improvement (ties fail); 0.3 fails;
    # NaN stays NaN; in group 1 nothing beats 0.6, so every valid sample sits at the floor 0.6
    assert improved.tolist() == [True, False, False, False, False, False, False, False]
    assert out[:3].tolist() == [0.7, 0.4, 0.4] and math.isnan(out[3]) and out[4:].tolist() == [0.6] * 4
    assert (st.n_improved, st.n_failed, st.n_invalid, st.groups_without_improvement) == (1, 6, 1, 1)
    assert st.round_has_improvement


def test_failures_never_get_a_positive_advantage_and_an_all_failing_group_has_no_signal():
    refined = T([0.7, 0.4, 0.3, 0.35, 0.5, 0.55, 0.2, 0.59])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    raw_adv, _, _ = group_advantages(refined.double(), groups, std_scope="group")
    assert raw_adv[4:].gt(0).any()  # without rectification the least-bad failure of group 1 "wins"
    out, improved, _ = rectify(refined, groups, T([0.4, 0.6]))
    adv, valid, st = group_advantages(out.double(), groups, std_scope="group")
    assert (adv[~improved] <= 0).all() and adv[0] > 0
    assert torch.all(adv[4:] == 0) and st.frac_reward_zero_std == 0.5


def test_a_round_where_nothing_improves_is_reported():
    out, improved, st = rectify(T([0.1, 0.2]), torch.tensor([0, 0]), T([0.3]))
    assert not st.round_has_improvement and not improved.any() and out.tolist() == [0.3, 0.3]
    _, _, st = rectify(T([0.35, 0.2]), torch.tensor([0, 0]), T([0.3]), margin=0.1)
    assert not st.round_has_improvement  # within the margin: not an improvement


def test_think_format_reward():
    assert think_format_reward("<think>three stars: a triangle has 3 corners</think>") == 1.0
    assert think_format_reward("  <think>plan</think> trailing text is fine") == 1.0
    assert think_format_reward("<think>   </think>") == 0.0  # empty plan
    assert think_format_reward("plan first <think>x</think>") == 0.0  # not at the start
    assert think_format_reward("<think>unclosed") == 0.0
    assert think_format_reward("<think>a</think><think>b</think>") == 0.0  # two plans
    assert think_format_reward("<think>a <think> b</think>") == 0.0  # nested


def test_keep_refinement_only_when_dvreward_improves():
    from trainer.reflection import keep_refinement

    assert keep_refinement(0.5, 0.6) and not keep_refinement(0.5, 0.5)  # a tie keeps the current image
    assert not keep_refinement(0.5, 0.4)
    assert not keep_refinement(0.5, 0.55, margin=0.1) and keep_refinement(0.5, 0.65, margin=0.1)
    assert not keep_refinement(0.5, math.nan) and not keep_refinement(math.nan, 0.9)  # a failed reward never wins
