"""A managed SGLang server (`engine.launch=true`): start it, wait until it serves, stop it.

The server runs as `<launch_command> --model-path M --host H --port P <server_args>` in its own
process group (so Ctrl-C in the terminal reaches pdr, which then stops the server in order, and so
the whole tree — SGLang's scheduler and detokenizer subprocesses — is stopped together). Its
stdout and stderr go to a log file; if the process exits before it is ready, `ServerLaunchError`
carries the last lines of that log.

Use it as an async context manager, or `await start()` / `stop()`:

    async with ManagedServer(model="Qwen/Qwen3-8B", server_args={"reasoning_parser": "qwen3"},
                             log_path=run_dir / "sglang_server.log") as server:
        ...  # server.url

`stop()` sends SIGTERM to the process group, waits `stop_grace_s`, then SIGKILLs it; it is
idempotent and is also registered with `atexit` as a safety net.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

from pdr.engines.http import HttpClient
from pdr.engines.retry import poll_until
from pdr.errors import EngineUnavailable, ServerLaunchError

logger = logging.getLogger(__name__)

DEFAULT_LAUNCH_COMMAND: tuple[str, ...] = (sys.executable, "-m", "sglang.launch_server")
LOG_TAIL_LINES = 40


def server_args_to_argv(server_args: Mapping[str, Any]) -> list[str]:
    """`{"reasoning_parser": "qwen3", "enable_metrics": True, "mem_fraction_static": 0.8}` →
    `["--reasoning-parser", "qwen3", "--enable-metrics", "--mem-fraction-static", "0.8"]`.

    Underscores become dashes; True is a bare flag, False/None are omitted; lists become several
    values; dicts are passed as one JSON string (e.g. --default-chat-template-kwargs). Order is
    the mapping's order.
    """
    argv: list[str] = []
    for key, value in server_args.items():
        flag = "--" + str(key).lstrip("-").replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, Mapping):
            argv += [flag, json.dumps(dict(value))]
        else:
            argv += [flag, str(value)]
    return argv


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a text file ('' if it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except FileNotFoundError:
        return ""


def _redact_argv(argv: Sequence[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a in ("--api-key", "--admin-api-key"):
            out[i + 1] = "***"
    return out


class ManagedServer:
    """One SGLang server process owned by pdr.

    `url` is the base URL clients use (`http://127.0.0.1:<port>` when binding to 0.0.0.0).
    The port comes from `url` when it names one, else a free port is chosen.
    """

    def __init__(
        self,
        *,
        model: str,
        log_path: Path,
        url: str = "http://127.0.0.1:30000",
        server_args: Mapping[str, Any] | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        api_key: str | None = None,
        startup_timeout_s: float = 1800.0,
        stop_grace_s: float = 30.0,
        poll_interval_s: float = 0.5,
    ):
        self.model = model
        self.log_path = Path(log_path)
        # Normalised to underscores (`reasoning-parser` and `reasoning_parser` are the same flag).
        self.server_args = {str(k).lstrip("-").replace("-", "_"): v for k, v in (server_args or {}).items()}
        self.command = list(command) if command else list(DEFAULT_LAUNCH_COMMAND)
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.poll_interval_s = poll_interval_s
        self._api_key = api_key
        parts = urlsplit(url)
        self.scheme = parts.scheme or "http"
        self.bind_host = str(self.server_args.pop("host", None) or parts.hostname or "127.0.0.1")
        self.port: int | None = parts.port
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.argv: list[str] = []
        self.returncode: int | None = None  # the process's exit code once stopped
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.bind_host in ("0.0.0.0", "::", "") else self.bind_host

    def build_argv(self) -> list[str]:
        """The full command line (the API key, if any, passed as --api-key)."""
        argv = [*self.command, "--model-path", self.model, "--host", self.bind_host, "--port", str(self.port)]
        argv += server_args_to_argv(self.server_args)
        if self._api_key:
            argv += ["--api-key", self._api_key]
        return argv

    async def start(self) -> str:
        """Launch the process and wait until GET /health_generate answers 200; return `url`.

        Raises ServerLaunchError (with the log's tail) if the port is taken, the process exits
        early, or it is not ready within `startup_timeout_s`; the process is stopped first.
        """
        if self.proc is not None:
            raise ServerLaunchError("ManagedServer.start() called twice")
        if self.port is None:
            self.port = find_free_port(self.client_host)
        elif not port_is_free(self.client_host, self.port):
            raise ServerLaunchError(
                f"cannot launch the server: port {self.port} on {self.client_host} is already in use (another "
                "server?). Use engine.launch=false to talk to it, or give a free port in engine.url "
                "(or a URL without a port to pick one)"
            )
        self.url = f"{self.scheme}://{self.client_host}:{self.port}"
        self.argv = self.build_argv()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        shown = " ".join(_redact_argv(self.argv))
        logger.info("launching SGLang: %s (log: %s)", shown, self.log_path)
        log = open(self.log_path, "ab")  # closed by the pump thread
        log.write(f"# pdr launch: {shown}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # own process group: stopped as a whole, not hit by Ctrl-C
            )
        except OSError as e:
            log.close()
            raise ServerLaunchError(
                f"cannot start {self.argv[0]!r}: {e} (check engine.launch_command)"
            ) from e
        # SGLang prints its ServerArgs, --api-key included, at start-up: copy the output to the
        # log through a filter instead of letting the process write the file directly.
        self._pump = threading.Thread(
            target=_pump_output, args=(self.proc.stdout, log, self._api_key), name="sglang-log", daemon=True
        )
        self._pump.start()
        atexit.register(self.stop)
        try:
            await self._wait_ready()
        except BaseException:
            self.stop()
            raise
        logger.info("SGLang server ready at %s (pid %d)", self.url, self.proc.pid)
        return self.url

    async def _wait_ready(self) -> None:
        """Poll /health_generate (/health on servers without it) until 200, failing fast when
        the process exits. Health endpoints need no API key."""
        proc = self.proc
        if proc is None:
            raise ServerLaunchError("ManagedServer: not started")
        http = HttpClient(self.url, name="sglang-launch", timeout_s=10.0, max_retries=0, max_connections=2)
        await http.start()

        async def probe() -> bool | None:
            code = proc.poll()
            if code is not None:
                if self._pump is not None:
                    self._pump.join(timeout=5)  # the last lines are the interesting ones
                raise ServerLaunchError(
                    f"the SGLang server exited with code {code} before it was ready. "
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                status = await http.get_status("/health_generate", timeout_s=10.0)
                if status == 404:  # very old servers: plain /health
                    status = await http.get_status("/health", timeout_s=10.0)
            except EngineUnavailable:
                return None  # the port opens only after the weights are loaded
            return True if status == 200 else None

        def progress() -> None:
            last = log_tail(self.log_path, 1).strip()
            logger.info("waiting for the SGLang server at %s ... (%s)", self.url, last[-200:])

        try:
            await poll_until(
                probe,
                timeout_s=self.startup_timeout_s,
                first_s=self.poll_interval_s,
                max_s=2.0,
                factor=1.25,
                on_timeout=lambda: ServerLaunchError(
                    f"the SGLang server was not ready after engine.startup_timeout_s={self.startup_timeout_s:g} s. "
                    f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                ),
                progress=progress,
            )
        finally:
            await http.close()

    def stop(self) -> None:
        """Stop the server's whole process group: SIGTERM, wait `stop_grace_s`, SIGKILL.

        Synchronous on purpose: it runs from `finally` blocks while a Ctrl-C is cancelling tasks,
        and from atexit. Idempotent.
        """
        proc = self.proc
        if proc is None:
            return
        atexit.unregister(self.stop)
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if proc.poll() is None:
            logger.info("stopping the SGLang server (pid %d)", proc.pid)
            _killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "SGLang server did not exit %g s after SIGTERM; sending SIGKILL", self.stop_grace_s
                )
        # Kill whatever is left of the group (children that outlived the leader, or the leader).
        _killpg(pgid, signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable process (D state)
            logger.error("SGLang server pid %d did not die after SIGKILL", proc.pid)
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None
        self.proc = None
        self.returncode = proc.returncode

    async def __aenter__(self) -> ManagedServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _pump_output(stream: IO[bytes] | None, log: IO[bytes], secret: str | None) -> None:
    """Copy the server's output to the log file line by line, masking `secret`; closes both."""
    if stream is None:
        log.close()
        return
    token = secret.encode() if secret else None
    try:
        for line in iter(stream.readline, b""):
            log.write(line.replace(token, b"***") if token else line)
            log.flush()
    except (OSError, ValueError):  # the file or the pipe went away during shutdown
        pass
    finally:
        stream.close()
        log.close()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
