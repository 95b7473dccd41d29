"""Every Prometheus metric of the verifier, defined once. Labels are bounded (no prompt or question text)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class VerifierMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self.request_seconds = Histogram("alphagrpo_verifier_request_seconds", "HTTP request latency",
                                         ["route", "status"], buckets=_LATENCY, registry=r)  # fmt: skip
        self.batch_images = Histogram("alphagrpo_verifier_batch_images", "images per backend batch",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)  # fmt: skip
        self.batch_questions = Histogram("alphagrpo_verifier_batch_questions", "questions per backend batch",
                                         buckets=(1, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)  # fmt: skip
        self.queue_wait_seconds = Histogram("alphagrpo_verifier_queue_wait_seconds",
                                            "time an image waited for its batch",
                                            buckets=_LATENCY, registry=r)  # fmt: skip
        self.forward_seconds = Histogram("alphagrpo_verifier_forward_seconds", "backend time per batch",
                                         buckets=_LATENCY, registry=r)  # fmt: skip
        self.queue_depth = Gauge("alphagrpo_verifier_queue_depth", "images waiting for a batch", registry=r)
        self.rejected_total = Counter("alphagrpo_verifier_rejected_total",
                                      "requests refused because the queue was full",
                                      registry=r)  # fmt: skip
        self.p_yes = Histogram("alphagrpo_verifier_p_yes", "P(yes) of scored questions",
                               buckets=tuple(i / 10 for i in range(11)), registry=r)  # fmt: skip
        self.nan_total = Counter("alphagrpo_verifier_nan_total", "questions that could not be scored", ["reason"],
                                 registry=r)  # fmt: skip
        self.rewards_total = Counter("alphagrpo_verifier_rewards_total", "rewards computed by outcome", ["outcome"],
                                     registry=r)  # fmt: skip
        self.decomposer_seconds = Histogram("alphagrpo_verifier_decomposer_seconds",
                                            "time spent fetching questions from the decomposer", buckets=_LATENCY,
                                            registry=r)  # fmt: skip
