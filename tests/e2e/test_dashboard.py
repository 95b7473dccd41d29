"""The dashboard renderer against a real Prometheus scraping a real trainer monitor: the trainer dashboard's
own PromQL is evaluated by Prometheus and drawn, panels with data are counted, and a refused query is an
error that names it."""

import shutil
import time

import httpx
import pytest

from alphagrpo.dashboard import legend, render_dashboard
from serving.launch import start_prometheus
from trainer.monitor import Monitor

pytestmark = pytest.mark.slow
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="no prometheus binary (.ci/run installs it)")


def test_legend_format():
    assert legend("{{outcome}} p99", {"outcome": "ok"}, "x") == "ok p99"
    assert legend(None, {"__name__": "m", "reason": "nan"}, "x") == "reason=nan"
    assert legend("", {}, "rate(m[5m])") == "rate(m[5m])"


def test_cli_names_an_unreachable_prometheus(tmp_path):
    from typer.testing import CliRunner

    from alphagrpo.cli import app
    from serving.launch import free_port

    url = f"http://127.0.0.1:{free_port()}"
    res = CliRunner().invoke(app, ["dashboard", "--prometheus", url, "--out", str(tmp_path / "d.png")])
    assert res.exit_code == 2 and "cannot query Prometheus" in res.output


def test_histogram_bars_are_ordered_and_per_bucket():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alphagrpo.dashboard import Series, _bars

    fig, ax = plt.subplots()
    _bars(ax, [Series("p", "+Inf", [0], [10.0]), Series("p", "0.5", [0], [4.0]), Series("p", "0.1", [0], [1.0])])
    assert [b.get_height() for b in ax.patches] == [1.0, 3.0, 6.0]  # cumulative le-buckets -> per bucket
    assert [t.get_text() for t in ax.get_xticklabels()] == ["<= 0.1", "<= 0.5", "<= +Inf"]
    plt.close(fig)


@needs_prometheus
def test_trainer_dashboard_from_a_live_prometheus(tmp_path):
    monitor = Monitor(total_steps=20, run_dir=tmp_path)
    url = monitor.serve(0)
    prom, purl = start_prometheus({"trainer": [url.removeprefix("http://")]}, tmp_path / "prom",
                                  log_path=tmp_path / "p.log")
    try:
        with prom:
            deadline = time.monotonic() + 30
            up = {"query": 'up{job="trainer"} == 1'}
            while not httpx.get(purl + "/api/v1/query", params=up).json()["data"]["result"]:
                assert time.monotonic() < deadline, "Prometheus never scraped the trainer"
                time.sleep(0.3)
            for step in range(1, 9):  # a run's records, a little apart so that rates have points
                ev = {"oracle_accuracy": 0.2, "verifier_reward": 0.6} if step % 4 == 0 else None
                monitor.update({"step": step, "loss": 0.1 / step, "kl": 0.0, "clip_fraction": 0.01,
                                "ratio_max_dev": 1e-5,
                                "samples_per_second": 2.5, "reward_wait_fraction": 0.02, "frac_reward_zero_std": 0.0,
                                "reward_mean": 0.5 + step / 100, "reward_std": 0.1, "n_invalid": 0, "skipped": False,
                                "step_s": 10.0, "ema_decay": 0.9, "ema_gap": 1e-3, "eval": ev})  # fmt: skip
                time.sleep(0.6)
            time.sleep(1.5)
            out = render_dashboard("deploy/grafana/dashboards/trainer.json", purl, tmp_path / "d.png", minutes=1,
                                   step=1)
            assert out["panels"] == 13 and out["panels_with_data"] >= 10
            assert (tmp_path / "d.png").stat().st_size > 20_000
            steps = httpx.get(purl + "/api/v1/query",
                              params={"query": "count_over_time(alphagrpo_trainer_step[1m])"}).json()
            assert float(steps["data"]["result"][0]["value"][1]) >= 4  # the run's steps were scraped as a series
            bad = tmp_path / "bad.json"
            bad.write_text('{"panels": [{"title": "t", "targets": [{"expr": "rate(("}]}]}')
            with pytest.raises(RuntimeError, match="Prometheus refused 'rate\\(\\('"):
                render_dashboard(bad, purl, tmp_path / "b.png", minutes=1)
    finally:
        monitor.close()
