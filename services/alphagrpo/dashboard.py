"""``alphagrpo dashboard``: a provisioned Grafana dashboard's panels rendered to one PNG from a live Prometheus.

Each panel's own PromQL targets (``deploy/grafana/dashboards/*.json``) are evaluated by Prometheus's
``/api/v1/query_range`` over a time window and drawn with matplotlib in the dashboard's grid order, one axis per
panel, series named by the target's ``legendFormat``. It is what the dashboard shows, computed by the same
Prometheus from the same queries, for places without Grafana (this repository's CI machines have none) and for
the README's screenshot. Departures from Grafana: no styling, units or thresholds; a bar-gauge panel is drawn
as its series' last values; Grafana's ``$__rate_interval``/``$__interval`` become ``rate_window``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class Series:
    panel: str
    name: str
    times: list[float]
    values: list[float]


def panels(dashboard: dict) -> list[dict]:
    """Panels with targets, in the dashboard's reading order (row, then column)."""
    ps = [p for p in dashboard.get("panels", []) if p.get("targets")]
    return sorted(ps, key=lambda p: (p.get("gridPos", {}).get("y", 0), p.get("gridPos", {}).get("x", 0)))


def legend(fmt: str | None, labels: dict, expr: str) -> str:
    """Grafana's legendFormat: ``{{label}}`` replaced by the series' label value; the expression if none."""
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or expr[:40]
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(labels.get(m.group(1), "")), fmt)


def query_range(client: httpx.Client, prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    r = client.get(f"{prometheus}/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step})
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body.get('error', r.text[:200])}")
    return body["data"]["result"]


def collect(dashboard: dict, prometheus: str, start: float, end: float, step: float = 5.0,
            rate_window: str = "1m") -> list[Series]:  # fmt: skip
    """Every panel target's series over [start, end] (unix seconds)."""
    out = []
    with httpx.Client(timeout=30) as client:
        for p in panels(dashboard):
            for t in p["targets"]:
                expr = re.sub(r"\$__(rate_)?interval", rate_window, t["expr"])
                for res in query_range(client, prometheus, expr, start, end, step):
                    pts = [(float(ts), float(v)) for ts, v in res["values"]]
                    out.append(Series(p["title"], legend(t.get("legendFormat"), res["metric"], expr),
                                      [a for a, _ in pts], [b for _, b in pts]))  # fmt: skip
    return out


def render(dashboard: dict, series: list[Series], out: Path, cols: int = 2) -> Path:
    """One axis per panel (empty panels say so), minutes on the x axis, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = panels(dashboard)
    rows = math.ceil(len(ps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 2.6 * rows), squeeze=False)
    t0 = min((s.times[0] for s in series if s.times), default=0.0)
    for ax, p in zip(axes.flat, ps):
        mine = [s for s in series if s.panel == p["title"]]
        ax.set_title(p["title"], fontsize=9)
        finite = [s for s in mine if any(math.isfinite(v) for v in s.values)]
        if not finite:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        if p.get("type") == "bargauge":
            _bars(ax, finite)
        for s in finite if p.get("type") != "bargauge" else []:
            ax.plot([(t - t0) / 60 for t in s.times], s.values, label=s.name, lw=1.2)
        if finite and p.get("type") != "bargauge":
            ax.legend(fontsize=7, loc="best")
            ax.set_xlabel("minutes", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(ps) :]:
        ax.axis("off")
    fig.suptitle(f"{dashboard.get('title', 'dashboard')} "
                 "(panels' PromQL evaluated by Prometheus, drawn with matplotlib)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _bars(ax, series: list[Series]) -> None:
    """A bar gauge of the series' last values; histogram buckets (named by their ``le`` bound) are put in
    order and turned from cumulative into per-bucket values, as Grafana's heatmap format shows them."""
    def bound(s: Series) -> float:
        try:
            return float(s.name)
        except ValueError:
            return math.nan

    if series and all(not math.isnan(bound(s)) for s in series):
        series = sorted(series, key=bound)
        last = [s.values[-1] for s in series]
        values = [last[0]] + [b - a for a, b in zip(last, last[1:])]
        labels = [f"<= {s.name}" for s in series]
    else:
        values, labels = [s.values[-1] for s in series], [s.name for s in series]
    ax.bar(labels, values)
    ax.tick_params(axis="x", labelrotation=45)


def render_dashboard(dashboard_path: Path, prometheus: str, out: Path, minutes: float = 15.0,
                     end: float | None = None, step: float = 5.0) -> dict:  # fmt: skip
    dashboard = json.loads(Path(dashboard_path).read_text())
    end = end or time.time()
    series = collect(dashboard, prometheus, end - minutes * 60, end, step)
    render(dashboard, series, out)
    names = {s.panel for s in series if any(math.isfinite(v) for v in s.values)}
    return {"image": str(out), "panels": len(panels(dashboard)), "panels_with_data": len(names), "series": len(series)}
