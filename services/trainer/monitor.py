"""What a running trainer shows the outside world: Prometheus ``/metrics``, a JSON ``/status`` and
``/health``, served from a background thread while training runs (``run.monitor_port``), plus PNG curves.

The metrics are defined once here (``TrainerMetrics``), so the Grafana dashboard and the compose tests check
against the same registry the trainer exposes. Labels are bounded: no prompt text, no paths.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_STEP_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class TrainerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        g = lambda name, doc: Gauge(f"alphagrpo_trainer_{name}", doc, registry=r)  # noqa: E731
        self.step = g("step", "optimizer steps taken (resumed runs count from their checkpoint)")
        self.reward_mean = g("reward_mean", "mean DVReward of the last step's valid samples")
        self.reward_std = g("reward_std", "std of the last step's valid rewards (the round's std)")
        self.frac_reward_zero_std = g("frac_reward_zero_std", "share of prompt groups without reward variance")
        self.loss = g("loss", "last step's policy loss")
        self.kl = g("kl", "last step's KL to the reference (0 when the KL term is off)")
        self.clip_fraction = g("clip_fraction", "share of ratios that hit the clip in the last step")
        self.ratio_max_dev = g("ratio_max_dev", "max |ratio - 1| in the last step")
        self.velocity_max_dev = g("velocity_max_dev", "grpo.objective nft: max |v - v_old| over the last step's "
                                  "inner passes (0 with one pass); there is no ratio, so ratio_max_dev stays 0")
        self.ema_decay = g("ema_decay", "grpo.ema_max: the last step's soft-update decay of the sampling EMA")
        self.ema_gap = g("ema_gap",
                         "grpo.ema_max: max |theta - theta_old|, how far the trained weights lead the sampler")
        self.samples_per_second = g("samples_per_second", "images per second over the last step")
        self.reward_wait_fraction = g("reward_wait_fraction", "share of the last step blocked on rewards")
        self.text_loss = g("text_loss", "last step's loss of the text written before the image (plan or edit)")
        self.text_kl = g("text_kl", "k3 KL of the last step's plan or edit to the loaded base (text_kl_coef)")
        self.format_rate = g("format_rate", "share of well-formed plans in the last reasoning round")
        self.r_init_mean = g("r_init_mean", "mean reward of the images refined in the last refinement round")
        self.n_improved = g("n_improved", "refinements that beat their initial image in the last refinement round")
        self.eval_oracle_accuracy = g("eval_oracle_accuracy", "oracle accuracy on held-out prompts, last eval")
        self.eval_refined_oracle_accuracy = g("eval_refined_oracle_accuracy",
                                              "oracle accuracy after one refinement pass, last eval")  # fmt: skip
        self.eval_verifier_reward = g("eval_verifier_reward", "verifier DVReward on held-out prompts, last eval")
        self.invalid_rewards_total = Counter("alphagrpo_trainer_invalid_rewards_total",
                                             "samples whose reward was NaN (excluded from advantages)",
                                             registry=r)  # fmt: skip
        self.skipped_steps_total = Counter("alphagrpo_trainer_skipped_steps_total",
                                           "steps skipped because no sample had a non-zero advantage",
                                           registry=r)  # fmt: skip
        self.step_seconds = Histogram("alphagrpo_trainer_step_seconds", "wall time of one training step",
                                      buckets=_STEP_BUCKETS, registry=r)  # fmt: skip

    def observe(self, rec: dict) -> None:
        """Update from one JSONL record of the training loop."""
        self.step.set(rec["step"])
        for name in ("loss", "kl", "clip_fraction", "ratio_max_dev", "velocity_max_dev", "ema_decay", "ema_gap",
                     "samples_per_second", "reward_wait_fraction",
                     "frac_reward_zero_std", "reward_mean", "reward_std", "text_loss", "text_kl", "format_rate",
                     "r_init_mean", "n_improved"):  # fmt: skip
            value = rec.get(name)
            if value is not None and math.isfinite(value):
                getattr(self, name).set(value)
        self.invalid_rewards_total.inc(rec.get("n_invalid", 0))
        if rec.get("skipped"):
            self.skipped_steps_total.inc()
        self.step_seconds.observe(rec["step_s"])
        ev = rec.get("eval") or {}
        if ev.get("oracle_accuracy") is not None:
            self.eval_oracle_accuracy.set(ev["oracle_accuracy"])
        if ev.get("verifier_reward") is not None:
            self.eval_verifier_reward.set(ev["verifier_reward"])
        if ev.get("refined_oracle_accuracy") is not None:
            self.eval_refined_oracle_accuracy.set(ev["refined_oracle_accuracy"])


class Monitor:
    """Holds the latest status and metrics; ``serve(port)`` exposes them over HTTP on loopback or a pod IP."""

    def __init__(self, total_steps: int, run_dir: str | Path):
        self.metrics = TrainerMetrics()
        self.total_steps = total_steps
        self.run_dir = str(run_dir)
        self.started = time.time()
        self._lock = threading.Lock()
        self._status: dict = {"state": "starting", "step": 0, "total_steps": total_steps}
        self._server = None

    def update(self, rec: dict) -> None:
        self.metrics.observe(rec)
        with self._lock:
            last_eval = rec.get("eval") or self._status.get("last_eval")
            self._status = {
                "state": "training", "step": rec["step"], "total_steps": self.total_steps,
                "reward_mean": rec.get("reward_mean"), "reward_std": rec.get("reward_std"), "kl": rec.get("kl"),
                "clip_fraction": rec.get("clip_fraction"), "samples_per_second": rec.get("samples_per_second"),
                "reward_wait_seconds": rec.get("reward_wait_s"),
                "reward_wait_fraction": rec.get("reward_wait_fraction"),
                "skipped": rec.get("skipped"), "last_eval": last_eval, "run_dir": self.run_dir,
                **{k: rec[k] for k in ("round", "text_loss", "format_rate", "r_init_mean", "n_improved") if k in rec},
                "uptime_s": round(time.time() - self.started, 1),
            }  # fmt: skip

    def set_state(self, state: str) -> None:
        with self._lock:
            self._status["state"] = state

    def status(self) -> dict:
        with self._lock:
            return dict(self._status)

    def app(self):
        from fastapi import FastAPI, Response
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        app = FastAPI(title="alphagrpo trainer monitor", version="1")

        @app.get("/health")
        def health() -> dict:
            return {"status": "ok"}

        @app.get("/status")
        def status() -> dict:
            return self.status()

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return app

    def serve(self, port: int, host: str = "127.0.0.1") -> str:
        """Start the HTTP server in a daemon thread (port 0: a free one); returns its base URL."""
        from serving.launch import ThreadedServer

        self._server = ThreadedServer(self.app(), port or None, host=host).__enter__()
        return self._server.url

    def close(self) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None


def plot_curves(records: list[dict], path: str | Path, title: str = "GRPO", reward: str = "DVReward") -> Path:
    """Training curves (PNG): reward, loss, clip fraction, and the held-out oracle accuracy beside the
    verifier's reward on the same prompts (the honesty monitor: divergence means reward hacking)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ax[0, 0].plot(steps, [r.get("reward_mean") for r in records], lw=0.8, label="train reward (mean)")
    planned = any(r.get("format_rate") is not None for r in records)  # reasoning rounds add the format reward
    ax[0, 0].set_title(f"training reward ({reward} + format reward)" if planned else f"training reward ({reward})")
    ax[0, 1].plot(steps, [r.get("loss") for r in records], lw=0.8, color="tab:red")
    ax[0, 1].set_title("policy loss")
    ax[1, 0].plot(steps, [r.get("clip_fraction") for r in records], lw=0.8, color="tab:purple", label="clip fraction")
    ax[1, 0].plot(steps, [r.get("reward_wait_fraction") for r in records], lw=0.8, color="tab:gray",
                  label="reward wait fraction")  # fmt: skip
    ax[1, 0].legend()
    ax[1, 0].set_title("clip / reward wait")
    ev = [(r["step"], r["eval"]) for r in records if r.get("eval")]
    if ev:
        xs = [s for s, _ in ev]
        acc = [e.get("oracle_accuracy") for _, e in ev]
        err = [e.get("oracle_accuracy_stderr", 0) for _, e in ev]
        ax[1, 1].errorbar(xs, acc, yerr=err, marker="o", label="oracle accuracy (held-out)")
        ax[1, 1].plot(xs, [e.get("verifier_reward") for _, e in ev], marker="s", label="verifier reward (held-out)")
        if any(e.get("oracle_atom_accuracy") is not None for _, e in ev):  # partial credit
            ax[1, 1].plot(xs, [e.get("oracle_atom_accuracy") for _, e in ev], marker="x", ls="--",
                          label="oracle atom accuracy (held-out)")  # fmt: skip
        if any(e.get("refined_oracle_accuracy") is not None for _, e in ev):
            ax[1, 1].plot(xs, [e.get("refined_oracle_accuracy") for _, e in ev], marker="^",
                          label="oracle accuracy after one refinement")  # fmt: skip
        if any(e.get("reflect1_oracle_accuracy") is not None for _, e in ev):
            ax[1, 1].plot(xs, [e.get("reflect1_oracle_accuracy") for _, e in ev], marker="v", ls=":",
                          label="reflect 1: refined only where DVReward rose")  # fmt: skip
        ax[1, 1].set_ylim(0, 1.6)  # every curve lies in [0, 1]: the legend gets the band above them
        ax[1, 1].legend(loc="upper left", fontsize=7)
    ax[1, 1].set_title("held-out: oracle vs verifier")
    for a in ax.flat:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
