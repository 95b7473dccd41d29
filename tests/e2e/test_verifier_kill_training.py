"""Fault: the verifier is SIGKILLed in the middle of a training run and restarted a few seconds later. The
run pauses (it never turns the outage into zero or NaN rewards), resumes when the verifier is back, reaches
the same final step with every step logged once, and ends with exactly the weights of an uninterrupted run
against the same verifier (one image per verifier batch, so rewards do not depend on batching)."""

import json
import threading
import time

import pytest
import torch

from serving.launch import free_port, start_decomposer, start_verifier
from tests.e2e.test_train_loop import config, policy
from tests.helpers.shapes_task import ToyTask
from trainer.reward import RewardFetcher
from trainer.train import train

pytestmark = pytest.mark.slow
STEPS = 4


def logged_steps(run) -> list[int]:
    try:
        return [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


def test_verifier_killed_mid_training_loses_nothing(tmp_path, caplog):
    decomposer, durl = start_decomposer(log_path=tmp_path / "d.log")
    port = free_port()
    env = {"VERIFIER_DECOMPOSER_URL": durl, "VERIFIER_MAX_BATCH_IMAGES": "1"}
    with decomposer:
        verifier, url = start_verifier(port=port, env=env, log_path=tmp_path / "v1.log")
        verifier.start()
        try:
            task = ToyTask()
            straight = policy(task)
            train(config(tmp_path / "straight", STEPS, url), straight, task, RewardFetcher(url), progress=False)

            model = policy(task)
            fetcher = RewardFetcher(url, retry_every_s=0.3, patience_s=180)
            out: dict = {}
            run = tmp_path / "faulted"
            worker = threading.Thread(target=lambda: out.update(records=train(config(run, STEPS, url), model, task,
                                                                               fetcher, progress=False)))  # fmt: skip
            worker.start()
            deadline = time.monotonic() + 240
            while 1 not in logged_steps(run):  # step 1 is done: kill the verifier inside step 2
                assert worker.is_alive() and time.monotonic() < deadline
                time.sleep(0.05)
            verifier.stop(sig=9)
            time.sleep(3)
            assert worker.is_alive()  # paused on rewards, not crashed and not finished with made-up rewards
            verifier, _ = start_verifier(port=port, env=env, log_path=tmp_path / "v2.log")
            verifier.start()
            worker.join(timeout=300)
            assert not worker.is_alive()
        finally:
            verifier.stop()
    records = out["records"]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1)) == logged_steps(run)
    assert all(r["n_invalid"] == 0 and not r["skipped"] and 0 < r["reward_mean"] < 1 for r in records)
    assert "training is paused" in caplog.text and "training resumes" in caplog.text
    assert max(r["reward_wait_s"] for r in records) > 2.5  # the step that waited out the outage
    for (k, a), b in zip(straight.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
