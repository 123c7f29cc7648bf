"""The stall watchdog (pdr.engines.liveness) on the fake: a server that hangs mid-request (the
socket accepts, nothing answers: what SIGSTOP does to a real one, played by `FreezableProxy`) is
detected within `engine.stall_timeout_s` and ridden out like downtime; a slow but healthy
generation is never cut. The real-server twins are in tests/real_server/test_llama_stall.py.

No stopwatch: `engine.timeout_s` is set far above anything these tests wait (HANG_GUARD_S), so a
client without the watchdog could only get through a hang by waiting it out, which the guards
turn into a failure; what happened is checked by counting (stalls, requests, probes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdr.config.engines import OpenAIEngineConfig, SGLangEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.openai import OpenAIEngine
from pdr.engines.sglang import SGLangEngine
from pdr.errors import ConfigError
from tests.conftest import compose_object
from tests.fakes import FakeSGLangServer, run_with_engine

# Far above any wait here, far below engine.timeout_s: a test that gets here has hung.
HANG_GUARD_S = 60.0
TIMEOUT_S = 300.0
# Test-scaled watchdog: probe every 0.1 s, a hang after 1 s of silence.
WATCH = dict(health_interval_s=0.1, stall_timeout_s=1.0)


class FreezableProxy:
    """A TCP proxy in front of `target_port` that can freeze like a SIGSTOPped server: while
    frozen, new connections are still accepted (as the kernel's backlog does) but nothing is
    read, forwarded or answered; `thaw()` resumes everything where it stopped (a client that
    left meanwhile is seen as a closed connection then, as by a resumed server)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._running = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FreezableProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self._running.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.loop.call_soon_threadsafe(self._running.clear)

    def thaw(self) -> None:
        self.loop.call_soon_threadsafe(self._running.set)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            await self._running.wait()
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                client_w.close()
                return
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio logs a connection handler that ends cancelled)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._running.wait()
                data = await reader.read(65536)
                await self._running.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


@contextlib.contextmanager
def frozen_server(**fake: Any) -> Iterator[tuple[FakeSGLangServer, FreezableProxy]]:
    with FakeSGLangServer(**fake) as srv:
        proxy = FreezableProxy(srv.port).start()
        try:
            yield srv, proxy
        finally:
            proxy.thaw()
            proxy.stop()


def sglang_cfg(url: str, **kw: Any) -> SGLangEngineConfig:
    base: dict[str, Any] = dict(
        url=url, timeout_s=TIMEOUT_S, ready_timeout_s=10.0, retry_backoff_s=0.01, retry_backoff_max_s=0.05,
        max_downtime_s=HANG_GUARD_S, **WATCH,
    )  # fmt: skip
    base.update(kw)
    return SGLangEngineConfig(**base)


def openai_cfg(url: str, **kw: Any) -> OpenAIEngineConfig:
    base: dict[str, Any] = dict(
        url=f"{url}/v1", api_key_env=None, timeout_s=TIMEOUT_S, ready_timeout_s=10.0,
        retry_backoff_s=0.01, retry_backoff_max_s=0.05, max_downtime_s=HANG_GUARD_S, **WATCH,
    )  # fmt: skip
    base.update(kw)
    return OpenAIEngineConfig(**base)


def request(content: str, max_tokens: int = 64) -> GenRequest:
    return GenRequest((Message("user", content),), SamplingParams(max_tokens=max_tokens), seed=1)


