"""The tiny UMM policy and batched rollouts: shapes, CFG, the first-step ratio invariant, save/load."""

import pytest
import torch

from trainer.grpo import check_first_ratio, image_policy_loss
from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig
from trainer.rollout import recompute_logprobs, sample_images

CFG = TinyUMMConfig(vocab_size=64, text_hidden=32, text_layers=1, image_size=16, unet_channels=(16, 32),
                    cross_dim=32, attention_head_dim=8)  # fmt: skip


def model_and_ctx(seed=0, b=2):
    torch.manual_seed(seed)
    m = TinyUMM(CFG)
    ids = torch.randint(1, 64, (b, 5))
    ctx = m.encode(ids, torch.ones_like(ids))
    return m, ctx, ids


def test_group_rollout_and_recomputed_logprobs_match():
    m, ctx, _ = model_and_ctx()
    group = ctx.repeat(3)  # 2 prompts x G = 3, one batch
    g = torch.Generator().manual_seed(0)
    r = sample_images(m, group, n_steps=6, window_start=1, window_len=3, cfg_scale=2.0, generator=g)
    assert r.images.shape == (6, 3, 16, 16) and r.logprobs.shape == (6, 3) and r.steps == [1, 2, 3]
    again = recompute_logprobs(m, group, r, cfg_scale=2.0)
    check_first_ratio(again - r.logprobs)  # the same weights give the same log-probs
    single = recompute_logprobs(m, group, r, cfg_scale=2.0, k=1)
    assert torch.allclose(single, again[:, 1])


def test_shared_noise_groups_differ_only_by_the_window():
    m, ctx, _ = model_and_ctx()
    group = ctx.repeat(3)
    kw = dict(n_steps=6, window_start=1, window_len=2, cfg_scale=2.0)
    shared = sample_images(m, group, generator=torch.Generator().manual_seed(0), noise_group=3, **kw)
    before = shared.x_before[:, 0]  # x at the window's first transition: the ODE from the initial noise
    assert torch.equal(before[0], before[1]) and torch.equal(before[1], before[2])  # one start per prompt
    assert not torch.equal(before[2], before[3])  # the next prompt has its own
    assert not torch.equal(shared.images[0], shared.images[1])  # the window's noise still separates them
    own = sample_images(m, group, generator=torch.Generator().manual_seed(0), **kw)
    assert not torch.equal(own.x_before[0, 0], own.x_before[1, 0])
    check_first_ratio(recompute_logprobs(m, group, shared, cfg_scale=2.0) - shared.logprobs)
    with pytest.raises(ValueError, match="noise_group 4 must divide"):
        sample_images(m, group, noise_group=4, **kw)


def test_image_loss_backpropagates_into_unet_and_lm():
    m, _, ids = model_and_ctx()
    ctx = m.encode(ids, torch.ones_like(ids))
    r = sample_images(m, ctx, n_steps=4, window_len=2, generator=torch.Generator().manual_seed(1))
    logp = recompute_logprobs(m, ctx, r, k=0)
    loss, _ = image_policy_loss(logp, r.logprobs[:, 0], torch.tensor([1.0, -1.0]), clip_range=1e-2)
    loss.backward()
    assert m.unet.conv_in.weight.grad.abs().sum() > 0 and m.proj.weight.grad.abs().sum() > 0


def test_reference_is_frozen_and_cfg_differs():
    m, ctx, ids = model_and_ctx()
    m.freeze_reference()
    with torch.no_grad():
        for p in m.unet.parameters():
            p.add_(0.01)
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.5)
    with torch.no_grad():
        ctx = m.encode(ids, torch.ones_like(ids))
        v = m.velocity(x, t, ctx)
        with m.reference():
            v_ref = m.velocity(x, t, m.encode(ids, torch.ones_like(ids)))
        assert not torch.allclose(v, v_ref)
        assert not torch.allclose(m.velocity(x, t, ctx, cfg_scale=3.0), v)
    lp = m.token_logprobs(ids, torch.ones_like(ids))
    assert lp.shape == (2, 4) and (lp <= 0).all()


