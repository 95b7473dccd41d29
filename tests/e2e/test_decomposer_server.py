"""``alphagrpo serve decomposer`` as a real process on a free port, with Redis: the acceptance curl."""

import subprocess

import httpx
import pytest

from dvreward.client import DecomposerClient
from dvreward.schemas import DecomposeResponse
from serving.launch import start_decomposer

pytestmark = pytest.mark.slow


def test_serve_decomposer_with_redis_and_curl(redis_url, unique, tmp_path):
    server, url = start_decomposer(env={"DECOMPOSER_REDIS_URL": redis_url}, log_path=tmp_path / "log")
    prompt = f"a photo of two red apples to the left of a blue cup {unique}"
    with server:
        out = subprocess.run(
            ["curl", "-s", "-X", "POST", f"{url}/v1/decompose", "-H", "content-type: application/json",
             "-d", '{"prompts":["%s"]}' % prompt], capture_output=True, text=True, check=True,
        )  # fmt: skip
        body = DecomposeResponse.model_validate_json(out.stdout)
        d = body.results[0].decomposition
        assert {q.tag for q in d.semantic} == {"existence", "count", "attribute", "spatial"}
        assert {q.tag for q in d.quality} >= {"geometry", "aesthetics"}
        with DecomposerClient(url) as client:  # the second time it comes from Redis
            assert client.decompose([prompt]).results[0].cached
            assert client.health().status == "ok"
        assert "alphagrpo_decomposer_cache_total" in httpx.get(f"{url}/metrics").text
