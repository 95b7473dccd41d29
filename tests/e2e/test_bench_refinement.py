"""``alphagrpo bench refinement`` end to end on the shipped base and on a text-blind copy of it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.refinement import tally

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _bench(folder: Path | str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "bench", "refinement", "--json", "--model",
                          str(folder), "--prompts", "24", "--synthetic", "3", *extra],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tally_by_hand():
    kinds = ["keep", "move", "move", "recolour", "keep"]
    before = [True, False, False, False, True]
    after = {"gold": [True, True, False, True, False], "keep": [True, False, False, False, True]}
    t = tally(kinds, before, after)
    assert t["first_accuracy"] == 0.4 and t["refined_accuracy"] == {"gold": 0.6, "keep": 0.4}
    assert t["by_kind"]["keep"] == {"n": 2, "broken_gold": 1, "broken_keep": 0}
    assert t["by_kind"]["move"] == {"n": 2, "repaired_gold": 1, "repaired_keep": 0}
    assert t["by_kind"]["recolour"] == {"n": 1, "repaired_gold": 1, "repaired_keep": 0}


def test_every_first_image_is_classified_and_a_blind_model_ignores_the_edit(tmp_path):
    import shutil

    import torch

    from trainer.policies.tiny_umm import TinyUMM

    base = _bench(ROOT / "models" / "shapes-umm")
    own = base["own_images"]
    assert own["images"] == base["prompts"] == 24
    assert sum(r["n"] for r in own["by_kind"].values()) == 24
    assert own["by_kind"].get("keep", {"n": 0})["n"] == round(own["first_accuracy"] * 24)  # keep = right first
    assert set(own["refined_accuracy"]) == {"model", "gold", "keep"}
    assert sum(sum(v.values()) for v in own["model_edit_verbs"].values()) == 24
    assert set(base["synthetic"]) <= {"recolour", "reshape", "drop", "extra", "move"} and base["synthetic"]
    assert all(0 <= r["repaired_gold"] <= r["n"] == 3 for r in base["synthetic"].values())
    # the same base with its text projection zeroed sees neither text nor input image: every edit text must give
    # the same refined images from the same noise, so each kind's figures agree across texts
    shutil.copytree(ROOT / "models" / "shapes-umm", tmp_path / "blind")
    model = TinyUMM.load(tmp_path / "blind")
    with torch.no_grad():
        model.proj.weight.zero_()
        model.proj.bias.zero_()
    model.save(tmp_path / "blind")
    blind = _bench(tmp_path / "blind", "--synthetic", "0")
    acc = blind["own_images"]["refined_accuracy"]
    assert acc["model"] == acc["gold"] == acc["keep"] and "synthetic" not in blind
    for k, row in blind["own_images"]["by_kind"].items():
        verb = "broken" if k == "keep" else "repaired"
        assert row[f"{verb}_model"] == row[f"{verb}_gold"] == row[f"{verb}_keep"], k


@pytest.mark.parametrize("args,named", [(["--split", "test"], "--split"), (["--model", "docs"], "--model"),
                                        (["--prompts", "0"], "--prompts")])  # fmt: skip
def test_refinement_bench_refuses_bad_options(args, named):
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "bench", "refinement", *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert out.returncode == 2 and named in " ".join(out.stderr.replace("│", " ").split()), out.stderr[-2000:]
