"""Shared plumbing of the benchmarks: machine facts, composed configs, the fake SGLang server in its
own process, and the result rows that `run_all.py` tabulates.

The scripts in this folder are run as `python experiments/benchmarks/NAME.py` from the repository
root (Python puts the script's folder first on sys.path, which is how they import this module).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONF = REPO / "conf"

# No telemetry, no network: the benchmarks run offline.
for _k, _v in (
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
    ("MLFLOW_ENABLE_TELEMETRY", "false"),
    ("DO_NOT_TRACK", "1"),
):
    os.environ.setdefault(_k, _v)


@dataclass
class Result:
    """One benchmark's verdict: `measured` against `target` (both human-readable), and the numbers."""

    name: str
    target: str
    measured: str
    passed: bool | None  # None: informational, no target
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def emit(results: list[Result], as_json: bool) -> None:
    """Print `results` as a table (and, with `as_json`, one JSON line each, prefixed `RESULT `)."""
    print(table(results))
    if as_json:
        for r in results:
            print("RESULT " + r.to_json())


def table(results: list[Result]) -> str:
    rows = [("benchmark", "target", "measured", "pass")]
    for r in results:
        rows.append(
            (r.name, r.target, r.measured, "-" if r.passed is None else ("PASS" if r.passed else "FAIL"))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python version and platform of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def compose(overrides: list[str]) -> Any:
    """The typed config `python -m pdr.run OVERRIDES` would run (schema checks included)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from pdr.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("config", overrides=list(overrides)))


class FakeServer:
    """The accounting fake SGLang server (`accounting_server.py`) in a child process, so that its
    CPU time is not the client's. Use as a context manager; `url` once started."""

    def __init__(
        self,
        *,
        latency_base_ms: float = 0.0,
        latency_per_token_ms: float = 0.0,
        think_words: tuple[int, int] = (20, 60),
        radix_cache: bool = True,
        as_the_fake: bool = False,
    ):
        """`as_the_fake`: the fake's own sample generator and its missing TCP_NODELAY (for before/after)."""
        self.args = [
            "--latency-base-ms",
            str(latency_base_ms),
            "--latency-per-token-ms",
            str(latency_per_token_ms),
            "--think-words",
            str(think_words[0]),
            str(think_words[1]),
        ] + ([] if radix_cache else ["--no-radix-cache"])
        if as_the_fake or os.environ.get("PDR_BENCH_AS_THE_FAKE"):
            self.args += ["--reference-generator", "--no-nodelay"]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> FakeServer:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "accounting_server.py"), "--port", "0", *self.args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.__exit__()
            raise RuntimeError(f"the fake server did not start (said {line!r})")
        self.url = line.rsplit(" ", 1)[1].strip()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _call(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        """The server's counters (see accounting_server.py)."""
        return self._call("GET", "/bench/stats")

    def reset(self) -> None:
        """Zero the counters, flush the prefix cache and the per-prompt sample indices."""
        self._call("POST", "/bench/reset")

    def cpu_s(self) -> float:
        """CPU seconds the server process has used so far (Linux /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sglang_overrides(url: str, *, fork: str = "n", max_concurrency: int = 4096) -> list[str]:
    """The engine overrides for pdr's real SGLang client against `url` (native API)."""
    return [
        "engine=sglang",
        f"engine.url={url}",
        "engine.chat_template=qwen3",
        f"engine.fork={fork}",
        f"engine.max_concurrency={max_concurrency}",
    ]


def run_config(overrides: list[str], run_dir: Path) -> Any:
    """The composed config of a benchmark run into `run_dir` (tracking, progress bar and the
    persistent call cache off: every call goes to the engine)."""
    return compose([*overrides, "tracking=off", "progress=false", "cache.mode=off", f"output_dir={run_dir}"])


def run_pdr(overrides: list[str], run_dir: Path, cfg: Any = None) -> Any:
    """`pdr.runner.run` on `cfg` (default: `run_config(overrides, run_dir)`), into `run_dir`."""
    from pdr.runner import run

    cfg = cfg if cfg is not None else run_config(overrides, run_dir)
    return run(cfg, run_dir, launch_dir=run_dir)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Stopwatch:
    """Wall and process-CPU time of a block (`with Stopwatch() as sw: ...; sw.wall, sw.cpu`)."""

    def __enter__(self) -> Stopwatch:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def bench_cli(doc: str | None, tiny_help: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The common command line of the benchmark scripts: --tiny (smoke mode) and --json."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("--tiny", action="store_true", help=tiny_help)
    ap.add_argument("--json", action="store_true", help="also print one JSON line per result")
    if extra is not None:
        extra(ap)
    return ap.parse_args()


def print_details(results: list[Result]) -> None:
    for r in results:
        print(r.name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.details.items()})
