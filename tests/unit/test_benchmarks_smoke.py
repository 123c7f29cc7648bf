"""The benchmark scripts (experiments/benchmarks) still import and run, in their tiny mode.

No timing is asserted here (the benchmarks measure; this only keeps them working): every one of
the six benchmarks runs end to end and reports its numbers, and none crashes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # runs every benchmark script in a subprocess

BENCH = REPO / "experiments" / "benchmarks"


def test_run_all_tiny_runs_every_benchmark(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--tiny", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["tiny"] is True and data["machine"]["nproc"] >= 1
    results = data["results"]
    assert not [r for r in results if r["measured"].startswith("crashed")]
    prefixes = {r["name"].split(".")[0] for r in results}
    assert prefixes == {"1", "2", "3", "4", "5", "6"}  # all six benchmarks reported
    by_name = {r["name"]: r for r in results}
    # Numbers, not placeholders: a few sanity checks on what the tiny runs measured.
    sched = by_name["1. scheduling: pdr [8,4]"]["details"]
    assert sched["errors"] == 0 and sched["ideal_s"] > 0 and sched["wall_s"] >= sched["ideal_s"] * 0.99
    prefix = by_name["3. prefix sharing: fork=n"]["details"]
    assert 0 < prefix["prefill_tokens"] <= prefix["prompt_tokens_sent"] + prefix["samples"]
    startup = by_name["4. start-up: heavy modules after compose"]["details"]
    assert startup["forbidden_loaded"] == []
    assert "target" in proc.stdout and "measured" in proc.stdout  # the table was printed
