"""A bounded version of ``alphagrpo bench load``: both services as processes under concurrent load over
loopback, zero errors, every request answered, memory measured (the full run's figures are in BENCHMARKS)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bounded_load_has_no_errors():
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "bench", "load", "--json", "--decomposer-requests",
                          "400", "--concurrency", "32", "--verifier-requests", "24", "--verifier-concurrency", "8"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    assert fig["errors"] == 0 and fig["decomposer_ok"] == 400 and fig["verifier_ok"] == 24
    assert fig["decomposer_rss_mib_before"] > 10 and fig["verifier_rss_mib_after"] > 10
    assert fig["decomposer_p50_ms"] <= fig["decomposer_p99_ms"]
