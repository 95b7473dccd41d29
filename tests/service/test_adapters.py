"""TRL- and Flow-GRPO-style reward functions against a real verifier and decomposer over HTTP."""

import math
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from decomposer.app import create_app as create_decomposer
from decomposer.settings import DecomposerSettings
from dvreward.adapters import flow_grpo_reward_function, to_base64_png, trl_reward_function
from serving.launch import ThreadedServer, free_port
from verifier.app import create_app
from verifier.backends.base import VerifierBackend
from verifier.backends.hf import HFVerifier
from verifier.scoring import failed
from verifier.settings import VerifierSettings
from verifier.tiny import build_tiny_vlm


class NoAnswer(VerifierBackend):
    """An MLLM that never answers yes or no: every question is NaN with a reason."""

    name, model = "no-answer", "none"

    def score_batch(self, items):
        return [[failed(qid, "yes_no_not_in_top_logprobs") for qid, _ in it.questions] for it in items]


def serve(backend, decomposer_url):
    server = ThreadedServer(create_app(VerifierSettings(decomposer_url=decomposer_url), backend=backend), free_port())
    server.__enter__()
    while httpx.get(server.url + "/health").status_code != 200:
        time.sleep(0.05)
    return server


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    model = build_tiny_vlm(tmp_path_factory.mktemp("m") / "qwen", "qwen2_vl", seed=4)
    with ThreadedServer(create_decomposer(DecomposerSettings()), free_port()) as d:
        good, bad = serve(HFVerifier(model), d.url), serve(NoAnswer(), d.url)
        yield good.url, bad.url
        good.__exit__(None)
        bad.__exit__(None)


def test_image_conversions_agree():
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    a = to_base64_png(Image.fromarray(rgb))
    assert to_base64_png(rgb) == a
    assert to_base64_png(torch.tensor(rgb).permute(2, 0, 1).float() / 255) == a
    assert to_base64_png(a) == a


def test_trl_function_returns_floats_and_none(stack):
    good, bad = stack
    prompts = ["a red circle", [{"role": "user", "content": [{"type": "text", "text": "two blue squares"}]}]]
    images = [Image.new("RGB", (64, 64), "white")] * 2
    rewards = trl_reward_function(good)(prompts, images)
    assert len(rewards) == 2 and all(isinstance(r, float) and 0 < r < 1 for r in rewards)
    assert trl_reward_function(bad)(prompts, images) == [None, None]


def test_flow_grpo_function_batches_tensors(stack):
    good, bad = stack
    images = torch.rand(3, 3, 32, 32)
    scores, info = flow_grpo_reward_function(good)(images, ["a red circle", "a star", "three squares"], None)
    assert scores.shape == (3,) and scores.dtype == np.float64 and np.all((scores > 0) & (scores < 1))
    assert len(info["semantic"]) == 3
    scores, info = flow_grpo_reward_function(bad)(images, ["a red circle", "a star", "three squares"], None)
    assert all(math.isnan(s) for s in scores) and info["reason"][0] == "every semantic question failed"
    with pytest.raises(ValueError, match="2 prompts but 3 images"):
        flow_grpo_reward_function(good)(images, ["a", "b"], None)


def test_partly_parsed_prompts_fail_unless_asked_to_score(stack):
    """A prompt the decomposer only partly parses would be rewarded on its quality questions alone: both
    adapters fail it by default (None / NaN with the reason), and score it, flagged, on request."""
    good, _ = stack
    prompts = ["as many stars as a triangle has corners", "a red circle"]
    images = [Image.new("RGB", (64, 64), "white")] * 2
    assert trl_reward_function(good)(prompts, images)[0] is None
    assert all(isinstance(r, float) for r in trl_reward_function(good, incomplete="score")(prompts, images))
    scores, info = flow_grpo_reward_function(good)(images, prompts, None)
    assert math.isnan(scores[0]) and 0 < scores[1] < 1 and info["complete"] == [False, True]
    assert info["reason"][0].startswith("incomplete decomposition")
