"""Block SDE noise (``rollout.noise_block``): the Gaussian step restricted to block-constant images."""

import pytest
import torch

from trainer.config import RolloutConfig
from trainer.flow_sde import block_mean, project, sde_step
from trainer.grpo import check_first_ratio, gaussian_kl
from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig
from trainer.rollout import recompute_logprobs, replay_step, sample_images


def test_projection_is_orthogonal_and_idempotent():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    p = project(x, 4)
    assert torch.allclose(project(p, 4), p)
    assert abs(float(((x - p) * p).sum())) < 1e-4  # the residual is orthogonal to the subspace
    assert torch.equal(p[:, :, :4, :4], p[:, :, :1, :1].expand(2, 3, 4, 4))  # constant over a block
    assert torch.equal(project(x, 1), x) and block_mean(x, 4).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match="divisible"):
        block_mean(torch.zeros(1, 3, 6, 6), 4)


def test_block_step_hand_computed():
    # t 0.5 -> 0.25, a 0.5: sigma = 0.5, dt = -0.25, std = 0.25, score factor sigma^2 dt / (2t) = -0.0625
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    v = torch.zeros_like(x)
    step = sde_step(x, v, 0.5, 0.25, 0.5, block=2, prev_sample=torch.zeros_like(x))
    # the correction is projected: x - 0.0625 * (block mean 4) everywhere, not - 0.0625 * x
    assert torch.allclose(step.mean, x - 0.25) and float(step.std) == pytest.approx(0.25)
    # a sample at mean + std * 2 in the subspace, plus a perturbation orthogonal to it, which the density ignores
    off = 0.1 * torch.tensor([[[[1.0, -1.0], [-1.0, 1.0]]]])
    scored = sde_step(x, v, 0.5, 0.25, 0.5, block=2, prev_sample=step.mean + 0.25 * 2 + off)
    assert torch.allclose(scored.log_prob, torch.tensor([-2.0]))  # -(0.5)^2 / (2 * 0.25^2)
    # the same step per pixel (its own mean: x - 0.0625 x) counts the perturbation: mean of -(0.5 +- 0.1)^2 / 0.125
    iso_mean = sde_step(x, v, 0.5, 0.25, 0.5, prev_sample=x).mean
    assert torch.allclose(iso_mean, x * 0.9375)
    iso = sde_step(x, v, 0.5, 0.25, 0.5, prev_sample=iso_mean + 0.25 * 2 + off)
    assert float(iso.log_prob) == pytest.approx(-(0.6**2 + 0.4**2) / 2 / 0.125, rel=1e-5)


def test_block_step_draws_block_constant_noise_and_rescoring_matches():
    torch.manual_seed(0)
    x, v = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    step = sde_step(x, v, 0.8, 0.6, 0.7, block=4, generator=torch.Generator().manual_seed(1))
    noise = (step.sample - step.mean) / step.std
    assert torch.allclose(project(noise, 4), noise, atol=1e-5)  # lives in the subspace
    z = block_mean(noise, 4)
    assert torch.allclose(step.log_prob, (-(z**2) / 2).flatten(1).mean(1), atol=1e-5)
    again = sde_step(x, v, 0.8, 0.6, 0.7, block=4, prev_sample=step.sample)
    assert torch.allclose(again.log_prob, step.log_prob)
    # block-constant x and v: the projected correction is the isotropic one
    xc, vc = project(x, 4), project(v, 4)
    a = sde_step(xc, vc, 0.8, 0.6, 0.7, block=4, prev_sample=xc)
    b = sde_step(xc, vc, 0.8, 0.6, 0.7, prev_sample=xc)
    assert torch.allclose(a.mean, b.mean, atol=1e-5)


def test_block_kl_ignores_what_the_step_cannot_move():
    mean = torch.zeros(2, 1, 2, 2)
    ref = torch.stack([0.3 * torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]]), torch.full((1, 2, 2), 0.5)])
    assert torch.allclose(gaussian_kl(mean, ref, 0.5, block=2), torch.tensor([0.0, 0.5]))  # 0.25 / 0.5
    assert torch.allclose(gaussian_kl(mean, ref, 0.5), torch.tensor([0.18, 0.5]))


def test_block_rollouts_replay_with_ratio_one():
    torch.manual_seed(0)
    m = TinyUMM(TinyUMMConfig(vocab_size=64, text_hidden=32, text_layers=1, image_size=16, unet_channels=(16, 32),
                              cross_dim=32, attention_head_dim=8))  # fmt: skip
    ids = torch.randint(1, 64, (2, 5))
    ctx = m.encode(ids, torch.ones_like(ids)).repeat(3)
    r = sample_images(m, ctx, n_steps=5, window_len=3, cfg_scale=2.0, generator=torch.Generator().manual_seed(0),
                      noise_block=4)  # fmt: skip
    assert r.noise_block == 4
    for k in range(3):  # every trained transition's noise is block-constant
        with torch.no_grad():
            noise = r.x_after[:, k] - replay_step(m, ctx, r, k, cfg_scale=2.0).mean
        assert torch.allclose(project(noise, 4), noise, atol=1e-5) and float(noise.abs().max()) > 0
    check_first_ratio(recompute_logprobs(m, ctx, r, cfg_scale=2.0) - r.logprobs)
    assert r.logprobs.shape == (6, 3) and bool(torch.isfinite(r.logprobs).all())
    pairs = sample_images(m, ctx, n_steps=5, window_len=3, cfg_scale=2.0, generator=torch.Generator().manual_seed(0),
                          noise_group=2, noise_block=4, antithetic=True)  # fmt: skip
    with torch.no_grad():
        noise = pairs.x_after[:, 0] - replay_step(m, ctx, pairs, 0, cfg_scale=2.0).mean
    assert torch.allclose(noise[0::2], -noise[1::2], atol=1e-6)  # each pair brackets its first mean
    assert not torch.allclose(pairs.images[0], pairs.images[1])
    check_first_ratio(recompute_logprobs(m, ctx, pairs, cfg_scale=2.0) - pairs.logprobs)


def test_config_rejects_a_zero_block():
    with pytest.raises(ValueError, match="noise_block"):
        RolloutConfig(noise_block=0)


def test_antithetic_pairs_mirror_their_noise():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8).repeat_interleave(2, 0)  # two pairs, each starting from one state
    v = torch.randn(2, 3, 8, 8).repeat_interleave(2, 0)
    for block in (1, 4):
        step = sde_step(x, v, 0.8, 0.6, 0.7, block=block, antithetic=True, generator=torch.Generator().manual_seed(1))
        noise = step.sample - step.mean
        assert torch.allclose(noise[0], -noise[1]) and torch.allclose(noise[2], -noise[3])
        assert not torch.allclose(noise[0], noise[2])  # pairs are independent of each other
        assert torch.allclose(step.log_prob[0], step.log_prob[1])  # a mirrored pair is equally likely
        again = sde_step(x, v, 0.8, 0.6, 0.7, block=block, prev_sample=step.sample)
        assert torch.allclose(again.log_prob, step.log_prob)
    with pytest.raises(ValueError, match="must be even"):
        sde_step(x[:3], v[:3], 0.8, 0.6, 0.7, antithetic=True)
    with pytest.raises(ValueError, match="group_size"):
        RolloutConfig(group_size=5, antithetic=True)
