"""The decomposer cache against a real Redis: hits, TTL, cross-worker single-flight, outages."""

import asyncio

import pytest

from decomposer.backends.rules import RulesBackend
from decomposer.cache import LocalCache, RedisCache, cache_key
from decomposer.metrics import DecomposerMetrics
from decomposer.service import DecomposerService


class SlowCountingRules(RulesBackend):
    """The real rules backend, made slow enough that concurrent requests overlap, counting its calls."""

    def __init__(self, delay_s: float = 0.3):
        super().__init__()
        self.delay_s, self.calls = delay_s, 0

    async def decompose_batch(self, prompts):
        self.calls += len(prompts)
        await asyncio.sleep(self.delay_s)
        return await super().decompose_batch(prompts)


def make_service(url, backend=None, ttl_s=60, retry_after_s=0.2):
    metrics = DecomposerMetrics()
    # generous op timeout: these tests are about behaviour, not about a loaded machine timing Redis out
    cache = RedisCache(url, ttl_s, metrics, timeout_s=2.0, retry_after_s=retry_after_s, lock_s=5)
    return DecomposerService(backend or RulesBackend(), cache, metrics, follow_timeout_s=5), metrics


def metric(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_hit_after_miss_and_key_includes_backend_version(redis_url, unique):
    svc, metrics = make_service(redis_url)
    prompt = f"a red cup {unique}"
    first = (await svc.decompose([prompt]))[0]
    second = (await svc.decompose([prompt]))[0]
    assert not first.cached and second.cached and second.decomposition == first.decomposition
    assert metric(metrics, "alphagrpo_decomposer_cache_total", result="hit") == 1
    assert cache_key(prompt, "rules", "m", "v1") != cache_key(prompt, "rules", "m", "v2")
    assert cache_key(" a  red cup ", "b", "m", "t") == cache_key("a red cup", "b", "m", "t")
    await svc.aclose()


async def test_ttl_expires(redis_url, unique):
    svc, _ = make_service(redis_url, ttl_s=1)
    prompt = f"a blue cup {unique}"
    await svc.decompose([prompt])
    assert (await svc.decompose([prompt]))[0].cached
    await asyncio.sleep(1.3)
    assert not (await svc.decompose([prompt]))[0].cached
    await svc.aclose()


async def test_single_flight_across_two_workers(redis_url, unique):
    backend_a, backend_b = SlowCountingRules(), SlowCountingRules()
    worker_a, _ = make_service(redis_url, backend_a)
    worker_b, _ = make_service(redis_url, backend_b)
    prompt = f"three green apples {unique}"
    calls = [w.decompose([prompt]) for _ in range(25) for w in (worker_a, worker_b)]
    results = await asyncio.gather(*calls)
    assert backend_a.calls + backend_b.calls == 1
    answers = {r[0].decomposition.model_dump_json() for r in results}
    assert len(answers) == 1 and all(r[0].error is None for r in results)
    await worker_a.aclose()
    await worker_b.aclose()


async def test_follower_computes_when_leader_fails(redis_url, unique):
    class Failing(SlowCountingRules):
        async def decompose_batch(self, prompts):
            self.calls += 1
            await asyncio.sleep(0.1)
            raise RuntimeError("boom")

    leader, _ = make_service(redis_url, Failing())
    follower_backend = SlowCountingRules(0.0)
    follower, _ = make_service(redis_url, follower_backend)
    prompt = f"a pink cup {unique}"
    first = asyncio.create_task(leader.decompose([prompt]))
    await asyncio.sleep(0.03)  # the leader takes the Redis lock first
    b = await follower.decompose([prompt])
    a = await first
    assert a[0].error is not None and a[0].error.code == "backend_error"
    assert b[0].decomposition is not None and follower_backend.calls == 1
    await leader.aclose()
    await follower.aclose()


async def test_redis_killed_mid_run_and_restarted(private_redis, unique):
    svc, metrics = make_service(private_redis.url, retry_after_s=0.2)
    prompt = f"a yellow cup {unique}"
    await svc.decompose([prompt])
    assert (await svc.decompose([prompt]))[0].cached
    private_redis.stop()
    for i in range(5):  # every request still answered, uncached
        out = await svc.decompose([prompt, f"{prompt} {i}"])
        assert all(r.decomposition is not None and not r.cached for r in out)
    assert metric(metrics, "alphagrpo_decomposer_redis_errors_total", op="get") >= 1
    private_redis.start()  # same port: the client reconnects by itself
    await asyncio.sleep(0.3)
    await svc.decompose([prompt])  # a miss (the restarted server is empty) that is stored again
    assert (await svc.decompose([prompt]))[0].cached
    await svc.aclose()


async def test_unreachable_redis_costs_one_timeout_then_is_skipped(unique):
    svc, metrics = make_service("redis://127.0.0.1:1/0", retry_after_s=60)
    out = await svc.decompose([f"a cup {unique}"] * 3)
    assert all(r.decomposition is not None for r in out)
    for _ in range(10):
        await svc.decompose([f"a cup {unique}"])
    assert metric(metrics, "alphagrpo_decomposer_redis_errors_total", op="get") == 1


async def test_local_lru_evicts_and_expires():
    from dvreward.schemas import Decomposition

    cache = LocalCache(size=2, ttl_s=60)
    d = Decomposition(prompt="p", questions=[], backend="b", model="m", template_version="t")
    for k in ("a", "b", "c"):
        await cache.set(k, d)
    assert set(await cache.get_many(["a", "b", "c"])) == {"b", "c"}
    short = LocalCache(size=2, ttl_s=0.05)
    await short.set("a", d)
    await asyncio.sleep(0.1)
    assert await short.get_many(["a"]) == {}


@pytest.mark.parametrize("n", [1, 3])
async def test_in_process_single_flight_without_redis(n, unique):
    backend = SlowCountingRules(0.2)
    svc = DecomposerService(backend, LocalCache(100, 60), DecomposerMetrics())
    prompts = [f"{i} cats {unique}" for i in range(n)]
    await asyncio.gather(*(svc.decompose(prompts) for _ in range(20)))
    assert backend.calls == n


async def test_leader_releases_its_lock_even_after_a_redis_error(redis_url, unique):
    """A leader whose `set` failed (Redis marked down by a timeout) must still drop its lock, or every other
    worker would wait out the lock's expiry (this once made 4 of ~1,800 requests time out under load)."""
    import time

    import redis

    metrics = DecomposerMetrics()
    cache = RedisCache(redis_url, 60, metrics, timeout_s=0.5, retry_after_s=30, lock_s=30)
    key = f"alphagrpo:test:{unique}"
    assert await cache.acquire(key)
    cache._down_until = time.monotonic() + 30  # as after a timed-out `set`
    await cache.release(key)
    assert not redis.Redis.from_url(redis_url).exists(key + ":lock")
    await cache.aclose()