async def until(cond: Any, what: str) -> None:
    """Wait (on the engine's loop) until cond() holds; fail after HANG_GUARD_S."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {HANG_GUARD_S} s")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- a hang, ridden out


def test_a_hung_server_is_detected_and_the_cut_requests_are_sent_again() -> None:
    with frozen_server(latency_base_ms=300) as (srv, proxy):

        async def go(e: SGLangEngine) -> tuple[list[Any], dict[str, Any]]:
            tasks = [asyncio.ensure_future(e.generate(request(f"hang {i}"))) for i in range(4)]
            await until(lambda: srv.count("/generate") == 4, "requests on the server")
            proxy.freeze()  # the 4 requests are in flight: their answers never come
            await until(lambda: e.info()["stalls"] == 1, "stall detected")
            await until(lambda: e._require_http().server_down, "waiting for the server")
            assert not any(t.done() for t in tasks)  # cut, then waiting for the server
            proxy.thaw()
            return await asyncio.gather(*tasks), e.info()

        outs, info = run_with_engine(SGLangEngine(sglang_cfg(proxy.url)), go)
    assert [len(o) for o in outs] == [1, 1, 1, 1]
    assert info["stalls"] == 1 and info["stall_watch"] == "/health" and info["downtime_s"] > 0
    assert info["retries"] == 4  # each cut request sent once more
    # Sent again after the thaw, each under a fresh rid; the cut ones aborted on the server first.
    bodies = srv.bodies("/generate")
    assert len(bodies) == 8 and len({b["rid"] for b in bodies}) == 8
    assert {a["rid"] for a in srv.aborted} >= {b["rid"] for b in bodies[:4]}


def test_a_hang_on_an_openai_compatible_server_is_ridden_out_too() -> None:
    with frozen_server(latency_base_ms=300) as (srv, proxy):

        async def go(e: OpenAIEngine) -> tuple[list[Any], dict[str, Any]]:
            task = asyncio.ensure_future(e.generate(request("hang")))
            await until(lambda: srv.count("/v1/chat/completions") == 1, "the request on the server")
            proxy.freeze()
            await until(lambda: e.info()["stalls"] == 1, "stall detected")
            proxy.thaw()
            return await task, e.info()

        out, info = run_with_engine(OpenAIEngine(openai_cfg(proxy.url)), go)
    assert len(out) == 1 and info["stalls"] == 1 and info["stall_watch"].endswith(f"{proxy.port}/health")
    assert srv.count("/v1/chat/completions") == 2


# ---------------------------------------------------------------- healthy work is never cut


def test_a_slow_but_healthy_generation_is_not_cut() -> None:
    """The generation takes several stall_timeout_s; the server answers its probes meanwhile."""
    with FakeSGLangServer() as srv:
        srv.hang_next(1, seconds=4 * WATCH["stall_timeout_s"])

        async def go(e: SGLangEngine) -> tuple[list[Any], dict[str, Any]]:
            probes_before = srv.count("/health")
            out = await e.generate(request("slow"))
            return out, {**e.info(), "probes": srv.count("/health") - probes_before}

        out, info = run_with_engine(SGLangEngine(sglang_cfg(srv.url)), go)
    assert len(out) == 1 and info["stalls"] == 0
    # Never cut, never sent again, never aborted (but for the engine's id prefix at close).
    assert srv.count("/generate") == 1
    assert srv.bodies("/generate")[0]["rid"] not in {a["rid"] for a in srv.aborted}
    assert info["probes"] >= 5  # the watchdog was watching (every 0.1 s for 4 s)


def test_a_one_slot_server_whose_models_route_waits_for_the_generation_is_not_cut() -> None:
    """llama-cpp-python as it is: /v1/models waits behind the lock a generation holds, and there
    is no /health route (its event loop answers 404 at once). A watchdog probing /models, or
    counting only 200s, would cut this healthy generation."""
    with FakeSGLangServer(max_running_requests=1, chat_n=False, title="🦙 llama.cpp Python API") as srv:
        srv.app.router.routes = [r for r in srv.app.router.routes if getattr(r, "path", "") != "/health"]
        cfg = openai_cfg(srv.url)

        async def go(e: OpenAIEngine) -> tuple[list[Any], dict[str, Any]]:
            srv.hang_next(10_000, route="/v1/models", seconds=HANG_GUARD_S)
            srv.hang_next(1, route="/v1/chat/completions", seconds=4 * WATCH["stall_timeout_s"])
            probes_before = srv.count("/health")
            out = await e.generate(request("long"))
            return out, {**e.info(), "probes": srv.count("/health") - probes_before}

        out, info = run_with_engine(OpenAIEngine(cfg), go)
    assert len(out) == 1 and info["stalls"] == 0 and srv.count("/v1/chat/completions") == 1
    assert info["probes"] >= 5


def test_a_liveness_endpoint_that_fails_at_start_turns_the_watchdog_off(caplog) -> None:
    with FakeSGLangServer() as srv:
        srv.fail_next(10_000, status=500, route="/health")
        cfg = openai_cfg(srv.url)
        with caplog.at_level("WARNING"):
            info = run_with_engine(OpenAIEngine(cfg), lambda e: asyncio.sleep(0, e.info()))
    assert info["stall_watch"] is None
    assert "stall watchdog is off" in caplog.text


def test_stalls_spend_attempts_so_a_request_that_stalls_every_time_ends() -> None:
    """A server whose liveness endpoint waits for its generations (the wrong probe, or a server
    that hangs on this request each time): every attempt is cut and the server is "back" once the
    abandoned generation ends. Each stall costs an attempt, so this ends after max_retries."""
    from pdr.errors import EngineUnavailable

    with FakeSGLangServer() as srv:
        srv.app.router.routes = [r for r in srv.app.router.routes if getattr(r, "path", "") != "/health"]

        probes = [0]  # probes waiting (the fake's in_flight counts them too)

        @srv.app.get("/health")
        async def busy_health() -> dict[str, str]:
            probes[0] += 1
            try:
                while srv.in_flight > probes[0]:  # a generation is running
                    await asyncio.sleep(0.01)
            finally:
                probes[0] -= 1
            return {"status": "ok"}

        # Long enough that the first probe after the cut times out (2 s): the wait for the
        # server then lasts time, which alone would not spend an attempt.
        srv.hang_next(10, seconds=4 * WATCH["stall_timeout_s"])
        with pytest.raises(EngineUnavailable, match="gave up after 3 attempts"):
            run_with_engine(
                SGLangEngine(sglang_cfg(srv.url, max_retries=2)), lambda e: e.generate(request("again"))
            )
        assert srv.count("/generate") == 3


# ---------------------------------------------------------------- a hang that lasts


def test_a_server_that_stays_hung_fails_the_run_with_the_resume_hint(tmp_path: Path) -> None:
    """Stall, then max_downtime_s of waiting, then the requests fail and the run stops saying how
    to resume; resumed once the server answers again, it completes with no error rows."""
    from pdr.runner import RunFailed, run

    base = [
        "+experiment=quickstart",
        "progress=false",
        "tracking.enabled=false",
        "cache.mode=off",
        "samples=1",
    ]
    with frozen_server(latency_base_ms=20) as (srv, proxy):
        cfg = compose_object(base)
        # max_retries=0: without the watchdog, the one attempt would end only at timeout_s, as
        # a RequestTimeout (and not within the guard).
        engine = sglang_cfg(proxy.url, max_downtime_s=1.0, max_retries=0, timeout_s=HANG_GUARD_S)
        cfg.engine = engine

        def freeze_early() -> None:
            deadline = time.monotonic() + HANG_GUARD_S
            while srv.count("/generate") < 3 and time.monotonic() < deadline:
                time.sleep(0.005)
            proxy.freeze()

        threading.Thread(target=freeze_early, daemon=True).start()
        with pytest.raises(RunFailed) as err:
            run(cfg, tmp_path)
        msg = str(err.value)
        assert "resume=true" in msg and "EngineUnavailable" in msg
        assert "engine.max_downtime_s=1" in msg and "stall_timeout_s=1" in msg
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["status"] == "FAILED" and summary["engine_info"]["stalls"] >= 1

        proxy.thaw()
        cfg = compose_object([*base, "resume=true"])
        cfg.engine = engine  # the same configuration (the run key)
        result = run(cfg, tmp_path)
    assert len(result.rows) == 12 and not [r for r in result.rows if r["status"] == "error"]


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(health_interval_s=0), r"engine.health_interval_s=0: must be > 0 seconds \(or null"),
        (dict(stall_timeout_s=-1), r"engine.stall_timeout_s=-1: must be > 0"),
        (dict(health_interval_s=10, stall_timeout_s=15), r"stall_timeout_s >= 2 x health_interval_s"),
    ],
)
def test_watchdog_settings_are_checked(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SGLangEngineConfig(**kw)
    with pytest.raises(ConfigError, match=match):
        OpenAIEngineConfig(**kw)


def test_null_turns_the_watchdog_off() -> None:
    with FakeSGLangServer() as srv:
        info = run_with_engine(
            SGLangEngine(sglang_cfg(srv.url, stall_timeout_s=None)), lambda e: asyncio.sleep(0, e.info())
        )
    assert info["stall_watch"] is None and info["stalls"] == 0
