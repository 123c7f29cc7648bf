"""Benchmark 4 — start-up: `python -m pdr.run +experiment=quickstart --cfg job` in <= 1.0 s.

    python experiments/benchmarks/bench_startup.py            # 10 runs (hyperfine if installed)
    python experiments/benchmarks/bench_startup.py --tiny     # 3 runs

Three measurements:
1. the median wall time of the command over several runs (with `hyperfine` when it is on PATH,
   else a subprocess loop), from a scratch directory so no earlier outputs/ are involved;
2. `python -X importtime` of the same command: the slowest imports (cumulative) and which heavy
   modules (mlflow, datasets, sympy, math-verify, httpx, aiohttp, pandas, numpy, torch) load;
3. composing the quickstart config in a fresh interpreter the way `pdr.run` does (Hydra compose +
   `OmegaConf.to_object`, i.e. every schema check and the strategy-graph compile), then asserting
   that mlflow, datasets, sympy and math_verify are not in `sys.modules`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import CONF, REPO, Result, bench_cli, emit, fmt

TARGET_S = 1.0
COMMAND = [sys.executable, "-m", "pdr.run", "+experiment=quickstart", "--cfg", "job"]
MUST_NOT_LOAD = ("mlflow", "datasets", "sympy", "math_verify")
HEAVY = (*MUST_NOT_LOAD, "httpx", "aiohttp", "pandas", "numpy", "torch", "matplotlib", "tqdm")

_COMPOSE_PROBE = f"""
import json, sys, time
t0 = time.perf_counter()
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pdr.config.schema import register_configs
register_configs()
with initialize_config_dir(config_dir={str(CONF)!r}, version_base="1.3"):
    cfg = OmegaConf.to_object(compose("config", overrides=["+experiment=quickstart"]))
print(json.dumps({{"compose_s": time.perf_counter() - t0,
                  "loaded": sorted({{m.split(".")[0] for m in sys.modules}})}}))
"""


def _time_runs(runs: int, cwd: Path) -> dict[str, Any]:
    """Median wall time of COMMAND (hyperfine when available)."""
    if shutil.which("hyperfine"):
        out = cwd / "hyperfine.json"
        subprocess.run(
            [
                "hyperfine",
                "--warmup",
                "1",
                "--runs",
                str(runs),
                "--export-json",
                str(out),
                "--style",
                "none",
                "-N",
                " ".join(COMMAND),
            ],
            cwd=cwd,
            check=True,
            capture_output=True,
        )
        times = json.loads(out.read_text())["results"][0]["times"]
        tool = "hyperfine"
    else:
        subprocess.run(COMMAND, cwd=cwd, check=True, capture_output=True)  # warm-up (page cache)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(COMMAND, cwd=cwd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        tool = "subprocess loop"
    return {
        "tool": tool,
        "runs": len(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
    }


def _importtime(cwd: Path, top: int = 12) -> dict[str, Any]:
    """Slowest imports (cumulative microseconds) and the heavy top-level packages imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *COMMAND[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, cum_us, raw = line.replace("import time:", "").split("|")
        if self_us.strip().isdigit():
            # Nesting shows as extra indentation; an import made directly by the command has one space.
            rows.append((int(cum_us), raw.strip(), len(raw) - len(raw.lstrip()) == 1))
    top_level = {name.split(".")[0] for _, name, _ in rows}
    roots = [(cum, name) for cum, name, root in rows if root]
    return {
        "total_import_ms": sum(cum for cum, _ in roots) / 1000,
        "slowest": [f"{name} {cum / 1000:.1f} ms" for cum, name in sorted(roots, reverse=True)[:top]],
        "heavy_imported": sorted(m for m in HEAVY if m in top_level),
    }


def _compose_probe() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _COMPOSE_PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded = set(data.pop("loaded"))
    data["heavy_loaded"] = sorted(m for m in HEAVY if m in loaded)
    data["forbidden_loaded"] = sorted(m for m in MUST_NOT_LOAD if m in loaded)
    return data


def run(tiny: bool = False) -> list[Result]:
    """Median start-up time against the target; the import audit as a second row."""
    with tempfile.TemporaryDirectory(prefix="pdr-bench-startup-") as tmp:
        cwd = Path(tmp)
        timing = _time_runs(3 if tiny else 10, cwd)
        imports = _importtime(cwd)
    probe = _compose_probe()
    return [
        Result(
            name="4. start-up: --cfg job (median)",
            target=f"<= {TARGET_S:.1f} s",
            measured=f"{fmt(timing['median_s'], 3)} s (min {fmt(timing['min_s'], 3)}, {timing['runs']} runs, "
            f"{timing['tool']})",
            passed=timing["median_s"] <= TARGET_S,
            details={**timing, **imports},
        ),
        Result(
            name="4. start-up: heavy modules after compose",
            target="no " + "/".join(MUST_NOT_LOAD),
            measured=("none" if not probe["forbidden_loaded"] else ", ".join(probe["forbidden_loaded"]))
            + f" (compose {fmt(probe['compose_s'], 3)} s; heavy: {', '.join(probe['heavy_loaded']) or '-'})",
            passed=not probe["forbidden_loaded"],
            details=probe,
        ),
    ]


def main() -> None:
    args = bench_cli(__doc__, "3 timed runs (smoke test)")
    results = run(tiny=args.tiny)
    emit(results, args.json)
    imports = results[0].details
    print(f"imports of `{' '.join(COMMAND[1:])}`: {imports['total_import_ms']:.0f} ms in total; slowest:")
    for line in imports["slowest"]:
        print("   ", line)
    print("heavy packages imported by --cfg job:", ", ".join(imports["heavy_imported"]) or "none")
    forbidden = results[1].details["forbidden_loaded"]
    assert not forbidden, f"composing the quickstart config imported {forbidden}"


if __name__ == "__main__":
    main()