def test_flow_loss_and_save_load(tmp_path):
    m, ctx, ids = model_and_ctx()
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    loss = m.flow_loss(x0, ctx, drop_cond=torch.tensor([True, False]), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    m.save(tmp_path / "umm")
    again = TinyUMM.load(tmp_path / "umm")
    x, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.3)
    with torch.no_grad():
        a = m.eval().velocity(x, t, m.encode(ids, torch.ones_like(ids)))
        b = again.velocity(x, t, again.encode(ids, torch.ones_like(ids)))
    assert torch.equal(a, b)


def test_loading_into_changed_model_code_fails_loudly(tmp_path):
    import json

    import pytest

    m, _, _ = model_and_ctx()
    m.save(tmp_path / "umm")
    cfg_path = tmp_path / "umm" / "umm_config.json"
    raw = json.loads(cfg_path.read_text())
    assert abs(TinyUMM.load(tmp_path / "umm").fingerprint() - raw["fingerprint"]) < 1e-6
    raw["attention_head_dim"] = 16  # same weight shapes, different computation: what a code change looks like
    cfg_path.write_text(json.dumps(raw))
    with pytest.raises(RuntimeError, match="different model"):
        TinyUMM.load(tmp_path / "umm")


def test_sampled_plan_logprobs_are_what_training_recomputes():
    """Text policy invariant: the log-probs recorded while sampling a plan equal ``token_logprobs`` on the
    finished sequence (ratio 1 on the first step), for left-padded rows of different lengths; rows stop at
    the stop token and are padded after it."""
    m, _, _ = model_and_ctx()
    m.eval()
    pad, stop = 0, 7
    ids = torch.tensor([[0, 0, 5, 9, 3], [4, 8, 2, 6, 3]])
    mask = (ids != 0).long()
    out = m.sample_text(ids, mask, max_new_tokens=12, stop_token_id=stop, pad_token_id=pad, temperature=1.0,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    t = out.generated.shape[1]
    assert out.ids.shape == (2, 5 + t) and torch.equal(out.ids[:, :5], ids)
    again = m.token_logprobs(out.ids, out.mask)[:, -t:]  # predictions of the generated tokens
    gen = out.generated.bool()
    assert torch.allclose(again[gen], out.logprobs[gen], atol=1e-5)
    for row in range(2):
        g = out.ids[row, 5:][gen[row]]
        if out.finished[row]:
            assert g[-1] == stop and (g[:-1] != stop).all()
    # a left-padded row computes what the same row unpadded computes
    solo = m.token_logprobs(ids[:1, 2:], mask[:1, 2:])
    assert torch.allclose(m.token_logprobs(ids, mask)[0, 2:], solo[0], atol=1e-5)


def test_language_lr_splits_the_weights_and_moves_each_group_at_its_rate():
    from trainer.config import OptimConfig
    from trainer.train import param_groups

    m, ctx, ids = model_and_ctx()
    cfg = TinyUMMConfig(**{**CFG.__dict__, "image_patch": 4})
    mi = TinyUMM(cfg)
    lm = {id(p) for p in mi.language_parameters()}
    names = {n for n, p in mi.named_parameters() if id(p) in lm}
    assert names and all(n.startswith(("lm.", "image_in.", "image_pos")) for n in names)
    assert {n for n, _ in mi.named_parameters()} - names >= {"proj.weight", "null"}  # the image side keeps lr
    assert len(param_groups(m, None)) == 1 and len(param_groups(m, None)[0]["params"]) == len(list(m.parameters()))
    groups = param_groups(m, 1e-2)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters())) and groups[1]["lr"] == 1e-2
    opt = torch.optim.AdamW(groups, lr=1e-4, weight_decay=0.0)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    v = m.velocity(torch.randn(2, 3, 16, 16), torch.full((2,), 0.5), m.encode(ids, torch.ones_like(ids)), 1.0)
    v.square().mean().backward()
    opt.step()  # Adam's first step moves every weight with a gradient by about its lr
    step = lambda n: (dict(m.named_parameters())[n] - before[n]).abs().max().item()  # noqa: E731
    assert 5e-3 < step("lm.model.layers.0.mlp.up_proj.weight") <= 1.01e-2
    assert 5e-5 < step("proj.weight") <= 1.01e-4
    with pytest.raises(ValueError, match="lm_lr"):
        OptimConfig(lm_lr=0.0)

    class NoSplit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

    with pytest.raises(ValueError, match="language_parameters"):
        param_groups(NoSplit(), 1e-3)
