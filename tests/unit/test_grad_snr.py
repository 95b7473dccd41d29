"""The gradient signal-to-noise figures of ``alphagrpo bench grad-snr``: hand-computed cases, the estimator on
draws of known signal fraction, the recorder, variant parsing and config overrides."""

import math

import pytest
import torch

from benchmarks.grad_snr import GradientRecorder, cosine_stats, measure, parse_variant, signal_fraction
from trainer.config import TrainConfig


def test_signal_fraction_hand_computed():
    # G = e0, each draw adds its own orthogonal unit noise: g_i . g_j = 1 (i != j), |g_i|^2 = 2, so c = 1/2
    e = torch.eye(4, dtype=torch.float64)
    grads = [e[0] + e[1], e[0] + e[2], e[0] + e[3]]
    assert signal_fraction(grads) == pytest.approx(0.5)
    st = cosine_stats(grads)
    assert st["signal_fraction"] == pytest.approx(0.5) and st["snr2"] == pytest.approx(1.0)
    assert st["signal_fraction_se"] == pytest.approx(0.0, abs=1e-12)  # every leave-one-out estimate is 1/2 too
    assert st["cos_min"] == st["cos_max"] == pytest.approx(0.5)


def test_pure_noise_and_opposite_directions():
    e = torch.eye(3, dtype=torch.float64)
    assert signal_fraction([e[0], e[1], e[2]]) == pytest.approx(0.0)  # orthogonal: no common direction
    # two draws pointing opposite ways, one orthogonal: pairs sum to -1 over 3 pairs, mean |g|^2 = 1
    assert signal_fraction([e[0], -e[0], e[1]]) == pytest.approx(-1 / 3)
    assert cosine_stats([e[0], -e[0], e[1]])["snr2"] < 0  # negative: no signal measurable
    zero = torch.zeros(3, dtype=torch.float64)
    assert math.isnan(signal_fraction([zero] * 3))
    st = cosine_stats([zero] * 3)  # no gradient at all: every figure undefined, and None (strict JSON), never 0
    assert st["signal_fraction"] is None and st["signal_fraction_se"] is None and st["snr2"] is None
    st = cosine_stats([e[0], zero, zero])  # one non-zero step: c = 0, but leaving it out is undefined: no error bar
    assert st["signal_fraction"] == 0.0 and st["signal_fraction_se"] is None
    with pytest.raises(ValueError, match="three gradients"):
        cosine_stats([e[0], e[1]])


def test_estimator_recovers_a_known_signal_fraction():
    # |G|^2 = 2000 x 0.05^2 = 5, noise variance 1 per coordinate: s2 = 2000, c = 5 / 2005
    g = torch.Generator().manual_seed(0)
    mean = torch.full((2000,), 0.05, dtype=torch.float64)
    grads = [mean + torch.randn(2000, generator=g, dtype=torch.float64) for _ in range(40)]
    st = cosine_stats(grads)
    want = 5 / 2005
    assert abs(st["signal_fraction"] - want) < 4 * st["signal_fraction_se"] + 1e-4
    assert 0 < st["signal_fraction_se"] < 0.002


def test_recorder_keeps_weights_and_records_clipped_gradients():
    lin = torch.nn.Linear(3, 2)
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    unused = torch.nn.Parameter(torch.ones(5))
    rec = GradientRecorder([*lin.parameters(), frozen, unused])
    assert len(rec.params) == 3  # the frozen parameter is not a training direction
    before = [p.detach().clone() for p in lin.parameters()]
    lin(torch.ones(1, 3)).sum().backward()
    rec.step()
    assert rec.grads[0].shape == (6 + 2 + 5,) and rec.grads[0].dtype == torch.float64
    assert torch.equal(rec.grads[0][-5:], torch.zeros(5, dtype=torch.float64))  # no gradient: zeros, not skipped
    assert torch.equal(rec.grads[0][:6], torch.ones(6, dtype=torch.float64))  # d sum(Wx+b)/dW = x = 1
    rec.zero_grad()
    assert all(p.grad is None for p in rec.params)
    assert all(torch.equal(a, b) for a, b in zip(before, lin.parameters()))


def test_parse_variant():
    assert parse_variant("base:") == ("base", [])
    assert parse_variant("w4: rollout.window_len=4,rollout.shared_noise=true") == (
        "w4", ["rollout.window_len=4", "rollout.shared_noise=true"])  # fmt: skip
    assert parse_variant("early:rollout.window_range=[0,2],rollout.window_len=2") == (
        "early", ["rollout.window_range=[0,2]", "rollout.window_len=2"])  # a list value keeps its comma
    for bad in ("rollout.window_len=4", ":rollout.window_len=4"):
        with pytest.raises(ValueError, match="name:group.field=value"):
            parse_variant(bad)


