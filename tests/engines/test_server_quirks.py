"""Real servers as they are (issue 11), on the fake: a server that drops a cap field, ignores
`n`, runs one request at a time, restarts, is not SGLang, or is not there at all. Each test is
the fast twin of a check in tests/real_server/ against llama.cpp."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from pdr.config.engines import OpenAIEngineConfig, SGLangEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.context import overflow_hint, parse_context_overflow
from pdr.engines.launch import find_free_port
from pdr.engines.openai import OpenAIEngine
from pdr.engines.sglang import SGLangEngine
from pdr.errors import ConfigError, EngineRequestError, EngineUnavailable
from tests.fakes import FakeSGLangServer, run_with_engine

LLAMA_TITLE = "🦙 llama.cpp Python API"


def openai_cfg(url: str, **kw: Any) -> OpenAIEngineConfig:
    base: dict[str, Any] = dict(
        url=f"{url}/v1", api_key_env=None, timeout_s=5.0, ready_timeout_s=3.0,
        retry_backoff_s=0.01, retry_backoff_max_s=0.05,
    )  # fmt: skip
    base.update(kw)
    return OpenAIEngineConfig(**base)


def sglang_cfg(url: str, **kw: Any) -> SGLangEngineConfig:
    base: dict[str, Any] = dict(
        url=url, timeout_s=5.0, ready_timeout_s=3.0, retry_backoff_s=0.01, retry_backoff_max_s=0.05
    )
    base.update(kw)
    return SGLangEngineConfig(**base)


def request(content: str, n: int = 1, max_tokens: int = 800) -> GenRequest:
    return GenRequest((Message("user", content),), SamplingParams(max_tokens=max_tokens), n=n, seed=5)


def llama_like(**kw: Any) -> FakeSGLangServer:
    """The fake behaving like llama-cpp-python's server: max_tokens only, no n, one slot."""
    return FakeSGLangServer(
        chat_cap_fields=("max_tokens",), chat_n=False, max_running_requests=1, title=LLAMA_TITLE, **kw
    )


# ---------------------------------------------------------------- 1. the generation cap


def test_the_default_cap_field_is_one_llama_cpp_reads() -> None:
    with llama_like() as srv:
        out = run_with_engine(
            OpenAIEngine(openai_cfg(srv.url)), lambda e: e.generate(request("cap", max_tokens=8))
        )
        assert out[0].completion_tokens <= 8 and out[0].finish_reason == "length"
        assert srv.last_body("/v1/chat/completions")["max_tokens"] == 8


def test_an_ignored_cap_field_is_detected_and_switched(caplog: pytest.LogCaptureFixture) -> None:
    # The server reads only max_completion_tokens (as OpenAI's reasoning models require): auto
    # sends max_tokens first, sees a completion past the cap, and switches once.
    with FakeSGLangServer(chat_cap_fields=("max_completion_tokens",)) as srv:

        async def go(e: OpenAIEngine) -> list[Any]:
            return [await e.generate(request(f"cap {i}", max_tokens=8)) for i in range(3)]

        with caplog.at_level(logging.WARNING):
            outs = run_with_engine(OpenAIEngine(openai_cfg(srv.url)), go)
        assert all(o[0].completion_tokens <= 8 for o in outs)
        bodies = srv.bodies("/v1/chat/completions")
        assert len(bodies) == 4  # one discarded over-long answer, then three within the cap
        assert "max_completion_tokens" in bodies[-1] and "max_tokens" not in bodies[-1]
        assert sum("sending the cap as max_completion_tokens" in r.message for r in caplog.records) == 1


def test_a_cap_the_server_ignores_never_passes_unnoticed() -> None:
    with llama_like() as srv:
        cfg = openai_cfg(srv.url, max_tokens_field="max_completion_tokens")
        with pytest.raises(
            EngineRequestError, match="ignored the generation cap.*max_tokens_field=max_tokens"
        ):
            run_with_engine(OpenAIEngine(cfg), lambda e: e.generate(request("cap", max_tokens=8)))


