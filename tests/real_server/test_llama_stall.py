"""The stall watchdog against the real llama.cpp server (llama-cpp-python): a hung server (SIGSTOP:
the socket still accepts, nothing answers) is detected in `engine.stall_timeout_s` and the run
finishes once it resumes; a long, healthy generation is never taken for a hang.

llama-cpp-python is the hard case for a watchdog: it runs one generation at a time behind a lock
that its /v1/models route waits for too, so only an endpoint its event loop answers by itself
(pdr probes /health, a 404 there) tells a busy server from a hung one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pdr.config.engines import OpenAIEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.openai import OpenAIEngine
from tests.fakes import run_with_engine
from tests.real_server.test_llama_e2e import _calls, _wait_for, env, pdr_args, rows, run_dir

pytestmark = pytest.mark.real_server
TIMEOUT_S = 300  # engine.timeout_s: what a hang cost without the watchdog
STALL_S = 4.0
WATCH = (f"engine.timeout_s={TIMEOUT_S}", "engine.health_interval_s=1", f"engine.stall_timeout_s={STALL_S:g}")
STALL_LINE = "gave no sign of life"


def _log(cwd: Path) -> str:
    found = list(cwd.glob("outputs/*/*/run.log"))
    return found[0].read_text() if found else ""


def test_a_server_hung_mid_run_is_detected_in_stall_timeout_and_the_run_finishes(tmp_path, llama_server):
    proc = subprocess.Popen(
        pdr_args(llama_server, "strategy=majority", "strategy.n=2", *WATCH),
        cwd=tmp_path, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid = llama_server.proc.pid
    try:
        _wait_for(lambda: _calls(tmp_path) >= 1, proc, "a first call")
        os.kill(pid, signal.SIGSTOP)  # mid-run: the next request is in flight or about to be sent
        stopped = time.monotonic()
        try:
            _wait_for(lambda: STALL_LINE in _log(tmp_path), proc, "stall detected", timeout=TIMEOUT_S)
            detected_after = time.monotonic() - stopped
            time.sleep(STALL_S)  # hung well past the stall: the run waits for the server meanwhile
        finally:
            os.kill(pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=600)
    finally:
        os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    # Detected in about stall_timeout_s; without the watchdog the request would have waited out
    # timeout_s. The bound is generous (a loaded machine), and far below TIMEOUT_S.
    assert detected_after < TIMEOUT_S / 3, detected_after
    log = (run_dir(tmp_path) / "run.log").read_text()
    assert STALL_LINE in log and "is back after" in log, log[-3000:]
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["engine_info"]["stalls"] >= 1 and summary["engine_info"]["stall_watch"].endswith("/health")
    got = rows(tmp_path)
    assert len(got) == 2 and all(r["status"] != "error" for r in got), [r["status"] for r in got]


def test_a_long_healthy_generation_is_not_taken_for_a_hang(llama_server):
    cfg = OpenAIEngineConfig(
        url=llama_server.url,
        api_key_env=None,
        timeout_s=TIMEOUT_S,
        health_interval_s=0.25,
        stall_timeout_s=1.0,
    )
    # 1,024 tokens: ~20 s on an idle 2-core machine (256 took 5 s once, too close to the bound below).
    req = GenRequest(
        (Message("user", "Write a long story about a dragon who learns to count."),),
        SamplingParams(max_tokens=1024, temperature=0.8),
    )

    async def go(e: OpenAIEngine):
        out = await e.generate(req)
        return out, e.info(), e._require_http().watchdog.probes

    out, info, probes = run_with_engine(OpenAIEngine(cfg), go)
    # The generation outlasted stall_timeout_s several times (else this test proves nothing)...
    assert out[0].latency_s > 3 * cfg.stall_timeout_s, out[0].latency_s
    # ... with the server's probes answered throughout, and it was never cut.
    assert info["stalls"] == 0 and info["retries"] == 0 and info["stall_watch"].endswith("/health")
    assert probes >= out[0].latency_s / cfg.health_interval_s / 2
