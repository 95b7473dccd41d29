"""Fuzzing each service through its OpenAPI schema with schemathesis (real HTTP on loopback): no 5xx, and
every 4xx carries the one ErrorResponse shape. Bounded: 500 generated requests per service."""

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from decomposer.app import create_app as create_decomposer
from decomposer.settings import DecomposerSettings
from dvreward.schemas import ErrorResponse
from serving.launch import ThreadedServer, free_port
from verifier.app import create_app as create_verifier
from verifier.settings import VerifierSettings
from verifier.tiny import build_tiny_vlm

pytestmark = pytest.mark.slow
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    model = build_tiny_vlm(tmp_path_factory.mktemp("m") / "qwen", "qwen2_vl", seed=9)
    with ThreadedServer(create_decomposer(DecomposerSettings()), free_port()) as d:
        v_settings = VerifierSettings(hf_model_path=str(model), decomposer_url=d.url, max_items=8, max_questions=16)
        with ThreadedServer(create_verifier(v_settings), free_port()) as v:
            while httpx.get(v.url + "/health").status_code != 200:
                time.sleep(0.05)
            yield {"decomposer": d.url, "verifier": v.url}


def check(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        ErrorResponse.model_validate_json(response.content)


@pytest.mark.parametrize("service, paths, per_path", [("decomposer", ["/v1/decompose"], 500),
                                                     ("verifier", ["/v1/verify", "/v1/reward"], 250)])  # fmt: skip
def test_fuzz_service(servers, service, paths, per_path):
    url = servers[service]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    sent = []
    for path in paths:
        operation = schema[path]["POST"]

        # half the cases valid by the schema, half deliberately invalid (wrong types, missing or extra fields)
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @settings(FUZZ, max_examples=per_path)
        @given(case=strategy)
        def run(case):
            response = case.call(base_url=url, timeout=30)
            sent.append(response.status_code)
            check(response)

        run()
    assert len(sent) >= 500, len(sent)