# ---------------------------------------------------------------- 2. n


def test_a_server_that_ignores_n_falls_back_to_fanout_once(caplog: pytest.LogCaptureFixture) -> None:
    with llama_like() as srv:

        async def go(e: OpenAIEngine) -> list[list[Any]]:
            return [await e.generate(request("fork", n=3)), await e.generate(request("fork 2", n=2))]

        with caplog.at_level(logging.WARNING):
            first, second = run_with_engine(OpenAIEngine(openai_cfg(srv.url)), go)
        assert len(first) == 3 and len(second) == 2
        bodies = srv.bodies("/v1/chat/completions")
        # 1 probe with n=3 (its one choice kept) + 2 fanned out; then 2 plain n=1 requests.
        assert [b.get("n", 1) for b in bodies] == [3, 1, 1, 1, 1]
        assert sum("ignores n" in r.message for r in caplog.records) == 1


def test_max_n_splits_a_wide_fork() -> None:
    with FakeSGLangServer() as srv:
        out = run_with_engine(
            OpenAIEngine(openai_cfg(srv.url, max_n=4)), lambda e: e.generate(request("wide", n=10))
        )
        assert len(out) == 10
        assert sorted(b["n"] for b in srv.bodies("/v1/chat/completions")) == [2, 4, 4]


def test_max_n_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="engine.max_n=0"):
        openai_cfg("http://127.0.0.1:1", max_n=0)


# ---------------------------------------------------------------- 4. capacity


def test_capacity_of_a_one_slot_llama_cpp_python_server() -> None:
    with llama_like() as srv:

        async def go(e: OpenAIEngine) -> dict[str, Any]:
            await asyncio.gather(*(e.generate(request(f"slot {i}", max_tokens=8)) for i in range(4)))
            return e.info()

        info = run_with_engine(OpenAIEngine(openai_cfg(srv.url)), go)
        assert info["max_concurrency"] == 1 and info["server_kind"] == "llama-cpp-python server"
        assert srv.max_in_flight == 1


def test_capacity_from_llama_cpp_props_and_sglang_server_info() -> None:
    with FakeSGLangServer(total_slots=3) as srv:
        info = run_with_engine(OpenAIEngine(openai_cfg(srv.url)), lambda e: asyncio.sleep(0, e.info()))
        assert info["max_concurrency"] == 3
        # An explicit engine.max_concurrency wins.
        info = run_with_engine(
            OpenAIEngine(openai_cfg(srv.url, max_concurrency=7)), lambda e: asyncio.sleep(0, e.info())
        )
        assert info["max_concurrency"] == 7 and info["server_capacity"] == 3
    with FakeSGLangServer(max_running_requests=5) as srv:
        info = run_with_engine(SGLangEngine(sglang_cfg(srv.url)), lambda e: asyncio.sleep(0, e.info()))
        assert info["max_concurrency"] == 5 and info["max_running_requests"] == 5
    with FakeSGLangServer() as srv:  # says nothing: the default
        info = run_with_engine(OpenAIEngine(openai_cfg(srv.url)), lambda e: asyncio.sleep(0, e.info()))
        assert info["max_concurrency"] == 64 and info["server_capacity"] is None


# ---------------------------------------------------------------- 3. aborts


def test_sglang_aborts_a_timed_out_request_before_the_retry_and_its_own_at_close() -> None:
    with FakeSGLangServer() as srv:
        srv.hang_next(1, seconds=3.0)
        out = run_with_engine(
            SGLangEngine(sglang_cfg(srv.url, timeout_s=0.5)), lambda e: e.generate(request("hang"))
        )
        assert len(out) == 1
        timed_out_rid = srv.bodies("/generate")[0]["rid"]
        aborted = [b["rid"] for b in srv.aborted]
        assert timed_out_rid in aborted
        # At close: the engine's prefix, which matches every request id it sent.
        assert any(timed_out_rid.startswith(r) and r != timed_out_rid for r in aborted)


