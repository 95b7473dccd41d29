"""DiffusionNFT's soft-updated sampling policy (``grpo.ema_max``): the decay schedule, the swap that lends
theta_old to the live module and gives the trained weights back, the update on hand-computed numbers, the
checkpoint round trip, and the configurations it refuses."""

import pytest
import torch

from trainer.config import GRPOConfig, ReasonConfig, TrainConfig
from trainer.sampling_ema import SamplingEMA, soft_update_decay


def test_decay_schedule_starts_on_policy_and_caps():
    assert soft_update_decay(0, 0.001, 0.5) == 0.0
    assert soft_update_decay(100, 0.001, 0.5) == pytest.approx(0.1)
    assert soft_update_decay(10_000, 0.001, 0.5) == 0.5
    assert soft_update_decay(7, 0.0, 0.9) == 0.0  # rate 0: always on-policy
    for bad in [(-1, 0.1, 0.5), (1, -0.1, 0.5), (1, 0.1, 1.0)]:
        with pytest.raises(ValueError):
            soft_update_decay(*bad)


def _module():
    m = torch.nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 2.0]]))
        m.bias.fill_(0.0)
    m.bias.requires_grad_(False)  # frozen parameters are not averaged
    return m


def test_update_is_the_hand_computed_average_and_active_swaps_it_in_and_out():
    m = _module()
    ema = SamplingEMA(m)
    assert set(ema.shadow) == {"weight"}
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[3.0, 6.0]]))  # an optimizer step: theta moved, theta_old not yet
    ema.update(0.75)  # theta_old = 0.75 (1, 2) + 0.25 (3, 6) = (1.5, 3)
    assert ema.shadow["weight"].tolist() == [[1.5, 3.0]]
    assert ema.max_gap() == pytest.approx(3.0)
    x = torch.tensor([[1.0, 1.0]])
    with ema.active():
        assert float(m(x)) == pytest.approx(4.5)  # theta_old computes
        assert not torch.is_grad_enabled()
        with pytest.raises(RuntimeError, match="already active"):
            with ema.active():
                pass
        with pytest.raises(RuntimeError, match="while it is active"):
            ema.update(0.5)
    assert float(m(x).detach()) == pytest.approx(9.0)  # the trained weights are back, gradients flow again
    m(x).sum().backward()
    assert m.weight.grad.tolist() == [[1.0, 1.0]]
    ema.update(0.0)  # decay 0: theta_old = theta (on-policy)
    assert ema.shadow["weight"].tolist() == [[3.0, 6.0]] and ema.max_gap() == 0.0


def test_active_restores_the_weights_when_the_body_raises():
    m = _module()
    ema = SamplingEMA(m)
    with torch.no_grad():
        m.weight.add_(1.0)
    with pytest.raises(KeyError):
        with ema.active():
            raise KeyError("boom")
    assert m.weight.tolist() == [[2.0, 3.0]]
    with ema.active():  # usable again
        assert m.weight.tolist() == [[1.0, 2.0]]


def test_state_round_trip_and_mismatches():
    a, b = SamplingEMA(_module()), SamplingEMA(_module())
    a.shadow["weight"].fill_(7.0)
    b.load_state_dict(a.state_dict())
    assert b.shadow["weight"].tolist() == [[7.0, 7.0]]
    with pytest.raises(RuntimeError, match="keys differ"):
        b.load_state_dict({"other": torch.zeros(1, 2)})
    with pytest.raises(RuntimeError, match="shape"):
        b.load_state_dict({"weight": torch.zeros(2, 2)})
    frozen = torch.nn.Linear(1, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        SamplingEMA(frozen)


def test_config_refuses_an_ema_it_cannot_honour():
    with pytest.raises(ValueError, match=r"ema_max must be in \[0, 1\)"):
        GRPOConfig(objective="nft", ema_max=1.0)
    with pytest.raises(ValueError, match="ema_rate"):
        GRPOConfig(objective="nft", ema_max=0.5, ema_rate=-1.0)
    with pytest.raises(ValueError, match="needs grpo.objective 'nft'"):
        GRPOConfig(ema_max=0.5)
    with pytest.raises(ValueError, match="text-to-image only"):
        TrainConfig(grpo=GRPOConfig(objective="nft", ema_max=0.5), reason=ReasonConfig(enabled=True))
    cfg = TrainConfig().with_overrides(["grpo.objective=nft", "grpo.ema_max=0.5", "grpo.ema_rate=1e-2"])
    assert cfg.grpo.ema_max == 0.5 and cfg.grpo.ema_rate == 0.01
