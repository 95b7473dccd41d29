"""``alphagrpo bench load``: each service driven over loopback by a bounded number of concurrent requests.

* Decomposer, cache path: ``decomposer_requests`` (default 2,000) ``POST /v1/decompose`` of one prompt each,
  from ``concurrency`` (64) concurrent clients, over a set of prompts decomposed once before (so Redis
  answers); the service runs as its own process with a private redis-server.
* Verifier: ``verifier_requests`` (default 200) ``POST /v1/reward`` of one ShapesWorld image each, prompts
  from the same set (questions come from the decomposer's cache), ``verifier_concurrency`` (16) clients.
Per service: requests sent, errors (anything but 200 and a deliberate 429), 429s, p50/p99 latency, and the
server process's RSS after a warm-up round and after the load (``rss_growth`` = after / before - 1; target
within 10 %). Nothing is retried: every request counts once.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
from pathlib import Path

import httpx


def rss_mib(pid: int) -> float:
    """Resident set size of a process and its children (uvicorn serves from the process it starts)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return round(total, 1)


def _children(pid: int) -> list[int]:
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


async def drive(url: str, bodies: list[dict], n: int, concurrency: int, timeout_s: float = 120.0) -> dict:
    latencies: list[float] = []
    status: dict[int, int] = {}
    errors: list[str] = []
    queue = list(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            try:
                r = await client.post(url, json=bodies[i % len(bodies)])
                status[r.status_code] = status.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                elif r.status_code != 429:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(f"{type(e).__name__}: {e}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None  # noqa: E731
    return {"requests": n, "ok": len(latencies), "errors": len(errors), "rejected_429": status.get(429, 0),
            "p50_ms": q(0.5), "p99_ms": q(0.99), "requests_per_s": round(n / wall, 1),
            "first_errors": errors[:3]}  # fmt: skip


def _image_b64(spec, seed: int) -> str:
    from shapesworld.prompts import satisfying_scene
    from shapesworld.world import render

    rng = random.Random(seed)
    scene = None
    while scene is None:  # the scene sampler may fail for a draw; it is seeded, so this is deterministic
        scene = satisfying_scene(spec, rng)
    buf = io.BytesIO()
    render(scene, 64).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def run(decomposer_requests: int = 2000, concurrency: int = 64, verifier_requests: int = 200,
        verifier_concurrency: int = 16, n_prompts: int = 100) -> dict:  # fmt: skip
    from serving.launch import RedisServer, start_decomposer, start_verifier
    from shapesworld.prompts import prompts

    specs = [p for p in prompts("train") if p.category != "implicit"]
    specs = random.Random(0).sample(specs, n_prompts)
    lexicon = str(Path(__file__).resolve().parents[2] / "configs" / "shapesworld-lexicon.json")
    out: dict = {}
    with RedisServer() as redis:
        env = {"DECOMPOSER_REDIS_URL": redis.url, "DECOMPOSER_WORKERS": "1"}
        if Path(lexicon).exists():
            env["DECOMPOSER_RULES_LEXICON"] = lexicon
        decomposer, durl = start_decomposer(env=env)
        with decomposer:
            bodies = [{"prompts": [s.text]} for s in specs]
            warm = asyncio.run(drive(durl + "/v1/decompose", bodies, len(bodies), 8))  # fills the cache
            if warm["errors"]:  # a benchmark of a broken service would measure nothing
                raise RuntimeError(f"warming the decomposer's cache failed: {warm['first_errors']}")
            asyncio.run(drive(durl + "/v1/decompose", bodies, 500, concurrency))  # warm-up round
            before = rss_mib(decomposer.proc.pid)
            res = asyncio.run(drive(durl + "/v1/decompose", bodies, decomposer_requests, concurrency))
            after = rss_mib(decomposer.proc.pid)
            out["decomposer"] = res | {"rss_mib_before": before, "rss_mib_after": after,
                                       "rss_growth": round(after / before - 1, 4)}  # fmt: skip

            verifier, vurl = start_verifier(env={"VERIFIER_DECOMPOSER_URL": durl})
            with verifier:
                vbodies = [{"items": [{"prompt": s.text, "image": _image_b64(s, i)}]} for i, s in enumerate(specs)]
                asyncio.run(drive(vurl + "/v1/reward", vbodies, 48, verifier_concurrency))  # warm-up
                before = rss_mib(verifier.proc.pid)
                res = asyncio.run(drive(vurl + "/v1/reward", vbodies, verifier_requests, verifier_concurrency))
                after = rss_mib(verifier.proc.pid)
                out["verifier"] = res | {"rss_mib_before": before, "rss_mib_after": after,
                                         "rss_growth": round(after / before - 1, 4)}  # fmt: skip
    total_err = out["decomposer"]["errors"] + out["verifier"]["errors"]
    growth = max(out["decomposer"]["rss_growth"], out["verifier"]["rss_growth"])
    summary = {"errors": total_err, "max_rss_growth": growth, "ok": total_err == 0 and growth <= 0.10}
    flat = {f"{svc}_{k}": v for svc in ("decomposer", "verifier") for k, v in out[svc].items() if k != "first_errors"}
    errs = {f"{svc}_first_errors": out[svc]["first_errors"] for svc in out if out[svc]["first_errors"]}
    return summary | flat | errs
