"""Shared fixtures: Redis (the machine's when REDIS_URL answers, else a private redis-server), free
ports, quiet offline transformers, and tiny models built once per session."""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A Redis that tests may read and write but never stop: $REDIS_URL if it answers, else our own."""
    url = os.environ.get("REDIS_URL")
    if url and _redis_answers(url):
        yield url
        return
    from serving.launch import RedisServer

    with RedisServer(workdir=tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, which the test may stop and restart."""
    from serving.launch import RedisServer

    server = RedisServer(workdir=tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def unique() -> str:
    """A fresh token for prompts, so runs never collide in a shared Redis."""
    return "u" + uuid.uuid4().hex[:8]  # never all digits: the rules grammar would read a number


@pytest.fixture(scope="session")
def json_lm_path(tmp_path_factory):
    """A tiny Qwen2 LM trained in seconds to answer our decomposition prompt for TRAINED_PROMPTS."""
    from decomposer.backends.rules import RulesBackend
    from decomposer.llm import decompose_prompt_text, validate_prompt_text
    from tests.helpers.tiny import TRAINED_PROMPTS, llm_answer, train_json_lm

    rules = RulesBackend()
    pairs = []
    for p in TRAINED_PROMPTS:
        qs = rules.decompose_one(p).questions
        pairs.append((decompose_prompt_text(p), llm_answer(qs)))
        n = sum(q.kind == "semantic" for q in qs)
        verdicts = [{"index": i, "necessary": True} for i in range(1, n + 1)]
        import json

        pairs.append((validate_prompt_text(p, qs), json.dumps({"verdicts": verdicts})))
    return train_json_lm(tmp_path_factory.mktemp("json-lm") / "model", pairs, steps=200)


@pytest.fixture(scope="session")
def random_lm_path(tmp_path_factory):
    from tests.helpers.tiny import build_causal_lm

    return build_causal_lm(tmp_path_factory.mktemp("random-lm") / "model")