def test_config_overrides_are_validated():
    cfg = TrainConfig()
    new = cfg.with_overrides(["rollout.window_len=3", "rollout.window_range=[0,2]", "rollout.shared_noise=true",
                              "model_path=elsewhere", "reward.mode=oracle"])  # fmt: skip
    assert new.rollout.window_len == 3 and new.rollout.window_range == (0, 2) and new.rollout.shared_noise is True
    assert new.model_path == "elsewhere" and new.reward.mode == "oracle"
    assert cfg.rollout.window_len == 4 and cfg.model_path == "models/shapes-umm"  # the original is untouched
    with pytest.raises(ValueError, match="names no config group.field"):
        cfg.with_overrides(["rollout=3"])
    with pytest.raises(ValueError, match="names no config group.field"):
        cfg.with_overrides(["nothing.window_len=3"])
    with pytest.raises(ValueError, match=r"unknown keys \['window_lenn'\] in 'rollout'"):
        cfg.with_overrides(["rollout.window_lenn=3"])
    with pytest.raises(ValueError, match="must fit in n_steps"):
        cfg.with_overrides(["rollout.window_len=30"])
    with pytest.raises(ValueError, match="expected group.field=value"):
        cfg.with_overrides(["rollout.window_len"])
    with pytest.raises(ValueError, match="not valid YAML"):
        cfg.with_overrides(["rollout.window_range=[0"])
    # YAML 1.1 reads 5e-5 as a string: a float field takes it as the number; a word is refused by name
    assert cfg.with_overrides(["optim.lr=5e-5", "run.max_minutes=1e2"]).optim.lr == 5e-5
    with pytest.raises(ValueError, match=r"optim.lr: expected a number, got 'fast'"):
        cfg.with_overrides(["optim.lr=fast"])
    # a bool field takes true/false only: a word or a number is refused by name, not read as truthy
    assert cfg.with_overrides(["grpo.context_grad=false"]).grpo.context_grad is False
    with pytest.raises(ValueError, match=r"grpo.context_grad: expected true or false, got 'maybe'"):
        cfg.with_overrides(["grpo.context_grad=maybe"])
    with pytest.raises(ValueError, match=r"reflect.rectify: expected true or false, got 0"):
        cfg.with_overrides(["reflect.rectify=0"])


def test_by_module_splits_signal_from_noise():
    from benchmarks.grad_snr import by_module

    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(3))
    c = torch.nn.Parameter(torch.zeros(2))
    rec = GradientRecorder({"sig.w": a, "noise.w": b, "dead.w": c})
    e = torch.eye(3, dtype=torch.float64)
    for i in range(3):  # "sig" always +1 (pure signal), "noise" an orthogonal unit vector each step, "dead" nothing
        rec.grads.append(torch.cat([torch.ones(1, dtype=torch.float64), e[i], torch.zeros(2, dtype=torch.float64)]))
    out = by_module(rec, depth=1)
    assert list(out) == ["noise", "sig"] or list(out) == ["sig", "noise"]
    assert "dead" not in out  # no gradient in any step: left out, not a NaN row
    assert out["sig"]["signal_fraction"] == pytest.approx(1.0) and out["noise"]["signal_fraction"] == pytest.approx(0.0)
    assert out["sig"]["norm2_share"] == pytest.approx(0.5) and out["noise"]["norm2_share"] == pytest.approx(0.5)
    assert rec.segments(1) == {"sig": [(0, 1)], "noise": [(1, 4)], "dead": [(4, 6)]}


def test_gram_statistics_match_the_direct_definitions():
    # the Gram-matrix jackknife and cosines against the plain loops they replace, on random vectors
    import itertools
    import statistics

    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(50, generator=g, dtype=torch.float64) + 0.3 for _ in range(6)]
    st = cosine_stats(grads)
    loo = [signal_fraction(grads[:i] + grads[i + 1 :]) for i in range(6)]
    se = math.sqrt(5 / 6 * sum((x - statistics.fmean(loo)) ** 2 for x in loo))
    cos = [float(a @ b / (a.norm() * b.norm())) for a, b in itertools.combinations(grads, 2)]
    assert st["signal_fraction_se"] == pytest.approx(se, abs=1e-5)
    assert st["cos_min"] == pytest.approx(min(cos), abs=1e-4) and st["cos_max"] == pytest.approx(max(cos), abs=1e-4)
    assert parse_variant("d:task.train_categories=[position, counting],rollout.window_len=2")[1] == [
        "task.train_categories=[position, counting]", "rollout.window_len=2"]  # fmt: skip


def test_a_sampling_ema_variant_is_refused():
    """At fixed weights theta_old equals theta, so an ema variant would measure the plain recipe under its name."""
    cfg = TrainConfig().with_overrides(["grpo.objective=nft", "grpo.ema_max=0.5"])
    with pytest.raises(ValueError, match="grpo.ema_max must be 0"):
        measure(cfg, None, None, batches=2, progress=False)
