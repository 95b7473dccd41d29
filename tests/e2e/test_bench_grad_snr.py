"""``alphagrpo bench grad-snr`` end to end (real training steps, oracle rewards, no update) and the same
``group.field=value`` overrides on ``alphagrpo train --set``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.grad_snr import parse_variant

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TINY = "rollout.group_size=3,rollout.prompts_per_step=2,rollout.n_steps=4,rollout.window_range=[0,1]"


@pytest.fixture(scope="module")
def tiny_umm(tmp_path_factory):
    from recipes.umm import umm_tokenizer
    from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig

    path = tmp_path_factory.mktemp("umm") / "umm"
    tok = umm_tokenizer()
    torch.manual_seed(0)
    TinyUMM(TinyUMMConfig(vocab_size=len(tok) + (-len(tok)) % 32, pad_token_id=tok.pad_token_id, text_hidden=32,
                          text_layers=1, image_size=32, unet_channels=(16, 32), cross_dim=32,
                          attention_head_dim=8)).save(path)  # fmt: skip
    tok.save_pretrained(path)
    return path


def test_measure_records_real_step_gradients_and_leaves_weights():
    # the shipped base: its images earn mixed oracle rewards, so the steps have advantages and real gradients
    from transformers import AutoTokenizer

    from benchmarks.grad_snr import measure
    from trainer.config import TrainConfig
    from trainer.policies.tiny_umm import TinyUMM

    cfg = TrainConfig.from_yaml(ROOT / "configs/shapes-t2i.yaml").with_overrides(
        ["reward.mode=oracle", *parse_variant(f"tiny:{TINY}")[1]])
    policy = TinyUMM.load(ROOT / cfg.model_path).train()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    out = measure(cfg, policy, AutoTokenizer.from_pretrained(ROOT / cfg.model_path), batches=3, progress=False)
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())  # nothing was applied
    assert out["images_per_step"] == 6 and out["batches"] == 3 and out["step_s"] > 0 and out["skipped_steps"] == 0
    assert -1 <= out["signal_fraction"] <= 1 and out["signal_fraction_se"] > 0
    assert 0.99 < sum(m["norm2_share"] for m in out["by_module"].values()) < 1.01
    assert 0 <= out["reward_mean"] <= 1  # the oracle's atom accuracy
    assert all(p.grad is None for p in policy.parameters())  # the recorder leaves no gradient behind
    assert out["gradients"] == 3
    two = measure(cfg.with_overrides(["grpo.inner_epochs=2"]), policy,
                  AutoTokenizer.from_pretrained(ROOT / cfg.model_path),
                  batches=3, progress=False)  # fmt: skip
    assert two["gradients"] == 3  # one gradient a step (the last pass), not one a pass: pairs stay independent


def test_cli_compares_variants_and_refuses_bad_ones(tiny_umm):
    base = [sys.executable, "-m", "alphagrpo.cli", "bench", "grad-snr", "--json", "--model", str(tiny_umm),
            "--batches", "3"]  # fmt: skip
    out = subprocess.run([*base, "--variant", f"tiny:{TINY}", "--variant", f"shared:{TINY},rollout.shared_noise=true"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["reward"] == "oracle atoms" and set(figures["variants"]) == {"tiny", "shared"}
    for v in figures["variants"].values():  # a random UMM draws little the oracle credits: steps may be skipped
        assert v["images_per_step"] == 6 and 0 <= v["skipped_steps"] <= 3
        assert v["signal_fraction"] is None or -1 <= v["signal_fraction"] <= 1
    assert figures["variants"]["shared"]["overrides"][-1] == "rollout.shared_noise=true"
    bad = subprocess.run([*base, "--variant", "x:rollout.window_lenn=2"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "window_lenn" in bad.stderr


def test_train_applies_set_overrides_and_refuses_bad_ones(tiny_umm, tmp_path):
    """``alphagrpo train --set`` (the same overrides): one oracle-rewarded step of a tiny UMM, no services."""
    run = tmp_path / "run"
    sets = [f"model_path={tiny_umm}", "run.steps=1", f"run.run_dir={run}", "run.monitor_port=null", "eval.prompts=2",
            *parse_variant(f"tiny:{TINY}")[1]]  # fmt: skip
    cmd = [sys.executable, "-m", "alphagrpo.cli", "train", "--config", "configs/shapes-t2i-oracle.yaml"]
    out = subprocess.run([*cmd, *[a for s in sets for a in ("--set", s)]], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    used = json.loads((run / "config.json").read_text())
    assert used["rollout"]["group_size"] == 3 and used["rollout"]["window_range"] == [0, 1]
    assert used["model_path"] == str(tiny_umm) and used["reward"]["mode"] == "oracle"  # the file's own fields stay
    assert json.loads(out.stdout.strip().splitlines()[-1])["steps"] == 1
    bad = subprocess.run([*cmd, "--set", "rollout.window_len=99"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert bad.returncode == 2 and "must fit in n_steps" in bad.stderr