# ---------------------------------------------------------------- 5. downtime


def test_a_restart_is_ridden_out_by_time_not_attempts() -> None:
    port = find_free_port()
    srv = FakeSGLangServer(port=port, latency_base_ms=50).start()

    def restart() -> None:
        time.sleep(0.3)
        srv.stop()
        time.sleep(2.5)  # longer than 4 attempts of backoff would wait
        FakeSGLangServer(port=port).start()
        restarted.set()

    restarted = threading.Event()
    cfg = openai_cfg(f"http://127.0.0.1:{port}", max_retries=1, max_downtime_s=30)

    async def go(e: OpenAIEngine) -> list[Any]:
        threading.Thread(target=restart, daemon=True).start()
        outs = []
        for i in range(30):
            outs.append(await e.generate(request(f"restart {i}", max_tokens=8)))
            await asyncio.sleep(0.05)
        return outs

    outs = run_with_engine(OpenAIEngine(cfg), go)
    assert restarted.is_set() and len(outs) == 30


def test_downtime_longer_than_max_downtime_fails_with_the_key() -> None:
    port = find_free_port()
    srv = FakeSGLangServer(port=port).start()
    cfg = openai_cfg(f"http://127.0.0.1:{port}", max_downtime_s=1.0)

    async def go(e: OpenAIEngine) -> Any:
        srv.stop()
        return await e.generate(request("down"))

    t0 = time.monotonic()
    with pytest.raises(EngineUnavailable, match="engine.max_downtime_s=1"):
        run_with_engine(OpenAIEngine(cfg), go)
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------- 6. wrong or missing server


def test_sglang_against_an_openai_only_server_fails_in_seconds() -> None:
    with llama_like() as srv:
        srv.app.router.routes = [
            r for r in srv.app.router.routes if getattr(r, "path", "") not in ("/health", "/health_generate")
        ]
        t0 = time.monotonic()
        with pytest.raises(EngineRequestError, match="not an SGLang server.*engine=openai"):
            run_with_engine(SGLangEngine(sglang_cfg(srv.url, ready_timeout_s=60)), lambda e: asyncio.sleep(0))
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("engine", ["sglang", "openai"])
def test_nothing_listening_is_said_within_about_ten_seconds(engine: str) -> None:
    url = f"http://127.0.0.1:{find_free_port()}"
    eng = (
        SGLangEngine(sglang_cfg(url, ready_timeout_s=120))
        if engine == "sglang"
        else OpenAIEngine(openai_cfg(url, ready_timeout_s=120))
    )
    t0 = time.monotonic()
    with pytest.raises(EngineUnavailable, match="nothing listens"):
        run_with_engine(eng, lambda e: asyncio.sleep(0))
    assert time.monotonic() - t0 < 16


# ---------------------------------------------------------------- 7. messages


def test_llama_cpp_context_messages_are_parsed_and_hinted() -> None:
    none_msg = (
        "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens "
        "(2100 in the messages, None in the completion). Please reduce the length of the messages or completion."
    )
    o = parse_context_overflow(none_msg)
    assert o is not None and (o.input_tokens, o.context_length, o.completion) == (2100, 2048, None)
    assert "cannot help" in overflow_hint(none_msg) and "lower sampling.max_tokens" not in overflow_hint(
        none_msg
    )
    fits = (
        "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens "
        "(1000 in the messages, 1100 in the completion)."
    )
    assert "lower sampling.max_tokens" in overflow_hint(fits)
    prompt_route = (
        "This model's maximum context length is 2048 tokens, however you requested 2300 tokens "
        "(2300 in your prompt; None for the completion). Please reduce the length of your prompt or completion."
    )
    o = parse_context_overflow(prompt_route)
    assert o is not None and o.prompt_too_long
