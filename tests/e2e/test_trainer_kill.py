"""Fault: the trainer is SIGKILLed in the middle of a run (during a step or a checkpoint write); ``--resume``
finishes with parameters identical to an uninterrupted run, and no half-written checkpoint is ever loaded."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "helpers" / "ddp_train.py"
ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
STEPS = 6


def checkpointed_step(run: Path) -> int:
    state = run / "checkpoint" / "state.json"
    try:
        return json.loads(state.read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.mark.parametrize("kill_after_step", [1, 3])
def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path, kill_after_step):
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "straight"), str(STEPS)], env=ENV, check=True,
                   timeout=300, capture_output=True)  # fmt: skip
    victim = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path / "killed"), str(STEPS)], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    run = tmp_path / "killed" / "run"
    deadline = time.monotonic() + 240
    while checkpointed_step(run) < kill_after_step:  # poll fast: the kill lands inside the next step or save
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    time.sleep(0.05 * kill_after_step)  # a different point of the step for each case
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    done = checkpointed_step(run)
    assert kill_after_step <= done < STEPS, "the kill did not interrupt the run"
    res = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "killed"), str(STEPS), "--resume"], env=ENV,
                         timeout=300, capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    a = load_file(str(tmp_path / "straight" / "rank0.safetensors"))
    b = load_file(str(tmp_path / "killed" / "rank0.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, STEPS + 1))  # each step logged once, none lost
    assert not (run / "checkpoint.tmp").exists() and checkpointed_step(run) == STEPS
