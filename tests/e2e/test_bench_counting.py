"""``alphagrpo bench counting`` end to end on a small random UMM."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _blind_umm(folder: Path) -> None:
    """The shipped base with its text projection zeroed: it still draws objects, but sees a zero context
    whatever the text, so every text must draw the same images from the same noise."""
    import shutil

    import torch

    from trainer.policies.tiny_umm import TinyUMM

    shutil.copytree(ROOT / "models" / "shapes-umm", folder)
    model = TinyUMM.load(folder)
    with torch.no_grad():
        model.proj.weight.zero_()
        model.proj.bias.zero_()
    model.save(folder)


def _bench(folder: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "bench", "counting", "--json", "--model", str(folder),
                          "--split", "val", "--repeats", "1", "--n-steps", "6", *extra],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # strict JSON: no NaN


def test_counting_bench_texts_share_their_noises(tmp_path):
    from shapesworld.prompts import prompts

    _blind_umm(tmp_path / "blind")
    figures = _bench(tmp_path / "blind", "--cfg-scale", "1", "--cfg-scale", "4")
    n = len([p for p in prompts("val") if p.inference == "number"])
    assert figures["prompts"] == n > 0 and figures["split"] == "val"
    for w in ("cfg_1", "cfg_4"):
        per = figures[w]
        assert per["explicit"]["images"] == n
        # a text-blind model drew the same image under each text from the same noise: identical figures
        assert per["explicit"] == per["implicit"] == per["planned"] == per["plan_span"] == per["plan_only"]
        assert set(per["explicit"]["by_target"]) <= {"2", "3", "4"}
        # the base draws objects even blind, so images that differed between texts would show here
        assert any(t["mean_drawn"] > 0 for t in per["explicit"]["by_target"].values())
    only = _bench(tmp_path / "blind", "--cfg-scale", "4", "--text", "planned", "--text", "explicit")
    assert list(only["cfg_4"]) == ["planned", "explicit"] and only["cfg_4"]["planned"] == figures["cfg_4"]["planned"]


@pytest.mark.parametrize("args,named", [(["bench", "counting", "--split", "test"], "--split"),
                                        (["bench", "counting", "--text", "plan"], "--text"),
                                        (["bench", "counting", "--model", "docs"], "no umm_config.json"),
                                        (["shapes", "eval-umm", "--model", "docs"], "no umm_config.json"),
                                        (["shapes", "eval-umm", "--split", "test"], "--split")])
def test_counting_and_eval_umm_refuse_bad_options(args, named):
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    text = " ".join(out.stderr.replace("│", " ").split())  # the error box wraps lines
    assert out.returncode == 2 and named in text, out.stderr
