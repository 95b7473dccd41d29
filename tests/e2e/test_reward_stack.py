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


def test_demo_command_runs():
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "demo"], capture_output=True, text=True,
                         timeout=300, check=True, cwd=ROOT)  # fmt: skip
    assert "DVReward = sqrt(semantic x quality)" in out.stdout and "P(yes)=" in out.stdout
    json.dumps(out.stdout)
