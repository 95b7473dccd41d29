"""The README's reward example end to end: decomposer and verifier as processes on their embedded
defaults, the curl to /v1/reward, and the demo command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dvreward.schemas import RewardResponse
from serving.launch import start_decomposer, start_verifier

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_readme_reward_curl(tmp_path):
    decomposer, durl = start_decomposer(log_path=tmp_path / "d.log")
    with decomposer:
        verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl}, log_path=tmp_path / "v.log")
        with verifier:
            script = (
                f"curl -s -X POST {vurl}/v1/reward -H 'content-type: application/json' -d "
                '"{\\"items\\":[{\\"prompt\\":\\"a red circle to the left of a blue square\\",'
                '\\"image\\":\\"$(base64 -w0 docs/example.png)\\"}]}"'
            )
            out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
            res = RewardResponse.model_validate_json(out.stdout).results[0]
            assert res.error is None and 0 < res.reward < 1
            assert {q.tag for q in res.questions} >= {"existence", "attribute", "spatial", "geometry"}
            assert len(res.scores) == len(res.questions) and all(s.p_yes is not None for s in res.scores)
            assert res.reward == pytest.approx((res.semantic * res.quality) ** 0.5)


def test_demo_command_runs(tmp_path):
    """The README's main command end to end, on a small UMM saved the way train-umm saves one: the reward
    demo, then a time-limited GRPO run that leaves its report, curves and grids."""
    import torch

    from recipes.umm import umm_tokenizer
    from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig

    tok = umm_tokenizer()
    torch.manual_seed(0)
    TinyUMM(TinyUMMConfig(vocab_size=len(tok) + (-len(tok)) % 32, pad_token_id=tok.pad_token_id, text_hidden=32,
                          text_layers=1, image_size=32, unet_channels=(16, 32), cross_dim=32,
                          attention_head_dim=8)).save(tmp_path / "umm")  # fmt: skip
    tok.save_pretrained(tmp_path / "umm")
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "demo", "--minutes", "0.05", "--model",
                          str(tmp_path / "umm"), "--run-dir", str(run), "--eval-prompts", "8"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DVReward = sqrt(semantic x quality)" in out.stdout and "P(yes)=" in out.stdout
    assert "# GRPO demo" in out.stdout and (run / "report.md").exists() and (run / "curves.png").exists()
    assert (run / "eval-000000.png").exists() and (run / "checkpoint" / "model.safetensors").exists()
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged[0]["step"] == 0 and logged[-1]["step"] >= 1 and "eval" in logged[-1]


def test_generate_refines_until_dvreward_stops_improving(tmp_path):
    """``alphagrpo generate --think --reflect K`` on a small refinement-capable UMM against the embedded
    services: with a margin no refinement can reach, it stops after the first pass and keeps the first image;
    with a negative margin every pass is accepted and all K run. The verdict is DVReward's, never the oracle's."""
    import torch

    from alphagrpo.generate import generate
    from recipes.umm import umm_tokenizer
    from trainer.policies.tiny_umm import TinyUMM, TinyUMMConfig

    tok = umm_tokenizer()
    torch.manual_seed(0)
    TinyUMM(TinyUMMConfig(vocab_size=len(tok) + (-len(tok)) % 32, pad_token_id=tok.pad_token_id, text_hidden=32,
                          text_layers=1, image_size=32, unet_channels=(16, 32), cross_dim=32, attention_head_dim=8,
                          image_patch=8)).save(tmp_path / "umm")  # fmt: skip
    tok.save_pretrained(tmp_path / "umm")
    decomposer, durl = start_decomposer(log_path=tmp_path / "d.log")
    with decomposer:
        verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl}, log_path=tmp_path / "v.log")
        with verifier:
            out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "generate", "--prompt",
                                  "a photo of a red star",
                                  "--model", str(tmp_path / "umm"), "--think", "--reflect", "3", "--margin", "1.0",
                                  "--verifier-url", vurl, "--out", str(tmp_path / "g1")],
                                 capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
            assert out.returncode == 0, out.stderr[-3000:]
            s = json.loads(out.stdout.strip().splitlines()[-1])
            assert len(s["rounds"]) == 2 and s["rounds"][1]["accepted"] is False and "did not raise" in s["stopped"]
            assert s["reward"] == s["rounds"][0]["reward"] and 0 < s["reward"] < 1
            assert s["rounds"][0]["text"].startswith("<think>") and (tmp_path / "g1" / "final.png").exists()
            s = generate("a photo of a red star", tmp_path / "umm", vurl, tmp_path / "g2", reflect=2, margin=-1.0,
                         n_steps=4)  # fmt: skip
            assert [r.get("accepted") for r in s["rounds"]] == [None, True, True]
            assert s["reward"] == s["rounds"][-1]["reward"] and s["stopped"] == "refined 2 times"


def test_readme_python_example_runs(tmp_path):
    """The README's "Using DVReward from Python" example, as written, against a local stack (only the URL
    is the one the test's verifier listens on)."""
    import contextlib
    import io
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using DVReward from Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    decomposer, durl = start_decomposer(log_path=tmp_path / "d.log")
    with decomposer:
        verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl}, log_path=tmp_path / "v.log")
        with verifier:
            out = io.StringIO()
            cwd = Path.cwd()
            try:
                import os

                os.chdir(ROOT)
                with contextlib.redirect_stdout(out):
                    exec(code.replace("http://127.0.0.1:8002", vurl), {})  # noqa: S102
            finally:
                os.chdir(cwd)
    lines = out.getvalue().splitlines()
    reward, semantic, quality = (float(x) for x in lines[0].split())
    assert 0 < reward < 1 and reward == pytest.approx((semantic * quality) ** 0.5, abs=1e-6)
    assert any(line.startswith("Is there a circle?") for line in lines[1:])
