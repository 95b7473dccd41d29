"""``alphagrpo bench reward-signal`` end to end on a small random UMM: rollouts scored by the real services."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_reward_signal_bench_runs(tmp_path):
    import torch

    from recipes.umm import umm_tokenizer
    from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig

    tok = umm_tokenizer()
    torch.manual_seed(0)
    TinyUMM(TinyUMMConfig(vocab_size=len(tok) + (-len(tok)) % 32, pad_token_id=tok.pad_token_id, text_hidden=32,
                          text_layers=1, image_size=32, unet_channels=(16, 32), cross_dim=32,
                          attention_head_dim=8)).save(tmp_path / "umm")  # fmt: skip
    tok.save_pretrained(tmp_path / "umm")
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "bench", "reward-signal", "--json", "--model",
                          str(tmp_path / "umm"), "--prompts", "3", "--group", "3", "--n-steps", "3", "--split", "val"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])  # strict JSON: no NaN
    assert figures["split"] == "val" and figures["images"] == 9 and 0 <= figures["oracle_accuracy"] <= 1
    assert 0 <= figures["mixed_group_fraction"] <= 1
    for k in ("auc_geometric", "auc_semantic", "auc_gated", "auc_semantic_min", "auc_quality"):
        assert figures[k] is None or 0 <= figures[k] <= 1
    assert figures["verifier"].endswith("shapes-verifier")
