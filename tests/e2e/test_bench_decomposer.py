"""``alphagrpo bench decomposer --json`` runs and meets its targets (DSG-1k recall skipped: it needs the
90 MB embedding model and a minute; ``BENCHMARKS.md`` records it)."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_bench_decomposer_prints_figures_as_last_line():
    out = subprocess.run([sys.executable, "-m", "alphagrpo.cli", "bench", "decomposer", "--json", "--skip-dsg"],
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["geneval_atom_coverage"] == 1.0
    assert figures["singleflight_backend_calls"] == 1
    assert figures["redis_outage_failed_requests"] == 0 and figures["redis_outage_cache_resumed"] is True
    assert figures["cache_hit_p50_ms"] > 0 and 0 < figures["compbench_parsed_fraction"] <= 1
