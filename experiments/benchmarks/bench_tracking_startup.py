"""Benchmark 7 — what MLflow tracking adds to a short run: `python -m pdr.run +experiment=quickstart`.

    python experiments/benchmarks/bench_tracking_startup.py                    # this checkout, 3 rounds
    python experiments/benchmarks/bench_tracking_startup.py --compare /tmp/old  # A/B against another checkout
    python experiments/benchmarks/bench_tracking_startup.py --tiny              # 1 round

Three cases, each a fresh process in a scratch directory (PDR_CACHE_DIR inside it, so no cache is
shared): `fresh store` (no mlflow.db yet: MLflow creates its tables), `existing store` (the same
directory again: the store is opened, a second run added), `tracking off` (`tracking.enabled=false`).
Checkouts and cases are interleaved round by round (load drifts on a shared machine); the medians
are reported. Each run's printed accuracy line is checked to be the quickstart's
(0.917 [0.854, 0.979]): the timing change must not change a result.

`--cfg job` (composing the config only) is measured too: it must stay under 1 s. And the quickstart
with calls that wait like a real server's (`engine.latency_base_ms=250`: the sim sleeps instead of
answering at once), with tracking on (existing store) and off: the sim's own calls are CPU work that a
thread cannot overlap (one Python thread runs at a time), waiting calls are what the overlap is for.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, Result, bench_cli, emit, fmt

EXPECTED = "accuracy      0.917  [0.854, 0.979]"
CASES = ("fresh store", "existing store", "tracking off", "--cfg job", "waiting calls, existing store",
         "waiting calls, tracking off")
# Calls that wait like a real server's (the sim sleeps 250 ms per call instead of answering at once):
# what the overlap is for. The sim's own calls are CPU work, which a thread cannot overlap (the GIL).
WAITING = ["engine.latency_base_ms=250"]


def _once(checkout: Path, scratch: Path, case: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), PDR_CACHE_DIR=str(scratch / "cache"))
    args = [sys.executable, "-m", "pdr.run", "+experiment=quickstart", "progress=false"]
    if case.startswith("waiting calls"):
        args += WAITING
    if case.endswith("tracking off"):
        args.append("tracking.enabled=false")
    if case == "--cfg job":
        args += ["--cfg", "job"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{checkout} {case}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    if case != "--cfg job" and EXPECTED not in proc.stdout:
        raise SystemExit(f"{checkout} {case}: the quickstart's result changed:\n{proc.stdout}")
    return wall


def measure(checkouts: list[Path], rounds: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {str(c): {k: [] for k in CASES} for c in checkouts}
    for _ in range(rounds):
        for c in checkouts:
            with tempfile.TemporaryDirectory(prefix="pdr-bench-track-") as tmp:
                scratch = Path(tmp)
                for case in CASES:  # fresh first: its run creates the store the second one reuses
                    out[str(c)][case].append(_once(c, scratch, case))
    return out


def run(tiny: bool = False, compare: str | None = None) -> list[Result]:
    checkouts = [REPO] + ([Path(compare).resolve()] if compare else [])
    times = measure(checkouts, 1 if tiny else 3)
    results = []
    for c, by_case in times.items():
        label = "this checkout" if Path(c) == REPO else c
        med = {k: statistics.median(v) for k, v in by_case.items()}
        for case in CASES:
            target = "< 1.0 s" if case == "--cfg job" else "informational"
            passed = (med[case] < 1.0) if case == "--cfg job" and not tiny else None
            results.append(Result(
                name=f"7. quickstart wall, {case} ({label})", target=target,
                measured=f"{fmt(med[case])} s (runs: {', '.join(fmt(x) for x in by_case[case])})",
                passed=passed, details={"checkout": c, "case": case, "median_s": med[case], "runs": by_case[case]},
            ))  # fmt: skip
        results.append(Result(
            name=f"7. MLflow's share, existing store ({label})", target="informational",
            measured=f"{fmt(med['existing store'] - med['tracking off'])} s over tracking off",
            passed=None, details={"checkout": c, "added_s": med["existing store"] - med["tracking off"]},
        ))  # fmt: skip
        added = med["waiting calls, existing store"] - med["waiting calls, tracking off"]
        results.append(Result(
            name=f"7. MLflow's share, waiting calls ({label})", target="informational",
            measured=f"{fmt(added)} s over tracking off", passed=None, details={"checkout": c, "added_s": added},
        ))  # fmt: skip
    return results


def main() -> None:
    args = bench_cli(__doc__, "1 round", lambda p: p.add_argument("--compare", help="another checkout (A/B)"))
    emit(run(tiny=args.tiny, compare=args.compare), args.json)


if __name__ == "__main__":
    main()
