"""The trainer's reward fetcher against real services: overlap, NaN kept as NaN, and a verifier killed and
restarted mid-request pausing (not zeroing) the rewards."""

import math
import threading
import time

import pytest
from PIL import Image

from serving.launch import free_port, start_decomposer, start_verifier
from trainer.reward import RewardFetcher, RewardUnavailable

pytestmark = pytest.mark.slow
IMAGES = [Image.new("RGB", (64, 64), c) for c in ("white", "red", "blue", "green")]
PROMPTS = ["a red circle", "two blue squares", "a star left of a circle", "a green triangle"]


@pytest.fixture(scope="module")
def decomposer():
    server, url = start_decomposer()
    with server:
        yield url


def test_rewards_arrive_asynchronously_and_in_order(decomposer, tmp_path):
    server, url = start_verifier(env={"VERIFIER_DECOMPOSER_URL": decomposer}, log_path=tmp_path / "v.log")
    with server:
        fetcher = RewardFetcher(url)
        futures = [fetcher.submit(PROMPTS[:2], IMAGES[:2]), fetcher.submit(PROMPTS[2:], IMAGES[2:])]
        got = [fetcher.wait(f) for f in futures]
        assert all(0 < v < 1 for r in got for v in r.values) and len(got[1].values) == 2
        assert fetcher.waited_s > 0
        fetcher.close()
        # a batch larger than the verifier accepts per request (64 by default) is split, in order
        big = RewardFetcher(url)
        split = big.wait(big.submit(PROMPTS * 17, IMAGES * 17))  # 68 images
        whole = [v for r in got for v in r.values]
        assert len(split.values) == 68 and split.values[64:] == pytest.approx(whole, abs=1e-5)
        big.close()
        # a prompt the decomposer cannot fully parse is NaN with its reason for the trainer (excluded from its
        # group like any failed reward), not a reward earned on quality questions alone
        implicit = "as many stars as a triangle has corners"
        for policy, nan_expected in (("fail", True), ("score", False)):
            f = RewardFetcher(url, incomplete=policy)
            r = f.wait(f.submit([implicit, PROMPTS[0]], IMAGES[:2]))
            assert math.isnan(r.values[0]) is nan_expected and 0 < r.values[1] < 1
            if nan_expected:
                assert "incomplete decomposition" in r.reasons[0]
            f.close()
        # signal="semantic": the semantic mean of the same scoring, not the geometric reward (quality ignored)
        sem = RewardFetcher(url, signal="semantic")
        r = sem.wait(sem.submit(PROMPTS, IMAGES))
        assert r.values == r.semantic and r.values != got[0].values + got[1].values
        sem.close()
        with pytest.raises(ValueError, match="signal"):
            RewardFetcher(url, signal="quality")


def test_verifier_killed_mid_run_pauses_then_resumes(decomposer, tmp_path, caplog):
    port = free_port()
    env = {"VERIFIER_DECOMPOSER_URL": decomposer}
    server, url = start_verifier(port=port, env=env, log_path=tmp_path / "v1.log")
    server.start()
    fetcher = RewardFetcher(url, retry_every_s=0.3, patience_s=120)
    assert all(not math.isnan(v) for v in fetcher.wait(fetcher.submit(PROMPTS, IMAGES)).values)
    server.stop()
    future = fetcher.submit(PROMPTS, IMAGES)  # the verifier is dead: this must wait, not return zeros
    time.sleep(1.5)
    assert not future.done()
    restarted, _ = start_verifier(port=port, env=env, log_path=tmp_path / "v2.log")
    threading.Thread(target=restarted.start, daemon=True).start()
    rewards = fetcher.wait(future)
    assert all(0 < v < 1 for v in rewards.values)
    assert "training is paused" in caplog.text and "training resumes" in caplog.text
    restarted.stop()
    fetcher.close()


def test_patience_runs_out_with_a_clear_error():
    fetcher = RewardFetcher(f"http://127.0.0.1:{free_port()}", retry_every_s=0.1, patience_s=0.5)
    assert fetcher.describe()["status"].startswith("unreachable at start")  # recorded as such, never invented
    with pytest.raises(RewardUnavailable, match="training stops rather than train on missing rewards"):
        fetcher.wait(fetcher.submit(PROMPTS[:1], IMAGES[:1]))
    fetcher.close()
