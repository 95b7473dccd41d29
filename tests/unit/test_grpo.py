"""GRPO maths and the SDE step on hand-computed cases."""

import math

import pytest
import torch

from trainer.flow_sde import sde_step, timesteps
from trainer.grpo import check_first_ratio, group_advantages, image_policy_loss, k3_kl, text_policy_loss

NAN = float("nan")


def test_advantages_round_std_on_a_2x3_matrix():
    # groups: [1, 2, 3] and [4, 4, 4]; round std of all six = sqrt(mean((r - 2.5)^2)) = sqrt(11/12... )
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 4.0, 4.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    adv, valid, stats = group_advantages(r, g, eps=0.0)
    std = math.sqrt(sum((x - 3.0) ** 2 for x in [1, 2, 3, 4, 4, 4]) / 6)
    assert adv.tolist() == pytest.approx([-1 / std, 0.0, 1 / std, 0.0, 0.0, 0.0])
    assert valid.all() and stats.frac_reward_zero_std == 0.5 and stats.reward_std == pytest.approx(std)


def test_advantages_group_std_and_clip():
    r = torch.tensor([0.0, 1.0, 10.0, 10.0])
    g = torch.tensor([0, 0, 1, 1])
    adv, _, stats = group_advantages(r, g, std_scope="group", eps=0.0, clip=0.9)
    assert adv.tolist() == pytest.approx([-0.9, 0.9, 0.0, 0.0])  # (0 - 0.5) / 0.5 = -1 clipped
    assert stats.frac_reward_zero_std == 0.5


def test_nan_rewards_are_excluded_not_zero():
    r = torch.tensor([1.0, NAN, 3.0, 5.0])
    g = torch.tensor([0, 0, 0, 1])
    adv, valid, stats = group_advantages(r, g, std_scope="group", eps=0.0)
    assert valid.tolist() == [True, False, True, True] and stats.n_invalid == 1
    assert adv.tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0])  # group 0 is {1, 3}: the NaN is not a 0
    assert stats.reward_mean == pytest.approx(3.0)


def test_loop_and_vectorised_loss_agree():
    torch.manual_seed(0)
    logp, old, adv = torch.randn(8) * 1e-5, torch.randn(8) * 1e-5, torch.randn(8)
    loss, stats = image_policy_loss(logp, old, adv, clip_range=1e-5)
    expect = sum(max(-a * math.exp(lp - o), -a * min(max(math.exp(lp - o), 1 - 1e-5), 1 + 1e-5))
                 for lp, o, a in zip(logp.tolist(), old.tolist(), adv.tolist())) / 8  # fmt: skip
    assert float(loss) == pytest.approx(expect, rel=1e-6) and 0 <= stats.clip_frac <= 1


def test_text_loss_uses_each_samples_own_advantage():
    new = torch.log(torch.tensor([[2.0, 2.0], [1.0, 1.0]]))
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    adv = torch.tensor([1.0, -1.0])
    loss, stats = text_policy_loss(new, old, mask, adv, 0.2, 0.28)
    # sample 0: ratio 2 clipped to 1.28, A = 1 -> max(-2, -1.28) = -1.28; sample 1: ratio 1 -> +1
    assert float(loss) == pytest.approx((-1.28 + 1.0) / 2) and stats.clip_frac == 0.5
    with pytest.raises(ValueError, match="no broadcasting"):
        text_policy_loss(new, old, mask, adv.view(2, 1))


def test_k3_kl_zero_at_equality_and_positive_otherwise():
    a = torch.log(torch.tensor([[0.5, 0.25]]))
    assert float(k3_kl(a, a, torch.ones(1, 2))) == 0.0
    assert float(k3_kl(a, a + 0.1, torch.ones(1, 2))) > 0


def test_first_ratio_invariant():
    check_first_ratio(torch.zeros(4))
    with pytest.raises(AssertionError, match="deviates from 1"):
        check_first_ratio(torch.tensor([0.0, 1e-3]))


def test_sde_step_seeded_regression_and_scoring():
    torch.manual_seed(0)
    x, v = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    g = torch.Generator().manual_seed(1)
    step = sde_step(x, v, 0.8, 0.6, 0.7, generator=g)
    sigma = 0.7 * math.sqrt(0.8 / 0.2)
    mean = x * (1 + sigma**2 * -0.2 / 1.6) + v * (1 + sigma**2 * 0.2 / 1.6) * -0.2
    assert torch.allclose(step.mean, mean, atol=1e-6) and float(step.std) == pytest.approx(sigma * math.sqrt(0.2))
    again = sde_step(x, v, 0.8, 0.6, 0.7, prev_sample=step.sample)
    assert torch.allclose(again.log_prob, step.log_prob)
    # the log-prob of a sample is the mean over elements of -z^2 / 2 for its standard-normal noise z
    z = (step.sample - step.mean) / step.std
    assert torch.allclose(step.log_prob, (-(z**2) / 2).flatten(1).mean(1), atol=1e-6)
    ode = sde_step(x, v, 0.8, 0.6, 0.0)
    assert torch.allclose(ode.sample, x + v * -0.2) and float(ode.log_prob.abs().sum()) == 0


def test_timesteps_shift():
    t = timesteps(5, shift=3.0)
    assert t[0] == 1.0 and t[-1] == 0.0 and t[2] == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    with pytest.raises(ValueError):
        sde_step(torch.zeros(1, 1), torch.zeros(1, 1), 0.5, 0.6, 0.7)


def test_gaussian_kl_hand_computed():
    from trainer.grpo import gaussian_kl

    mean = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    ref = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    # sample 0: mean of (1, 4) = 2.5, / (2 * 0.5^2) = 5; sample 1: identical means -> 0
    assert torch.allclose(gaussian_kl(mean, ref, 0.5), torch.tensor([5.0, 0.0]))
    assert torch.equal(gaussian_kl(mean, ref, 0.0), torch.zeros(2))  # an ODE step: no Gaussian, no KL


def test_loss_on_no_samples_is_an_error_not_nan():
    """A chunk whose rewards all failed must be skipped by the loop; the loss refuses to average nothing."""
    with pytest.raises(ValueError, match="no samples"):
        image_policy_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0), 0.01)
