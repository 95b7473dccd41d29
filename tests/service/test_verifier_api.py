"""The verifier over real HTTP (uvicorn on a free port) with a tiny Qwen2-VL: scores, DVReward, limits,
overload, deadlines, and the decomposer being down."""

import asyncio
import base64
import io
import threading
import time

import httpx
import pytest
from PIL import Image, ImageDraw

from decomposer.app import create_app as create_decomposer
from decomposer.settings import DecomposerSettings
from serving.launch import ThreadedServer, free_port
from verifier.app import create_app
from verifier.backends.base import VerifierBackend
from verifier.backends.hf import HFVerifier
from verifier.settings import VerifierSettings
from verifier.tiny import build_tiny_vlm


def png(size=(64, 64), colour="red"):
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((10, 10, 40, 40), fill=colour)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


Q = [{"id": "s1", "text": "Is there a red square?", "kind": "semantic", "tag": "existence"},
     {"id": "s2", "text": "Is the square red?", "kind": "semantic", "tag": "attribute", "parents": ["s1"]},
     {"id": "q1", "text": "Is the image sharp?", "kind": "quality", "tag": "aesthetics"}]  # fmt: skip


class Gated(VerifierBackend):
    """The real HF backend behind a gate the test opens and closes (to hold a batch in flight)."""

    def __init__(self, inner):
        self.inner, self.name, self.model = inner, inner.name, inner.model
        self.gate = threading.Event()
        self.gate.set()

    def score_batch(self, items):
        self.gate.wait(20)
        return self.inner.score_batch(items)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "qwen", "qwen2_vl", seed=3)


@pytest.fixture(scope="module")
def backend(model_path):
    return Gated(HFVerifier(model_path))


def serve(settings, backend):
    server = ThreadedServer(create_app(settings, backend=backend), free_port()).__enter__()
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return server


