"""Plan rollouts and the plan loss of reasoning text-to-image, on a tiny random UMM."""

import math

import pytest
import torch

from tests.helpers.shapes_task import ToyTask
from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig
from trainer.reasoning import plan_logprobs, plan_loss, sample_plans


@pytest.fixture(scope="module")
def task():
    return ToyTask(implicit=True)


def model(task, seed=0):
    torch.manual_seed(seed)
    return TinyUMM(TinyUMMConfig(vocab_size=len(task.tok) + (-len(task.tok)) % 32, pad_token_id=task.pad_id,
                                 text_hidden=32, text_layers=1, image_size=16, unet_channels=(16, 32), cross_dim=32,
                                 attention_head_dim=8))  # fmt: skip


def test_plans_are_sampled_per_row_and_scored_for_format(task):
    m = model(task)
    prompts = (["a photo of as many stars as a triangle has corners"] * 3
               + ["a photo of a circle the colour of grass"] * 3)
    plans = sample_plans(m, task, prompts, max_tokens=6, generator=torch.Generator().manual_seed(1))
    t = plans.generated.shape[1]
    assert plans.ids.shape[0] == 6 and plans.logprobs.shape == (6, t) and len(plans.texts) == 6
    assert all(x.startswith("<think>") for x in plans.texts)
    # rows differ (sampled per row, not per prompt) and the prompt part is left-padded and shared per prompt
    assert len({tuple(r.tolist()) for r in plans.ids}) > 2
    assert bool((plans.mask[:, -t - 1] == 1).all())  # every row's last prompt token (<think>) is real
    # a random model rarely closes its plan within 6 tokens; format is 1 exactly for closed, non-empty plans
    for text, f in zip(plans.texts, plans.format.tolist()):
        closed = text.endswith("</think>") and text.count("</think>") == 1
        assert f in (0.0, 1.0) and (f == 1.0) <= closed
    # the log-probs recorded while sampling are what training recomputes (the text ratio == 1 invariant)
    again = plan_logprobs(m, plans)
    gen = plans.generated.bool()
    assert torch.allclose(again[gen], plans.logprobs[gen], atol=1e-5) and bool((plans.logprobs[~gen] == 0).all())


def test_plan_loss_moves_each_plan_by_its_own_advantage(task):
    """One SGD step on the plan loss with advantages (+1, -1): the first plan becomes more likely, the second
    less (each sample its own advantage: the reference's broadcast would mix them)."""
    m = model(task)
    plans = sample_plans(m, task, ["a photo of a square the colour of the sky"] * 2, max_tokens=5,
                         generator=torch.Generator().manual_seed(3))  # fmt: skip
    adv = torch.tensor([1.0, -1.0])
    loss, st = plan_loss(m, plans, adv, first=True)
    assert math.isfinite(st.loss) and st.clip_frac == 0.0
    loss.backward()
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    g = plans.generated.float()
    before = (plans.logprobs * g).sum(-1)
    after = (plan_logprobs(m, plans).detach() * g).sum(-1)
    assert after[0] > before[0] and after[1] < before[1]
    with pytest.raises(AssertionError, match="first-step ratio"):  # the weights moved: not a first pass
        plan_loss(m, plans, adv, first=True)


def test_plan_kl_is_zero_against_itself_and_positive_after_a_change(task):
    m = model(task)
    m.freeze_reference()
    plans = sample_plans(m, task, ["a photo of a shape with no corners"] * 2, max_tokens=5,
                         generator=torch.Generator().manual_seed(4))  # fmt: skip
    _, st = plan_loss(m, plans, torch.tensor([0.5, -0.5]), first=True, kl_coef=0.1)
    assert abs(st.kl) < 1e-6
    with torch.no_grad():
        m.lm.model.embed_tokens.weight.add_(0.3 * torch.randn_like(m.lm.model.embed_tokens.weight))
    _, st = plan_loss(m, plans, torch.tensor([0.5, -0.5]), first=False, kl_coef=0.1)
    assert st.kl > 1e-4
