"""Data parallelism is exact: 2 processes under torchrun (gloo, CPU) produce the same parameters as one
process on the same global batch, and both ranks hold identical weights afterwards."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from serving.launch import free_port

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "ddp_train.py"
ROOT = Path(__file__).resolve().parents[2]


def run(out: Path, nproc: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(SCRIPT), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", str(SCRIPT), str(out)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_two_gloo_ranks_equal_one_process(tmp_path):
    """Same rewards, same summed gradient (to float rounding: the two ranks add their terms in a different
    order than one process does), identical weights on both ranks. Parameters are not compared elementwise
    with the single process: Adam turns a 1e-9 gradient difference on a near-zero element into a full-size
    step of the other sign, so the gradient is the right object to compare."""
    run(tmp_path / "one", 1)
    run(tmp_path / "two", 2)
    assert (tmp_path / "one" / "rewards.txt").read_text() == (tmp_path / "two" / "rewards.txt").read_text()
    g1 = load_file(str(tmp_path / "one" / "grad0.safetensors"))
    g2 = load_file(str(tmp_path / "two" / "grad0.safetensors"))
    assert set(g1) == set(g2) and len(g1) > 50
    for k in g1:
        scale = float(g1[k].abs().max()) + 1e-12
        assert float((g1[k] - g2[k]).abs().max()) <= 1e-4 * scale + 1e-9, f"{k}: 2 ranks' gradient differs"
    r0 = load_file(str(tmp_path / "two" / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "two" / "rank1.safetensors"))
    init = load_file(str(tmp_path / "one" / "init.safetensors"))
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the ranks' weights diverged"
    assert sum(not torch.equal(r0[k], init[k]) for k in r0) > 10  # the step moved the weights
    ckpt = load_file(str(tmp_path / "two" / "run" / "checkpoint" / "model.safetensors"))  # rank 0 alone saves
    assert all(torch.equal(ckpt[k], r0[k]) for k in ckpt)