@pytest.fixture(scope="module")
def decomposer():
    with ThreadedServer(create_decomposer(DecomposerSettings()), free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def verifier(backend, decomposer):
    settings = VerifierSettings(decomposer_url=decomposer.url, max_items=4, max_questions=8, max_image_pixels=100 * 100,
                                max_body_bytes=2_000_000)  # fmt: skip
    server = serve(settings, backend)
    yield server
    server.__exit__(None)


def test_verify_scores_every_question(verifier):
    r = httpx.post(verifier.url + "/v1/verify", json={"items": [{"image": png(), "questions": Q}]})
    assert r.status_code == 200
    scores = r.json()["results"][0]["scores"]
    assert [s["id"] for s in scores] == ["s1", "s2", "q1"]
    for s in scores:
        assert 0 < s["p_yes"] < 1 and s["p_yes"] == pytest.approx(s["yes_mass"] / (s["yes_mass"] + s["no_mass"]))


def test_reward_with_supplied_questions(verifier):
    body = {"items": [{"prompt": "a red square", "image": png(), "questions": Q}], "aggregation": "mean"}
    res = httpx.post(verifier.url + "/v1/reward", json=body).json()["results"][0]
    p = {s["id"]: s["p_yes"] for s in res["scores"]}
    assert res["semantic"] == pytest.approx((p["s1"] + p["s2"]) / 2) and res["quality"] == pytest.approx(p["q1"])
    assert res["reward"] == pytest.approx((res["semantic"] + res["quality"]) / 2)


def test_reward_fetches_questions_from_the_decomposer(verifier):
    body = {"items": [{"prompt": "two red squares", "image": png()}, {"prompt": "a blue circle", "image": png()}]}
    results = httpx.post(verifier.url + "/v1/reward", json=body).json()["results"]
    texts = [q["text"] for q in results[0]["questions"]]
    assert "Are there exactly two squares?" in texts
    assert all(r["reward"] is not None and 0 < r["reward"] < 1 for r in results)
    assert results[0]["reward"] == pytest.approx((results[0]["semantic"] * results[0]["quality"]) ** 0.5)


def test_incomplete_decomposition_is_flagged_or_failed(verifier):
    """A prompt the decomposer only partly parses gets quality questions alone: by default the reward says so
    (complete false, the unparsed span); with ``incomplete: "fail"`` it is null with the reason and not scored,
    while a complete prompt in the same request is scored as usual."""
    implicit, plain = "as many stars as a triangle has corners", "a blue circle"
    items = [{"prompt": implicit, "image": png()}, {"prompt": plain, "image": png()}]
    flagged, ok = httpx.post(verifier.url + "/v1/reward", json={"items": items}).json()["results"]
    assert flagged["complete"] is False and flagged["unparsed"] == [implicit] and flagged["reward"] is not None
    assert {q["kind"] for q in flagged["questions"]} == {"quality"}
    assert ok["complete"] is True and ok["unparsed"] == []
    before = _metric(verifier, 'alphagrpo_verifier_rewards_total{outcome="incomplete"}')
    failed, ok = httpx.post(verifier.url + "/v1/reward", json={"items": items, "incomplete": "fail"}).json()["results"]
    assert failed["reward"] is None and failed["scores"] == [] and failed["complete"] is False
    assert failed["reason"].startswith("incomplete decomposition") and implicit in failed["reason"]
    assert ok["reward"] is not None and 0 < ok["reward"] < 1
    assert _metric(verifier, 'alphagrpo_verifier_rewards_total{outcome="incomplete"}') == before + 1
    supplied = {"prompt": implicit, "image": png(), "questions": Q}  # the client's own questions: complete
    res = httpx.post(verifier.url + "/v1/reward", json={"items": [supplied], "incomplete": "fail"}).json()["results"][0]
    assert res["complete"] is True and res["reward"] is not None
    only = httpx.post(verifier.url + "/v1/reward", json={"items": items[:1], "incomplete": "fail"})
    assert only.status_code == 200 and only.json()["results"][0]["reward"] is None  # nothing left to score
    r = httpx.post(verifier.url + "/v1/reward", json={"items": items, "incomplete": "drop"})
    assert r.status_code == 422 and "incomplete" in r.json()["error"]["field"]


def _metric(server, series: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    "items, status, field, limit",
    [
        ([{"image": "@@@", "questions": Q}], 422, "items[0].image", None),
        ([{"image": png((120, 120)), "questions": Q}], 422, "items[0].image", 10000),
        ([{"image": png(), "questions": Q}] * 5, 422, "items", 4),
        ([{"image": png(), "questions": [dict(Q[0], id=f"s{i}") for i in range(9)]}], 422, "items[0].questions", 8),
        ([{"image": png(), "questions": []}], 422, "items[0].questions", 1),
        ([{"image": png(), "questions": [dict(Q[0], tag="geometry")]}], 422, "items[0].questions[0]", None),
    ],
)
def test_bad_input(verifier, items, status, field, limit):
    r = httpx.post(verifier.url + "/v1/verify", json={"items": items})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err.get("limit") == limit


def test_oversized_body_is_413(verifier):
    r = httpx.post(verifier.url + "/v1/verify", json={"items": [{"image": "A" * 2_100_000, "questions": Q}]})
    assert r.status_code == 413 and r.json()["error"]["limit"] == 2_000_000


def test_decomposer_down_is_503_but_supplied_questions_still_served(backend):
    settings = VerifierSettings(decomposer_url=f"http://127.0.0.1:{free_port()}")
    server = serve(settings, backend)
    try:
        r = httpx.post(server.url + "/v1/reward", json={"items": [{"prompt": "a red square", "image": png()}]})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert "decomposer" in r.json()["error"]["message"]
        ok = httpx.post(server.url + "/v1/reward", json={"items": [{"prompt": "a red square", "image": png(),
                                                                    "questions": Q}]})
        assert ok.status_code == 200 and ok.json()["results"][0]["reward"] is not None
    finally:
        server.__exit__(None)


async def test_full_queue_is_429_and_deadline_is_504(backend):
    settings = VerifierSettings(max_queue=1, max_batch_images=1, request_timeout_s=1.0)
    server = serve(settings, backend)
    body = {"items": [{"image": png(), "questions": Q}]}
    try:
        backend.gate.clear()  # the first batch blocks inside the backend
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            first = asyncio.create_task(c.post("/v1/verify", json=body))
            await asyncio.sleep(0.2)
            second = asyncio.create_task(c.post("/v1/verify", json=body))  # waits in the queue
            await asyncio.sleep(0.2)
            third = await c.post("/v1/verify", json=body)
            assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
            assert third.json()["error"]["type"] == "overloaded"
            r1, r2 = await first, await second
            assert r1.status_code == 504 and r2.status_code == 504  # deadline while the backend hangs
            backend.gate.set()
            await asyncio.sleep(0.5)
            assert (await c.get("/health")).status_code == 200
            assert (await c.post("/v1/verify", json=body)).status_code == 200  # the queue drained
            metrics = (await c.get("/metrics")).text
            assert "alphagrpo_verifier_rejected_total 1.0" in metrics
    finally:
        backend.gate.set()
        server.__exit__(None)


def test_health_dead_model_and_metrics(verifier, tmp_path):
    app = create_app(VerifierSettings(hf_model_path=str(tmp_path)))
    with ThreadedServer(app, free_port()) as server:
        deadline = time.monotonic() + 10
        while (h := httpx.get(server.url + "/health")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert h.status_code == 503 and h.json()["status"] == "dead" and "config.json" in h.json()["detail"]
        r = httpx.post(server.url + "/v1/verify", json={"items": [{"image": png(), "questions": Q}]})
        assert r.status_code == 503
    text = httpx.get(verifier.url + "/metrics").text
    for name in ("alphagrpo_verifier_batch_images", "alphagrpo_verifier_queue_wait_seconds",
                 "alphagrpo_verifier_forward_seconds", "alphagrpo_verifier_p_yes",
                 "alphagrpo_verifier_request_seconds"):  # fmt: skip
        assert name in text
    assert "/v1/verify" in httpx.get(verifier.url + "/openapi.json").json()["paths"]
