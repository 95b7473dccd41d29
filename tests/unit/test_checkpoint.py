"""Atomic checkpoints: a crash at any point of ``save`` leaves a complete checkpoint that ``load`` finds."""

import os
import shutil

import pytest
import torch

from checkpoint import latest, load, save


def model_opt(seed):
    torch.manual_seed(seed)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    return m, opt


def test_roundtrip_and_crash_between_renames(tmp_path):
    m, opt = model_opt(0)
    save(tmp_path, m, opt, {"step": 1})
    m2, opt2 = model_opt(1)
    assert load(tmp_path, m2, opt2) == {"step": 1, "optimizer_restored": True, "grown": []}
    assert torch.equal(m2.weight, m.weight)
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    # a crash after "checkpoint -> checkpoint.old" and before "checkpoint.tmp -> checkpoint": only .old and a
    # possibly half-written .tmp are on disk; the .old one is complete and is what resume must use
    save(tmp_path, m, opt, {"step": 2})
    os.replace(tmp_path / "checkpoint", tmp_path / "checkpoint.old")
    (tmp_path / "checkpoint.tmp").mkdir()
    (tmp_path / "checkpoint.tmp" / "model.safetensors").write_bytes(b"half")
    assert latest(tmp_path) == tmp_path / "checkpoint.old"
    assert load(tmp_path, *model_opt(2))["step"] == 2
    save(tmp_path, m, opt, {"step": 3})  # the next save cleans up
    assert latest(tmp_path) == tmp_path / "checkpoint" and not (tmp_path / "checkpoint.old").exists()
    shutil.rmtree(tmp_path / "checkpoint")
    assert latest(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        load(tmp_path, *model_opt(3))


def test_weights_only_copy_loads_with_a_fresh_optimizer(tmp_path):
    m, opt = model_opt(0)
    save(tmp_path, m, opt, {"step": 7})
    (tmp_path / "checkpoint" / "optimizer.safetensors").unlink()  # what the repository keeps
    m2, _ = model_opt(1)
    fresh = torch.optim.AdamW(m2.parameters(), lr=0.1)
    state = load(tmp_path, m2, fresh)
    assert state == {"step": 7, "optimizer_restored": False, "grown": []} and torch.equal(m2.weight, m.weight)
    assert fresh.state_dict()["state"] == {}
