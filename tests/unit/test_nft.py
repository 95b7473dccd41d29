"""The nft objective (DiffusionNFT's forward-process loss, ``grpo.objective: nft``) on hand-computed cases:
its value, its gradient at the rollout policy (advantage-weighted flow matching), its trust region away from
it, and the noised copies it regresses on."""

import pytest
import torch

from trainer.config import GRPOConfig
from trainer.flow_sde import shift_time, timesteps
from trainer.grpo import nft_loss, optimality, velocity_kl
from trainer.train import chunk_generator, nft_generator, nft_noised


def test_optimality_maps_advantages_to_0_1():
    r = optimality(torch.tensor([-10.0, -2.5, 0.0, 2.5, 5.0]), 5.0)
    assert r.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="scale"):
        optimality(torch.zeros(1), 0.0)


def test_nft_loss_hand_computed():
    # beta 1: v+ = v, v- = 2 v_old - v.
    # sample 0: v (1.5, 0), v_old (1, 0), target (0, 0), A 5 -> r 1: |v+ - t|^2 = mean(2.25, 0) = 1.125
    # sample 1: v = v_old = (0, 0), target (1, 1), A -2.5 -> r 0.25: both terms mean(1, 1) = 1 -> 1
    v = torch.tensor([[1.5, 0.0], [0.0, 0.0]])
    v_old = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    loss, st = nft_loss(v, v_old, target, torch.tensor([5.0, -2.5]), beta=1.0, adv_scale=5.0)
    assert float(loss) == pytest.approx((1.125 + 1.0) / 2)
    assert st.optimality_mean_abs == pytest.approx((1.0 + 0.5) / 2) and st.velocity_max_dev == pytest.approx(0.5)
    # beta 0.5, sample 0 only: v+ = 0.5 v_old + 0.5 v = (1.25, 0), v- = 1.5 v_old - 0.5 v = (0.75, 0); r 1
    loss, _ = nft_loss(v[:1], v_old[:1], target[:1], torch.tensor([5.0]), beta=0.5, adv_scale=5.0)
    assert float(loss) == pytest.approx(1.25**2 / 2)


def test_gradient_at_the_rollout_policy_is_advantage_weighted_flow_matching():
    """d loss / d v at v = v_old is 2 beta (2 r - 1) (v_old - target) / (B D): toward the targets of images with
    A > 0, away from those with A < 0, nothing from A = 0."""
    torch.manual_seed(0)
    b, d, beta = 4, 6, 0.7
    v_old, target = torch.randn(b, d), torch.randn(b, d)
    adv = torch.tensor([3.0, -1.0, 0.0, 7.0])
    v = v_old.clone().requires_grad_(True)
    nft_loss(v, v_old, target, adv, beta=beta, adv_scale=5.0)[0].backward()
    r = optimality(adv, 5.0)[:, None]
    assert torch.allclose(v.grad, 2 * beta * (2 * r - 1) * (v_old - target) / (b * d), atol=1e-6)
    assert float(v.grad[2].abs().max()) < 1e-7  # A = 0: nothing (up to rounding)
    # a small step against the gradient brings sample 0 (A > 0) nearer its target and sample 1 (A < 0) farther
    moved = v_old - 0.1 * v.grad * b * d
    dist = lambda x: (x - target).pow(2).sum(1)  # noqa: E731
    assert dist(moved)[0] < dist(v_old)[0] and dist(moved)[1] > dist(v_old)[1]


def test_trust_region_pulls_back_to_the_rollout_policy():
    """With indifferent samples (A = 0, r = 1/2) the gradient at v = v_old + delta is 2 beta^2 delta / (B D)."""
    torch.manual_seed(1)
    v_old, target, delta = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    v = (v_old + delta).requires_grad_(True)
    nft_loss(v, v_old, target, torch.zeros(2), beta=2.0, adv_scale=5.0)[0].backward()
    assert torch.allclose(v.grad, 2 * 4.0 * delta / 6, atol=1e-6)


def test_bad_shapes_no_samples_and_beta_are_refused():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="must agree"):
        nft_loss(z, z, z, torch.zeros(3))
    with pytest.raises(ValueError, match="no samples"):
        nft_loss(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0))
    with pytest.raises(ValueError, match="beta"):
        nft_loss(z, z, z, torch.zeros(2), beta=0.0)
    with pytest.raises(ValueError, match="objective"):
        GRPOConfig(objective="dpo")
    with pytest.raises(ValueError, match="nft_timesteps"):
        GRPOConfig(objective="nft", nft_timesteps=0)


def test_velocity_kl_hand_computed():
    v = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    assert torch.allclose(velocity_kl(v, torch.tensor([[0.0, 1.0], [0.0, 0.0]])), torch.tensor([2.5, 0.0]))


def test_noised_copies_follow_the_forward_process_and_the_sampler_times():
    x0 = torch.rand(4096, 3, 2, 2) * 2 - 1
    xt, t, target = nft_noised(x0, 3.0, nft_generator(0, 5, 16, 1))
    assert t.shape == (4096,) and bool(((t >= 0) & (t <= 1)).all())
    eps = target + x0
    tb = t.view(-1, 1, 1, 1)
    assert torch.allclose(xt, (1 - tb) * x0 + tb * eps, atol=1e-6)
    # times fall as densely as the sampler's grid (1 -> 0): a share i / 10 of them lies above its i-th point
    grid = timesteps(11, 3.0)
    for i in (2, 5, 8):
        assert float((t > grid[i]).double().mean()) == pytest.approx(i / 10, abs=0.03)
    assert float(shift_time(torch.tensor(0.5), 3.0)) == pytest.approx(0.75)
    # reproducible from (seed, step, row, k), and a different stream from the rollout's noise of that chunk
    again = nft_noised(x0, 3.0, nft_generator(0, 5, 16, 1))
    assert torch.equal(again[0], xt) and torch.equal(again[1], t)
    assert not torch.equal(nft_noised(x0, 3.0, nft_generator(0, 5, 16, 2))[1], t)
    sampler_draw = torch.rand(4096, generator=chunk_generator(0, 5, 16))
    assert not torch.equal(sampler_draw, torch.rand(4096, generator=nft_generator(0, 5, 16, 1)))
