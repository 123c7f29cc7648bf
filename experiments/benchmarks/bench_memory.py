"""Benchmark 6 — memory: peak RSS of a 30 x 16 PDR [16,8,4] run on the sim engine <= 500 MB.

    python experiments/benchmarks/bench_memory.py
    python experiments/benchmarks/bench_memory.py --tiny

Runs `python -m pdr.run +experiment=quickstart dataset=aime2025 samples=16 strategy.widths=[16,8,4]
tracking=off` in a scratch directory, as a child of a small wrapper process that reports
`getrusage(RUSAGE_CHILDREN).ru_maxrss` (the peak RSS of the largest child: the run itself; a
grading worker, if one starts, is a separate and smaller process). Also runs samples=4 to show how
the peak grows with the problem-samples in flight, and reports the size of traces.jsonl.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import Result, bench_cli, emit, fmt

TARGET_MB = 500.0

_WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t0
print(json.dumps({"returncode": proc.returncode, "wall_s": wall, "stderr": proc.stderr[-2000:],
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def peak_rss(overrides: list[str]) -> dict[str, Any]:
    """Peak RSS (MB) and wall time of `python -m pdr.run OVERRIDES`, in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="pdr-bench-memory-") as tmp:
        cmd = [sys.executable, "-m", "pdr.run", *overrides, "tracking=off", "progress=false"]
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *cmd], cwd=tmp, capture_output=True, text=True, check=True
        )
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        if data["returncode"] != 0:
            raise RuntimeError(f"pdr.run failed: {data['stderr']}")
        traces = list(Path(tmp).glob("outputs/*/*/traces.jsonl"))
        summary = json.loads(next(Path(tmp).glob("outputs/*/*/summary.json")).read_text())
        return {
            "peak_rss_mb": data["maxrss_kb"] / 1024,
            "wall_s": data["wall_s"],
            "traces_mb": traces[0].stat().st_size / 2**20 if traces else 0.0,
            "problem_samples": int(summary["metrics"]["problem_samples"]),
        }


def run(tiny: bool = False) -> list[Result]:
    """The target run (and a smaller one for the slope)."""
    base = ["+experiment=quickstart", "dataset=aime2025", "strategy.widths=[16,8,4]"]
    if tiny:
        base = ["+experiment=quickstart", "dataset=tiny", "dataset.limit=3", "strategy.widths=[4,2]"]
    big_s, small_s = (2, 1) if tiny else (16, 4)
    big = peak_rss([*base, f"samples={big_s}"])
    small = peak_rss([*base, f"samples={small_s}"])
    slope = (big["peak_rss_mb"] - small["peak_rss_mb"]) / max(
        1, big["problem_samples"] - small["problem_samples"]
    )
    details = {
        "run": big,
        "smaller_run": small,
        "mb_per_problem_sample_in_flight": slope,
        "command": "python -m pdr.run " + " ".join([*base, f"samples={big_s}", "tracking=off"]),
    }
    label = "tiny" if tiny else "30x16 PDR [16,8,4] sim"
    return [
        Result(
            name=f"6. memory: peak RSS, {label}",
            target=f"<= {TARGET_MB:.0f} MB",
            measured=f"{fmt(big['peak_rss_mb'], 0)} MB ({fmt(slope, 3)} MB per problem-sample; "
            f"traces {fmt(big['traces_mb'], 0)} MB)",
            passed=big["peak_rss_mb"] <= TARGET_MB,
            details=details,
        )
    ]


def main() -> None:
    args = bench_cli(__doc__, "a few problems (smoke test)")
    results = run(tiny=args.tiny)
    emit(results, args.json)
    for r in results:
        print(r.name, json.dumps(r.details, default=str))


if __name__ == "__main__":
    main()
