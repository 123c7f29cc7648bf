"""The managed server (`engine.launch=true`), with `tests/fakes/fake_launch_server.py` standing in
for `python -m sglang.launch_server`: readiness, failure with the log's tail, teardown."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pdr.config.engines import SGLangEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.launch import ManagedServer, find_free_port, server_args_to_argv
from pdr.engines.sglang import SGLangEngine
from pdr.errors import ConfigError, ServerLaunchError

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_COMMAND = [sys.executable, "-m", "tests.fakes.fake_launch_server"]


def fake_env(**extra: str) -> dict[str, str]:
    """Environment for the stand-in: the repo on PYTHONPATH so `tests.fakes` imports."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **extra}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def managed(tmp_path: Path, **kw: Any) -> ManagedServer:
    args: dict[str, Any] = dict(
        model="Qwen/Qwen3-8B",
        log_path=tmp_path / "sglang_server.log",
        url="http://127.0.0.1",  # no port: pick a free one
        command=FAKE_COMMAND,
        env=fake_env(),
        startup_timeout_s=20.0,
        stop_grace_s=2.0,
        poll_interval_s=0.1,
    )
    args.update(kw)
    return ManagedServer(**args)


def test_server_args_to_argv() -> None:
    argv = server_args_to_argv(
        {
            "reasoning_parser": "qwen3",
            "enable-metrics": True,
            "disable_radix_cache": False,
            "mem_fraction_static": 0.8,
            "default_chat_template_kwargs": {"enable_thinking": False},
            "cuda_graph_bs": [1, 2, 4],
            "chunked_prefill_size": None,
        }
    )
    assert argv == [
        "--reasoning-parser",
        "qwen3",
        "--enable-metrics",
        "--mem-fraction-static",
        "0.8",
        "--default-chat-template-kwargs",
        '{"enable_thinking": false}',
        "--cuda-graph-bs",
        "1",
        "2",
        "4",
    ]


def test_reserved_server_args_and_model_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="engine.server_args.port"):
        SGLangEngineConfig(launch=True, model="m", server_args={"port": 1})
    with pytest.raises(ConfigError, match="engine.model"):
        SGLangEngineConfig(launch=True, server_args={"model-path": "m"})
    with pytest.raises(ConfigError, match="engine.launch=true needs engine.model"):
        SGLangEngineConfig(launch=True)


def test_engine_launches_serves_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDR_TEST_LAUNCH_KEY", "launch-secret-key")
    argv_file = tmp_path / "argv.json"
    cfg = SGLangEngineConfig(
        model="Qwen/Qwen3-8B",
        url="http://127.0.0.1",
        launch=True,
        launch_command=FAKE_COMMAND,
        launch_env=fake_env(FAKE_SGLANG_STARTING_S="0.5", FAKE_SGLANG_ARGV_FILE=str(argv_file)),
        server_args={"reasoning_parser": "qwen3", "enable_metrics": True},
        api_key_env="PDR_TEST_LAUNCH_KEY",
        startup_timeout_s=20,
        stop_grace_s=2,
        ready_timeout_s=5,
    )

    async def main() -> tuple[dict[str, Any], int, int]:
        engine = SGLangEngine(cfg, run_dir=tmp_path)
        await engine.start()
        try:
            assert engine.server is not None and engine.server.pid is not None
            pid = engine.server.pid
            out = await engine.generate(
                GenRequest((Message("user", "hi"),), SamplingParams(max_tokens=100), n=2)
            )
            assert len(out) == 2
            return engine.info(), pid, int(engine.url.rsplit(":", 1)[1])
        finally:
            await engine.close()

    info, pid, port = asyncio.run(main())
    assert wait_dead(pid), "the server process survived close()"
    assert info["launched"] is True and info["model"] == "Qwen/Qwen3-8B"
    assert info["server_log"] == str(tmp_path / "sglang_server.log")
    argv = json.loads(argv_file.read_text())
    assert argv[argv.index("--model-path") + 1] == "Qwen/Qwen3-8B"
    assert argv[argv.index("--port") + 1] == str(port)
    assert argv[argv.index("--reasoning-parser") + 1] == "qwen3" and "--enable-metrics" in argv
    assert argv[argv.index("--api-key") + 1] == "launch-secret-key"  # the server needs it ...
    log = (tmp_path / "sglang_server.log").read_text()
    assert "The server is fired up and ready to roll!" in log
    assert "launch-secret-key" not in log  # ... but pdr's log line and the server's own are redacted
    assert "--api-key ***" in log


def test_launch_failure_reports_the_log_tail_fast(tmp_path: Path) -> None:
    server = managed(tmp_path, env=fake_env(FAKE_SGLANG_FAIL="1"))
    t0 = time.monotonic()
    with pytest.raises(ServerLaunchError) as info:
        asyncio.run(server.start())
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert "exited with code 1" in msg and "CUDA out of memory" in msg and "Traceback" in msg
    assert server.proc is None and server.returncode == 1


def test_startup_timeout_stops_the_server(tmp_path: Path) -> None:
    server = managed(tmp_path, env=fake_env(FAKE_SGLANG_STARTING_S="60"), startup_timeout_s=1.5)
    pids: list[int] = []

    async def main() -> None:
        task = asyncio.create_task(server.start())
        while server.pid is None:
            await asyncio.sleep(0.01)
        pids.append(server.pid)
        await task

    with pytest.raises(ServerLaunchError, match="not ready after engine.startup_timeout_s=1.5"):
        asyncio.run(main())
    assert wait_dead(pids[0])


def test_teardown_after_an_exception_inside_the_context_kills_the_group(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    server = managed(tmp_path, env=fake_env(FAKE_SGLANG_CHILD_PID_FILE=str(child_file)))
    pids: list[int] = []

    async def main() -> None:
        async with server as s:
            pids.append(s.pid or 0)
            raise RuntimeError("boom inside the run")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(main())
    child = int(child_file.read_text())
    assert wait_dead(pids[0]) and wait_dead(child), "server or its child survived"


def test_ctrl_c_stops_the_server(tmp_path: Path) -> None:
    server = managed(tmp_path)
    pids: list[int] = []

    async def main() -> None:
        async with server as s:
            pids.append(s.pid or 0)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(main())
    assert wait_dead(pids[0])


def test_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    server = managed(tmp_path, env=fake_env(FAKE_SGLANG_IGNORE_SIGTERM="1"), stop_grace_s=0.5)
    asyncio.run(server.start())
    pid = server.pid
    assert pid is not None and alive(pid)
    t0 = time.monotonic()
    server.stop()
    assert not alive(pid) and time.monotonic() - t0 < 5
    server.stop()  # idempotent


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    port = find_free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen(1)
        server = managed(tmp_path, url=f"http://127.0.0.1:{port}")
        with pytest.raises(ServerLaunchError, match=f"port {port} on 127.0.0.1 is already in use"):
            asyncio.run(server.start())
        assert server.proc is None
