"""The dvreward client SDK against a real HTTP server on loopback: retries, Retry-After, typed errors."""

import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dvreward.client import AsyncDecomposerClient, DecomposerClient, RetryPolicy, Timeouts
from dvreward.errors import BadRequest, ProtocolError, RateLimited, ServiceUnavailable, TransportError
from serving.launch import ThreadedServer, free_port

OK = {"results": [{"index": 0, "decomposition": None, "error": {"code": "x", "message": "y"}, "cached": False}]}
FAST = RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.5)


def flaky_app() -> FastAPI:
    """Each scenario path answers with a scripted sequence of statuses, then 200."""
    app = FastAPI()
    app.state.hits = {}
    script = {
        "503x2": [503, 503], "500x9": [500] * 9, "429": [429], "400": [400], "401": [401], "bad": [],
        "slow": [],
    }  # fmt: skip

    @app.post("/{scenario}/v1/decompose")
    async def decompose(scenario: str, request: Request):
        n = app.state.hits.get(scenario, 0)
        app.state.hits[scenario] = n + 1
        steps = script[scenario]
        if scenario == "bad":
            return {"results": "nope"}
        if scenario == "slow":
            time.sleep(0.5)
        if n < len(steps):
            status = steps[n]
            headers = {"Retry-After": "0.3"} if status == 429 else None
            body = {"error": {"type": "t", "message": f"scripted {status}"}}
            return JSONResponse(body, status_code=status, headers=headers)
        return OK

    return app


@pytest.fixture(scope="module")
def server():
    app = flaky_app()
    with ThreadedServer(app, free_port()) as s:
        s.app = app
        yield s


def client(server, scenario, **kw):
    return DecomposerClient(f"{server.url}/{scenario}", retry=FAST, **kw)


def test_retries_5xx_then_succeeds(server):
    with client(server, "503x2") as c:
        assert c.decompose(["a cat"]).results[0].error.code == "x"
    assert server.app.state.hits["503x2"] == 3


def test_gives_up_after_max_attempts_with_typed_error(server):
    with client(server, "500x9") as c, pytest.raises(ServiceUnavailable) as e:
        c.decompose(["a cat"])
    assert e.value.status == 500 and e.value.error.error.message == "scripted 500"
    assert server.app.state.hits["500x9"] == 4


def test_429_honours_retry_after(server):
    t0 = time.perf_counter()
    with client(server, "429") as c:
        c.decompose(["a cat"])
    assert time.perf_counter() - t0 >= 0.28 and server.app.state.hits["429"] == 2


def test_429_exhausted_is_rate_limited():
    app = FastAPI()

    @app.post("/v1/decompose")
    def always_429():
        return JSONResponse({"error": {"type": "overloaded", "message": "busy"}}, status_code=429,
                            headers={"Retry-After": "0"})  # fmt: skip

    with ThreadedServer(app, free_port()) as s, DecomposerClient(s.url, retry=FAST) as c:
        with pytest.raises(RateLimited) as e:
            c.decompose(["a cat"])
    assert e.value.retry_after == 0.0


def test_4xx_not_retried(server):
    with client(server, "400") as c, pytest.raises(BadRequest) as e:
        c.decompose(["a cat"])
    assert e.value.status == 400 and server.app.state.hits["400"] == 1


def test_bad_body_is_protocol_error(server):
    with client(server, "bad") as c, pytest.raises(ProtocolError):
        c.decompose(["a cat"])


def test_connection_refused_retried_then_transport_error():
    port = free_port()
    t0 = time.perf_counter()
    with DecomposerClient(f"http://127.0.0.1:{port}", retry=FAST) as c, pytest.raises(TransportError):
        c.decompose(["a cat"])
    assert time.perf_counter() - t0 >= 0.02  # it waited between attempts


def test_read_timeout_is_not_retried(server):
    with client(server, "slow", timeouts=Timeouts(connect_s=1, read_s=0.1)) as c, pytest.raises(TransportError):
        c.decompose(["a cat"])
    time.sleep(0.6)
    assert server.app.state.hits["slow"] == 1


def test_client_validates_request_before_sending():
    with DecomposerClient("http://127.0.0.1:9", retry=FAST) as c, pytest.raises(ValueError):
        c.decompose([])


async def test_async_client_retries(server):
    server.app.state.hits.pop("503x2", None)
    async with AsyncDecomposerClient(f"{server.url}/503x2", retry=FAST) as c:
        out = await c.decompose(["a cat"])
    assert out.results[0].index == 0 and server.app.state.hits["503x2"] == 3
