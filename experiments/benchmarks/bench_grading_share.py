"""Benchmark 5 — grading: grades per second per core, and grading's share of a run's time.

    python experiments/benchmarks/bench_grading_share.py
    python experiments/benchmarks/bench_grading_share.py --tiny

Rates come from the grading engineer's `bench_grading.py` (same folder; its functions are called
here): AIME-style integer answers (inline fast paths, one process) and MATH-500-style answers
(math-verify, cold caches) with workers=0 (in this process) and workers=1 (one worker process;
the parent only waits). One process = one core, so these are per-core rates.

Share: sim-engine PDR runs through `pdr.runner.run` (AIME 2025 and MATH-500, whose non-integer
answers go to math-verify in the worker process), with `pdr.evaluation.grade_many` wrapped to
record each call's wall interval and its thread's CPU time. Reported: grading CPU / the run's
process CPU, the union of grading intervals / the run's wall time (the fraction of the run during
which any grading was in progress: an upper bound on the time grading adds), and the first
call's duration (it includes starting the worker process, which imports sympy). Each run is a fresh
interpreter (`--share`), cold like `python -m pdr.run`: no warm worker, no cached verdicts. The sim
engine answers instantly, so generation costs almost nothing and grading's share is the worst case;
against a real server it is smaller by orders of magnitude.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import Result, Stopwatch, bench_cli, emit, fmt, print_details, run_config, run_pdr

AIME_TARGET = 2000.0
MATH_TARGET = 150.0
SHARE_TARGET = 0.50  # "never dominates": grading in progress for at most half of the run's wall time


def grading_rates(tiny: bool) -> dict[str, float]:
    """grades/s: AIME-style (workers=1) and MATH-500-style cold (workers=0 and 1)."""
    import bench_grading

    out: dict[str, float] = {}
    n, dt = bench_grading.bench_aime(2000 if tiny else 20000, 6000, 0)
    out["aime_per_s"] = n / dt
    for workers in (0,) if tiny else (0, 1):
        if tiny:
            continue  # MATH-500 grades 1500 answers (a few seconds): skipped in the smoke test
        res = bench_grading.bench_math500(workers, 6000, 0)
        n, dt = res["all three, interleaved"]
        out[f"math500_cold_per_s_workers{workers}"] = n / dt
        n, dt = res["again (parses cached)"]
        out[f"math500_cached_per_s_workers{workers}"] = n / dt
    return out


class _GradeRecorder:
    """Wraps `pdr.evaluation.grade_many`: wall intervals and thread CPU of every call."""

    def __init__(self) -> None:
        import pdr.evaluation as ev

        self.ev = ev
        self.original = ev.grade_many
        self.intervals: list[tuple[float, float]] = []
        self.cpu = 0.0
        self.answers = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _GradeRecorder:
        original = self.original

        def recorded(pairs: Any, *args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(pairs, *args, **kwargs)
            finally:
                t1, c1 = time.perf_counter(), time.thread_time()
                with self._lock:
                    self.intervals.append((t0, t1))
                    self.cpu += c1 - c0
                    self.answers += len(pairs)

        self.ev.grade_many = recorded
        return self

    def __exit__(self, *exc: object) -> None:
        self.ev.grade_many = self.original

    def union_s(self) -> float:
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.intervals):
            if b > end:
                total += b - max(a, end)
                end = b
        return total


def grading_share(dataset: str, limit: int, samples: int) -> dict[str, Any]:
    """Grading's share of a sim PDR [8,4] run on `dataset`, in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, __file__, "--share", dataset, str(limit), str(samples)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _share_overrides(dataset: str, limit: int, samples: int) -> list[str]:
    return ["engine=sim", f"dataset={dataset}", f"dataset.limit={limit}", f"samples={samples}", "strategy=pdr",
            "strategy.widths=[8,4]"]


