"""Every Prometheus metric of the decomposer, defined once. Labels are bounded (no prompt text)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class DecomposerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "alphagrpo_decomposer_request_seconds", "HTTP request latency", ["route", "status"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompts_total = Counter("alphagrpo_decomposer_prompts_total", "prompts received", registry=r)
        self.cache_total = Counter(
            "alphagrpo_decomposer_cache_total", "cache lookups by result", ["result"], registry=r
        )  # result: hit | miss | error | shared (answered by another request's backend call)
        self.backend_seconds = Histogram(
            "alphagrpo_decomposer_backend_seconds", "backend latency per batch", ["backend"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.backend_calls_total = Counter(
            "alphagrpo_decomposer_backend_calls_total", "prompts sent to the backend", ["backend"], registry=r
        )
        self.parse_failures_total = Counter(
            "alphagrpo_decomposer_parse_failures_total", "LLM answers that were not a valid decomposition",
            ["backend", "reason"], registry=r,
        )  # fmt: skip
        self.item_errors_total = Counter(
            "alphagrpo_decomposer_item_errors_total", "prompts answered with a per-item error", ["code"], registry=r
        )
        self.questions_per_prompt = Histogram(
            "alphagrpo_decomposer_questions_per_prompt", "questions in one decomposition", ["kind"],
            buckets=(0, 1, 2, 4, 6, 8, 12, 16, 24, 32, 64, 128), registry=r,
        )  # fmt: skip
        self.redis_errors_total = Counter(
            "alphagrpo_decomposer_redis_errors_total", "Redis operations that failed (answers go uncached)",
            ["op"], registry=r,
        )  # fmt: skip
