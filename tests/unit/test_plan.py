import pytest

from serving.plan import PlanInput, make_plan


def test_plan_by_hand():
    p = PlanInput(n_gpus=8, prompts_per_gpu=2, group_size=10, step_s=20.0, questions=10, prefix_tokens=1000,
                  question_tokens=20, verifier_tokens_per_s=10_000.0, unique_prompts=1000, decompositions_per_s=1.0,
                  utilisation=1.0)  # fmt: skip
    out = make_plan(p)
    assert out["images_per_s"] == 8.0  # 8 x 2 x 10 / 20
    assert out["verifier_tokens_per_image"] == 1200  # 1000 + 10 x 20
    assert out["verifier_replicas"] == 1 and out["verifier_tokens_per_s"] == 9600.0
    assert out["decomposer_replicas_first_epoch"] == 1  # 0.8 prompts/s
    assert out["reward_latency_per_step_s"] == pytest.approx(160 * 1200 / 10_000)
    naive = make_plan(PlanInput(**{**out["inputs"], "shared_prefix": False}))
    assert naive["verifier_tokens_per_image"] == 10 * 1020 and naive["verifier_replicas"] == 9
