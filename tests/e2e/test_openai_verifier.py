"""The ``openai`` verifier backend over real HTTP.

* Against our OpenAI-compatible test server backed by a tiny Qwen2-VL (real next-token log-probs, replies
  validated against the ``openai`` package's types): with top-k covering the vocabulary, P(yes) from the
  log-probs equals the ``hf`` backend's P(yes) from the full distribution of the same model.
* Against a real ``transformers serve`` process with a tiny LLaVA: image parts travel, the server's missing
  log-probs become NaN with a reason, and a server error is retried and then reported, never a 0.
"""

import base64
import io
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from serving.launch import ServerProcess, ThreadedServer, free_port
from tests.helpers.openai_server import create_app
from verifier.backends.base import ScoreItem
from verifier.backends.hf import HFVerifier
from verifier.backends.openai import OpenAIVerifier
from verifier.scoring import REASON_BACKEND, REASON_NO_LOGPROBS
from verifier.tiny import build_tiny_vlm

pytestmark = pytest.mark.slow
QUESTIONS = [("s1", "Is there a red circle?"), ("s2", "Is the circle to the left of the star?"), ("q1", "Is it sharp?")]


def item(colour):
    img = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(img).ellipse((8, 8, 40, 40), fill=colour)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return ScoreItem(img, QUESTIONS, base64.b64encode(buf.getvalue()).decode(), "image/png")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "qwen", "qwen2_vl", seed=5)


async def test_logprob_path_equals_full_distribution(qwen):
    with ThreadedServer(create_app(str(qwen), max_top_logprobs=1000), free_port()) as server:
        app = server.server.config.app
        vocab = HFVerifier(qwen).lm.get_output_embeddings().weight.shape[0]
        backend = OpenAIVerifier(f"{server.url}/v1", "tiny-qwen", top_logprobs=vocab)
        items = [item("red"), item("blue")]
        got = await backend.ascore_batch(items)
        want = HFVerifier(qwen).score_shared(items)
        for g, w in zip(got, want):
            for a, b in zip(g, w):
                assert a.id == b.id and a.p_yes == pytest.approx(b.p_yes, abs=1e-4)
        sent = app.state.requests  # concurrent requests arrive in any order
        assert len(sent) == 6 and all(r["temperature"] == 0.0 and r["max_tokens"] == 1 and r["logprobs"] for r in sent)
        parts = [r["messages"][1]["content"] for r in sent]
        assert all(p[0]["image_url"]["url"].startswith("data:image/png;base64,") for p in parts)
        assert sorted(p[1]["text"] for p in parts) == sorted(q for _, q in QUESTIONS * 2)


async def test_too_many_top_logprobs_is_reported_not_zero(qwen):
    with ThreadedServer(create_app(str(qwen), max_top_logprobs=20), free_port()) as server:
        backend = OpenAIVerifier(f"{server.url}/v1", "tiny-qwen", top_logprobs=50, max_attempts=1)
        scores = (await backend.ascore_batch([item("red")]))[0]
        assert all(s.p_yes is None and s.reason == REASON_BACKEND for s in scores)  # the server's 400, as NaN


@pytest.fixture(scope="module")
def transformers_serve(tmp_path_factory):
    llava = build_tiny_vlm(tmp_path_factory.mktemp("llava") / "llava", "llava", seed=2)
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    port = free_port()
    log = tmp_path_factory.mktemp("tserve") / "serve.log"
    cmd = [exe, "serve", str(llava), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with ServerProcess(cmd, health_url=f"http://127.0.0.1:{port}/health", timeout_s=120, log_path=log) as p:
        p.url, p.model = f"http://127.0.0.1:{port}/v1", str(llava)
        yield p


async def test_transformers_serve_transport_and_missing_logprobs(transformers_serve):
    backend = OpenAIVerifier(transformers_serve.url, transformers_serve.model, top_logprobs=5)
    scores = await backend.ascore_batch([item("red"), item("green")])
    assert [[s.id for s in row] for row in scores] == [["s1", "s2", "q1"]] * 2
    assert all(s.p_yes is None and s.reason == REASON_NO_LOGPROBS for row in scores for s in row)


async def test_transformers_serve_error_is_retried_then_nan(transformers_serve):
    bad = ScoreItem(None, [("s1", "Is there a cat?")], "AAAA", "image/png")  # the server fails with a 500
    backend = OpenAIVerifier(transformers_serve.url, transformers_serve.model, max_attempts=2)
    (score,), = await backend.ascore_batch([bad])
    assert score.p_yes is None and score.reason == REASON_BACKEND
    ok = await backend.ascore_batch([item("red")])  # the server stays healthy for the next request
    assert ok[0][0].reason == REASON_NO_LOGPROBS


async def test_server_down_is_nan_with_reason():
    backend = OpenAIVerifier(f"http://127.0.0.1:{free_port()}/v1", "m", max_attempts=2)
    scores = (await backend.ascore_batch([item("red")]))[0]
    assert all(s.reason == REASON_BACKEND for s in scores)
