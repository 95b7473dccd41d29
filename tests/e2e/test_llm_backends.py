"""The LLM backends end to end: ``hf`` in-process, ``openai`` over HTTP against two real servers.

* a tiny Qwen2 trained in seconds (``json_lm_path``) answers our prompt with valid JSON, a random one with
  junk, so both the success path and the parse -> repair -> retry -> per-item-error path run for real;
* ``transformers serve`` is a real OpenAI-compatible server that ignores ``response_format``;
* ``tests.helpers.openai_server`` honours it (constrained decoding) and validates its replies against the
  ``openai`` package's types, so we can check what the backend sends.
"""

import json
import shutil
import subprocess
import sys

import pytest

from decomposer.backends.hf import HFBackend
from decomposer.backends.openai import OpenAIBackend
from decomposer.backends.rules import RulesBackend
from decomposer.llm import DECOMPOSITION_SCHEMA
from decomposer.metrics import DecomposerMetrics
from serving.launch import ServerProcess, ThreadedServer, free_port
from tests.helpers.openai_server import create_app
from tests.helpers.tiny import TRAINED_PROMPTS

pytestmark = pytest.mark.slow


def expected_texts(prompt):
    return [q.text for q in RulesBackend().decompose_one(prompt).questions]


def failures(metrics, backend):
    return sum(s.value for m in metrics.registry.collect() if m.name == "alphagrpo_decomposer_parse_failures"
               for s in m.samples if s.labels.get("backend") == backend and s.name.endswith("_total"))  # fmt: skip


# ---- hf backend --------------------------------------------------------------------------------


def test_hf_backend_decodes_a_trained_tiny_model(json_lm_path):
    backend = HFBackend(str(json_lm_path), max_new_tokens=400, constrained=False)
    for prompt in TRAINED_PROMPTS:
        out = backend.decompose_one(prompt)
        assert [q.text for q in out.questions] == expected_texts(prompt)
        assert {q.tag for q in out.questions if q.kind == "quality"} >= {"geometry", "aesthetics"}


def test_hf_constrained_decoding_yields_schema_json(json_lm_path):
    # Constrained decoding forces the schema's shape (keys, tag enums, bounded parents) even where the model
    # strays; on this tiny model it also degrades the text, which is why hf_constrained defaults to off.
    backend = HFBackend(str(json_lm_path), max_new_tokens=400, constrained=True)
    value = json.loads(backend.generate(TRAINED_PROMPTS[0]))
    assert set(value) == {"semantic", "quality"} and value["semantic"]
    tags = DECOMPOSITION_SCHEMA["properties"]["semantic"]["items"]["properties"]["tag"]["enum"]
    assert all(item["tag"] in tags and set(item) == {"question", "tag", "parents"} for item in value["semantic"])


def test_hf_junk_becomes_item_error_and_metric(random_lm_path):
    metrics = DecomposerMetrics()
    backend = HFBackend(str(random_lm_path), max_new_tokens=24, constrained=False, metrics=metrics)
    out = backend.decompose_one("a cat")
    assert out.code == "bad_model_output" and failures(metrics, "hf") == 1


# ---- openai backend against our constrained test server ----------------------------------------


@pytest.fixture(scope="module")
def test_server(json_lm_path):
    with ThreadedServer(create_app(str(json_lm_path)), free_port()) as server:
        server.app = server.server.config.app
        yield server


async def test_openai_backend_sends_response_format_and_parses(test_server):
    metrics = DecomposerMetrics()
    backend = OpenAIBackend(f"{test_server.url}/v1", "tiny", response_format="json_schema", metrics=metrics,
                            max_tokens=400)  # fmt: skip
    test_server.app.state.requests.clear()
    outs = await backend.decompose_batch(TRAINED_PROMPTS)
    sent = test_server.app.state.requests
    assert sent[0]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "decomposition", "schema": DECOMPOSITION_SCHEMA, "strict": True}}
    assert sent[0]["temperature"] == 0.0 and sent[0]["max_tokens"] == 400
    assert any(r["response_format"]["json_schema"]["name"] == "validation" for r in sent)
    for out in outs:  # constrained decoding keeps every answer parseable
        assert out.questions and all(q.kind in ("semantic", "quality") for q in out.questions)
    assert failures(metrics, "openai") == 0
    await backend.aclose()


async def test_openai_backend_without_response_format(test_server):
    backend = OpenAIBackend(f"{test_server.url}/v1", "tiny", response_format="none", max_tokens=400)
    test_server.app.state.requests.clear()
    out = (await backend.decompose_batch([TRAINED_PROMPTS[0]]))[0]
    assert "response_format" not in {k for r in test_server.app.state.requests for k, v in r.items() if v is not None}
    assert [q.text for q in out.questions] == expected_texts(TRAINED_PROMPTS[0])
    await backend.aclose()


async def test_openai_backend_server_down_is_item_error():
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "tiny", max_attempts=2)
    out = (await backend.decompose_batch(["a cat"]))[0]
    assert out.code == "backend_unavailable" and "ConnectError" in out.message
    await backend.aclose()


# ---- openai backend against a real `transformers serve` -----------------------------------------


@pytest.fixture(scope="module")
def transformers_serve(tmp_path_factory):
    exe = shutil.which("transformers") or str(__import__("pathlib").Path(sys.executable).parent / "transformers")
    port = free_port()
    cmd = [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = tmp_path_factory.mktemp("tserve") / "serve.log"
    try:
        with ServerProcess(cmd, health_url=f"http://127.0.0.1:{port}/health", timeout_s=120, log_path=log) as p:
            p.url = f"http://127.0.0.1:{port}"
            yield p
    except (RuntimeError, subprocess.SubprocessError) as e:
        pytest.fail(f"transformers serve did not start: {e}; log: {log.read_text()[-2000:]}")


async def test_transformers_serve_trained_model_decomposes(transformers_serve, json_lm_path):
    # transformers serve ignores response_format; the trained model answers valid JSON anyway
    backend = OpenAIBackend(f"{transformers_serve.url}/v1", str(json_lm_path), max_tokens=400)
    out = (await backend.decompose_batch([TRAINED_PROMPTS[1]]))[0]
    assert [q.text for q in out.questions] == expected_texts(TRAINED_PROMPTS[1])
    await backend.aclose()


async def test_transformers_serve_junk_goes_through_repair_and_retry(transformers_serve, random_lm_path):
    metrics = DecomposerMetrics()
    backend = OpenAIBackend(f"{transformers_serve.url}/v1", str(random_lm_path), max_tokens=32, max_attempts=3,
                            metrics=metrics)  # fmt: skip
    outs = await backend.decompose_batch(["a cat", "two dogs"])
    assert [o.code for o in outs] == ["bad_model_output", "bad_model_output"]
    assert "after 3 attempts" in outs[0].message
    assert failures(metrics, "openai") == 6  # every failed parse counted
    await backend.aclose()