def _grading_share_here(dataset: str, limit: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pdr-bench-grading-") as tmp:
        run_dir = Path(tmp) / "run"
        cfg = run_config(_share_overrides(dataset, limit, samples), run_dir)
        # The same run with grading answered instantly: the difference in wall time is what
        # grading adds to the run (it overlaps with generation, so "busy" time overstates it).
        import pdr.evaluation as ev
        from pdr.evaluation.grading import Grade

        real_grade_many = ev.grade_many
        ev.grade_many = lambda pairs, **kw: [Grade(False, "wrong", None, None, "none") for _ in pairs]
        try:
            stub_cfg = run_config([*_share_overrides(dataset, limit, samples)], Path(tmp) / "stub")
            with Stopwatch() as sw_stub:
                run_pdr([], Path(tmp) / "stub", cfg=stub_cfg)
        finally:
            ev.grade_many = real_grade_many
        with _GradeRecorder() as rec, Stopwatch() as sw:
            result = run_pdr([], run_dir, cfg=cfg)
    first = min(rec.intervals, default=(0.0, 0.0))
    return {
        "dataset": dataset,
        "problem_samples": len(result.rows),
        "grade_many_calls": len(rec.intervals),
        "answers_graded": rec.answers,
        "run_wall_s": sw.wall,
        "run_cpu_s": sw.cpu,
        "grading_cpu_s": rec.cpu,
        "grading_busy_wall_s": rec.union_s(),
        "cpu_share": rec.cpu / sw.cpu if sw.cpu else 0.0,
        "wall_share": rec.union_s() / sw.wall if sw.wall else 0.0,
        "run_wall_s_instant_grading": sw_stub.wall,
        "added_wall_share": max(0.0, sw.wall - sw_stub.wall) / sw.wall if sw.wall else 0.0,
        "first_call_s": first[1] - first[0],
    }


def run(tiny: bool = False) -> list[Result]:
    """Rates against the per-core targets; shares against "never dominates" (<= 10 %)."""
    rates = grading_rates(tiny)
    results = [
        Result(
            name="5. grading rate: AIME-style (1 core)",
            target=f">= {AIME_TARGET:.0f} grades/s",
            measured=f"{fmt(rates['aime_per_s'], 0)} grades/s",
            passed=rates["aime_per_s"] >= AIME_TARGET,
            details=rates,
        )
    ]
    for workers in (0, 1):
        key = f"math500_cold_per_s_workers{workers}"
        if key in rates:
            results.append(
                Result(
                    name=f"5. grading rate: MATH-500-style cold (workers={workers})",
                    target=f">= {MATH_TARGET:.0f} grades/s",
                    measured=f"{fmt(rates[key], 0)} grades/s",
                    passed=rates[key] >= MATH_TARGET,
                    details=rates,
                )
            )
    for dataset, limit, samples in (
        (("aime2025", 3, 2), ("math500", 5, 2)) if tiny else (("aime2025", 30, 4), ("math500", 100, 4))
    ):
        m = grading_share(dataset, limit, samples)
        results.append(
            Result(
                name=f"5. grading share: sim PDR [8,4] {dataset} {limit}x{samples}",
                target=f"<= {SHARE_TARGET:.0%} of the run",
                measured=f"adds {m['added_wall_share']:.1%} of {fmt(m['run_wall_s'])} s wall; CPU {m['cpu_share']:.1%};"
                f" busy (overlapping generation) {m['wall_share']:.1%}",
                passed=max(m["cpu_share"], m["added_wall_share"]) <= SHARE_TARGET,
                details=m,
            )
        )
    return results


def main() -> None:
    args = bench_cli(__doc__, "fewer answers, no MATH-500 rates (smoke test)", lambda ap: ap.add_argument(
        "--share", nargs=3, metavar=("DATASET", "LIMIT", "SAMPLES"),
        help="only measure grading's share of one sim run in this process; print it as JSON"))
    if args.share:
        dataset, limit, samples = args.share
        print(json.dumps(_grading_share_here(dataset, int(limit), int(samples))))
        return
    results = run(tiny=args.tiny)
    emit(results, args.json)
    print_details(results)


if __name__ == "__main__":
    main()
