"""Run the six pdr performance benchmarks and print one table: target, measured, pass/fail.

    python experiments/benchmarks/run_all.py                 # all six, ~2-3 minutes on 2 cores
    python experiments/benchmarks/run_all.py --tiny          # smoke mode: seconds, no verdicts
    python experiments/benchmarks/run_all.py --only startup grading --out results.json

Each benchmark runs in its own interpreter (`NAME.py --json`), as a user would run it, so that one
benchmark's threads, worker processes or caches cannot flatter or burden the next. In --tiny mode
the workloads are too small to measure anything: the table shows the numbers but no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import HERE, REPO, Result, machine, table

BENCHMARKS = {  # name -> script, in the order they run (the quick, noise-sensitive ones first)
    "startup": "bench_startup.py",
    "grading": "bench_grading_share.py",
    "memory": "bench_memory.py",
    "prefix": "bench_prefix_sharing.py",
    "overhead": "bench_client_overhead.py",
    "scheduling": "bench_scheduling.py",
}


def run_one(script: str, tiny: bool) -> tuple[list[Result], str]:
    """Run one benchmark script; its results (parsed from its `RESULT` lines) and its output."""
    cmd = [sys.executable, str(HERE / script), "--json", *(["--tiny"] if tiny else [])]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    results = [
        Result(**json.loads(line[len("RESULT ") :]))
        for line in proc.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    if proc.returncode != 0 or not results:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        results.append(
            Result(name=f"{script}", target="runs", measured=f"crashed: {tail[0][:120]}", passed=False)
        )
    return results, proc.stdout + proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny workloads (smoke test): no verdicts")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    ap.add_argument("--out", type=Path, help="also write the results (and the machine) as JSON here")
    ap.add_argument("--verbose", action="store_true", help="print each benchmark's own output too")
    args = ap.parse_args()

    facts = machine()
    print(f"machine: {facts['nproc']} cores ({facts['cpu']}), Python {facts['python']}, {facts['platform']}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results: list[Result] = []
    started = time.perf_counter()
    for name in args.only or BENCHMARKS:
        t0 = time.perf_counter()
        got, output = run_one(BENCHMARKS[name], args.tiny)
        if args.tiny:
            for r in got:
                if not r.measured.startswith("crashed"):
                    r.passed = None
        results += got
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if args.verbose:
            print(output)
    print()
    print(table(results))
    verdicts = [r.passed for r in results if r.passed is not None]
    print(
        f"\n{sum(verdicts)} of {len(verdicts)} targets met in {time.perf_counter() - started:.0f} s"
        + (" (tiny mode: no verdicts)" if args.tiny else "")
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"machine": facts, "tiny": args.tiny, "results": [r.__dict__ for r in results]},
                indent=2,
                default=str,
            )
            + "\n"
        )
    crashed = [r for r in results if r.measured.startswith("crashed")]
    sys.exit(1 if crashed else 0)


if __name__ == "__main__":
    main()
