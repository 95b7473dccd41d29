"""The decomposer over HTTP (FastAPI app with its lifespan, in-process): results, errors, ops routes."""

import pytest
from fastapi.testclient import TestClient

from decomposer.app import create_app
from decomposer.settings import DecomposerSettings


@pytest.fixture
def client():
    with TestClient(create_app(DecomposerSettings(max_prompts=4, max_prompt_chars=80, max_body_bytes=4096))) as c:
        yield c


def test_decompose_returns_tagged_questions(client):
    r = client.post("/v1/decompose", json={"prompts": ["a photo of two red apples to the left of a blue cup"]})
    assert r.status_code == 200
    body = r.json()
    d = body["results"][0]["decomposition"]
    assert body["schema_version"] == "1" and d["backend"] == "rules" and d["complete"] is True
    tags = {(q["kind"], q["tag"]) for q in d["questions"]}
    assert {("semantic", "existence"), ("semantic", "count"), ("semantic", "attribute"), ("semantic", "spatial"),
            ("quality", "geometry")} <= tags  # fmt: skip


def test_second_identical_prompt_is_cached_and_echoes_prompt(client):
    first = client.post("/v1/decompose", json={"prompts": ["a blue  cup"]}).json()["results"][0]
    second = client.post("/v1/decompose", json={"prompts": ["a blue cup"]}).json()["results"][0]
    assert first["cached"] is False and second["cached"] is True
    assert second["decomposition"]["prompt"] == "a blue cup"


def test_batch_keeps_order_and_indexes(client):
    prompts = ["a cat", "two dogs", "a cat"]
    results = client.post("/v1/decompose", json={"prompts": prompts}).json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [r["decomposition"]["prompt"] for r in results] == prompts


@pytest.mark.parametrize(
    "body, status, field, limit, text",
    [
        ({"prompts": []}, 422, "prompts", 1, "at least 1"),
        ({"prompts": ["   "]}, 422, "prompts", None, "blank"),
        ({"prompts": ["a cat"] * 5}, 422, "prompts", 4, "the limit is 4"),
        ({"prompts": ["a cat", "x" * 81]}, 422, "prompts[1]", 80, "81 characters; the limit is 80"),
        ({"prompts": "a cat"}, 422, "prompts", None, "list"),
        ({"prompts": [3]}, 422, "prompts[0]", None, "string"),
        ({"prompt": ["a cat"]}, 422, "prompts", None, "Field required"),
        ({"prompts": ["a cat"], "extra": 1}, 422, "extra", None, "Extra inputs"),
    ],
)
def test_bad_input_gets_422_naming_field_and_limit(client, body, status, field, limit, text):
    r = client.post("/v1/decompose", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err.get("limit") == limit and text in err["message"]


def test_malformed_json_and_oversized_body(client):
    r = client.post("/v1/decompose", content=b'{"prompts": [', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "validation_error"
    r = client.post("/v1/decompose", json={"prompts": ["a" * 70] * 70})
    assert r.status_code == 413 and r.json()["error"] == {
        "type": "payload_too_large", "message": r.json()["error"]["message"], "field": "body", "limit": 4096}
    assert client.get("/v1/nope").json()["error"]["type"] == "not_found"


def test_chunked_body_without_content_length_is_limited_too(client):
    """A streamed body (Transfer-Encoding: chunked, no Content-Length) meets the same 413 and the same
    limit; a small streamed body is served normally."""
    import json

    def stream(data: bytes):
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    big = json.dumps({"prompts": ["a" * 70] * 70}).encode()
    r = client.post("/v1/decompose", content=stream(big), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["field"] == "body" and r.json()["error"]["limit"] == 4096
    small = json.dumps({"prompts": ["a red circle"]}).encode()
    r = client.post("/v1/decompose", content=stream(small), headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["results"][0]["decomposition"]["questions"]


def test_health_ready_metrics_openapi(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["backend"] == "rules"
    assert client.get("/ready").status_code == 200
    client.post("/v1/decompose", json={"prompts": ["a red cup"]})
    text = client.get("/metrics").text
    for name in ("alphagrpo_decomposer_request_seconds_bucket", "alphagrpo_decomposer_cache_total",
                 "alphagrpo_decomposer_backend_seconds", "alphagrpo_decomposer_questions_per_prompt",
                 "alphagrpo_decomposer_parse_failures_total"):  # fmt: skip
        assert name in text
    assert 'route="/v1/decompose"' in text and "a red cup" not in text  # bounded labels, no prompt text
    schema = client.get("/openapi.json").json()
    assert "/v1/decompose" in schema["paths"] and "ErrorResponse" in schema["components"]["schemas"]


def test_api_key_required_when_configured():
    settings = DecomposerSettings(api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200  # health stays open
        r = c.post("/v1/decompose", json={"prompts": ["a cat"]})
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        r = c.post("/v1/decompose", json={"prompts": ["a cat"]}, headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = c.post("/v1/decompose", json={"prompts": ["a cat"]}, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert "s3cret" not in c.get("/metrics").text
