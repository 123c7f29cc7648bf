"""OpenAIEngine against the fake server's OpenAI-compatible /v1 routes, and the chat parsing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from pdr.config.engines import OpenAIEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.chat_api import chat_body, parse_chat_response
from pdr.engines.openai import OpenAIEngine
from pdr.errors import AuthError, ConfigError, ContextLengthError, EngineRequestError, EngineUnavailable
from tests.fakes import FakeSGLangServer, run_with_engine

T = TypeVar("T")
KEY_ENV = "PDR_TEST_OPENAI_KEY"
SECRET = "sk-openai-test-secret-42"


def make_cfg(srv: FakeSGLangServer, **kw: Any) -> OpenAIEngineConfig:
    base: dict[str, Any] = dict(
        url=f"{srv.url}/v1",
        api_key_env=None,
        timeout_s=5.0,
        ready_timeout_s=3.0,
        retry_backoff_s=0.01,
        retry_backoff_max_s=0.05,
    )
    base.update(kw)
    return OpenAIEngineConfig(**base)


def with_engine(cfg: OpenAIEngineConfig, fn: Callable[[OpenAIEngine], Awaitable[T]]) -> T:
    return run_with_engine(OpenAIEngine(cfg), fn)


def request(content: str, n: int = 1, max_tokens: int = 800) -> GenRequest:
    return GenRequest(
        (Message("user", content),), SamplingParams(max_tokens=max_tokens, temperature=0.7), n=n, seed=5
    )


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeSGLangServer]:
    with FakeSGLangServer(model_path="Qwen/Qwen3-8B") as srv:
        yield srv


@pytest.fixture
def fake(shared_server: FakeSGLangServer) -> FakeSGLangServer:
    shared_server.clear_faults()
    shared_server.reset_stats()
    return shared_server


def test_fork_n_one_request_with_usage_and_reasoning(fake: FakeSGLangServer) -> None:
    async def go(e: OpenAIEngine) -> tuple[list[Any], str, dict[str, Any]]:
        return await e.generate(request("openai fork", n=4)), e.identity(), e.info()

    out, identity, info = with_engine(make_cfg(fake), go)
    assert fake.count("/v1/chat/completions") == 1
    body = fake.last_body("/v1/chat/completions")
    assert body["n"] == 4 and body["model"] == "Qwen/Qwen3-8B"  # "default" resolved from /v1/models
    # The cap goes as max_tokens, the field every server reads (max_tokens_field=auto).
    assert body["max_tokens"] == 800 and body["temperature"] == 0.7
    assert "separate_reasoning" not in body  # SGLang-only keys are not sent to generic servers
    assert len(out) == 4
    prompt_tokens = out[0].prompt_tokens
    assert prompt_tokens > 0 and all(c.prompt_tokens == prompt_tokens for c in out)  # usage counts it once
    assert all(c.reasoning and c.text.startswith("So the answer is") for c in out)
    assert all(c.meta["usage_split"] == "proportional" for c in out)
    assert identity == f"openai|model=Qwen/Qwen3-8B|url={fake.url}/v1"
    assert info["served_models"] == ["Qwen/Qwen3-8B"]


def test_fanout_mode(fake: FakeSGLangServer) -> None:
    out = with_engine(make_cfg(fake, fork="fanout"), lambda e: e.generate(request("openai fanout", n=3)))
    assert len(out) == 3 and fake.count("/v1/chat/completions") == 3
    assert all("n" not in b for b in fake.bodies("/v1/chat/completions"))


def test_completion_tokens_split_sums_to_usage() -> None:
    with FakeSGLangServer(enable_cache_report=True, cached_tokens_summed=True) as srv:
        out = with_engine(make_cfg(srv), lambda e: e.generate(request("split", n=3)))
        prompt = srv.bodies("/v1/chat/completions")[-1]["messages"][0]["content"]
        assert prompt == "split"
        total = sum(c.completion_tokens for c in out)
        # The fake's samples for this prompt, drawn the same way.
        from tests.fakes.fake_sglang import render_chatml

        rendered = render_chatml([{"role": "user", "content": "split"}])
        expected = sum(srv.generate_sample(rendered, i, 800).completion_tokens for i in range(3))
        assert total == expected
        plen = out[0].prompt_tokens
        # Summed cached tokens (3 x (plen-1)) exceed the prompt: divided back per choice.
        assert all(c.cached_tokens == plen - 1 for c in out)


def test_parse_chat_response_variants() -> None:
    data = {
        "id": "r1",
        "choices": [
            {"index": 1, "message": {"content": "B", "reasoning": "think b"}, "finish_reason": "length"},
            {
                "index": 0,
                "message": {"content": "<think>think a</think>\n\nA", "reasoning_content": None},
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}},
    }
    a, b = parse_chat_response(data, 2, client_latency_s=0.5, name="t")
    assert (a.reasoning, a.text, a.finish_reason) == ("think a", "A", "stop")  # split on </think> client-side
    assert (b.reasoning, b.text, b.finish_reason) == ("think b", "B", "length") and b.truncated
    assert a.completion_tokens + b.completion_tokens == 9
    assert a.prompt_tokens == b.prompt_tokens == 10 and a.cached_tokens == b.cached_tokens == 4
    with pytest.raises(EngineRequestError, match="n=3"):
        parse_chat_response(data, 3, client_latency_s=0.0, name="t")


def test_chat_body_options() -> None:
    req = GenRequest((Message("user", "x"),), SamplingParams(max_tokens=10, top_k=5, stop=("END",)), n=2)
    body = chat_body(req, model="m", max_tokens=10, max_tokens_field="max_tokens", seed=3, extra={"foo": 1})
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 10,
        "temperature": 1.0,
        "top_p": 1.0,
        "n": 2,
        "top_k": 5,
        "stop": ["END"],
        "seed": 3,
        "foo": 1,
    }


def test_extra_body_and_max_tokens_field(fake: FakeSGLangServer) -> None:
    cfg = make_cfg(fake, max_tokens_field="max_tokens", extra_body={"separate_reasoning": False})
    (c,) = with_engine(cfg, lambda e: e.generate(request("extra body")))
    body = fake.last_body("/v1/chat/completions")
    assert body["max_tokens"] == 800 and "max_completion_tokens" not in body
    assert body["separate_reasoning"] is False
    assert c.reasoning  # raw <think> in content, separated client-side


def test_a_thinking_cap_goes_to_the_providers_own_field(fake: FakeSGLangServer, caplog) -> None:
    """engine.thinking_budget_field: the provider enforces sampling.thinking_tokens (merged into
    engine.extra_body, which keeps its own keys); without it, pdr says the cap is not enforced."""
    cfg = make_cfg(fake, thinking_budget_field="google.thinking_config.thinking_budget",
                   extra_body={"google": {"thinking_config": {"include_thoughts": True}}, "x": 1})
    req = GenRequest((Message("user", "think"),), SamplingParams(max_tokens=900, thinking_tokens=700), seed=5)
    with_engine(cfg, lambda e: e.generate(req))
    body = fake.last_body("/v1/chat/completions")
    assert body["google"] == {"thinking_config": {"include_thoughts": True, "thinking_budget": 700}}
    assert body["x"] == 1 and cfg.extra_body["google"] == {"thinking_config": {"include_thoughts": True}}
    with pytest.raises(ConfigError, match="engine.thinking_budget_field='a..b'"):
        make_cfg(fake, thinking_budget_field="a..b")


def test_model_not_served_is_a_clear_error(fake: FakeSGLangServer) -> None:
    with pytest.raises(ConfigError, match="engine.model='nope' is not served"):
        with_engine(make_cfg(fake, model="nope"), lambda e: asyncio.sleep(0))
    # A 404 at request time (e.g. the model was unloaded) names engine.model too.
    fake.fail_next(
        1,
        status=404,
        route="/v1/chat/completions",
        body={"error": {"message": "The model `Qwen/Qwen3-8B` does not exist.", "code": "model_not_found"}},
    )
    with pytest.raises(EngineRequestError, match="engine.model='Qwen/Qwen3-8B' not found") as info:
        with_engine(make_cfg(fake), lambda e: e.generate(request("404")))
    assert info.value.status == 404 and fake.count("/v1/chat/completions") == 1


def test_model_not_found_from_a_strict_server() -> None:
    with FakeSGLangServer(strict_model_name=True) as srv:
        srv.fail_next(1, status=404, route="/v1/models", body={"detail": "Not Found"})  # no listing
        with pytest.raises(EngineRequestError, match="does not exist"):
            with_engine(make_cfg(srv, model="other"), lambda e: e.generate(request("x")))


def test_retries_and_no_retry_on_400(fake: FakeSGLangServer) -> None:
    fake.fail_next(2, status=503, route="/v1/chat/completions")
    with_engine(make_cfg(fake), lambda e: e.generate(request("retry")))
    assert fake.count("/v1/chat/completions") == 3
    fake.reset_stats()
    fake.fail_next(
        1, status=400, route="/v1/chat/completions", body={"object": "error", "message": "bad n", "code": 400}
    )
    with pytest.raises(EngineRequestError, match="bad n"):
        with_engine(make_cfg(fake), lambda e: e.generate(request("no retry")))
    assert fake.count("/v1/chat/completions") == 1
    fake.reset_stats()
    fake.fail_next(5, status=502, route="/v1/chat/completions")
    with pytest.raises(EngineUnavailable, match="gave up after 2 attempts"):
        with_engine(make_cfg(fake, max_retries=1), lambda e: e.generate(request("give up")))


def test_context_length_and_truncate() -> None:
    with FakeSGLangServer(context_length=120) as srv:
        with pytest.raises(ContextLengthError):
            with_engine(make_cfg(srv), lambda e: e.generate(request("w " * 60, max_tokens=500)))
        out = with_engine(
            make_cfg(srv, on_context_overflow="truncate"),
            lambda e: e.generate(request("w " * 60, max_tokens=500)),
        )
        reduced = srv.bodies("/v1/chat/completions")[-1]["max_tokens"]
        assert reduced < 500 and out[0].meta["max_tokens_reduced_to"] == reduced


def test_api_key(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeSGLangServer(api_key=SECRET) as srv:
        with pytest.raises(ConfigError, match=KEY_ENV):
            with_engine(make_cfg(srv, api_key_env=KEY_ENV), lambda e: asyncio.sleep(0))
        monkeypatch.setenv(KEY_ENV, "wrong-key")
        with pytest.raises(AuthError, match=KEY_ENV):
            with_engine(make_cfg(srv, api_key_env=KEY_ENV), lambda e: asyncio.sleep(0))
        monkeypatch.setenv(KEY_ENV, SECRET)
        info = with_engine(make_cfg(srv, api_key_env=KEY_ENV), lambda e: _generate_and_info(e))
        assert srv.headers("/v1/chat/completions")[-1]["authorization"] == f"Bearer {SECRET}"
        assert SECRET not in repr(info) and SECRET not in caplog.text


async def _generate_and_info(e: OpenAIEngine) -> dict[str, Any]:
    await e.generate(request("key"))
    return e.info()


def test_default_model_needs_a_single_listing() -> None:
    with FakeSGLangServer() as srv:
        srv.fail_next(1, status=200, route="/v1/models", body={"object": "list", "data": []})
        with pytest.raises(ConfigError, match="engine.model=default"):
            with_engine(make_cfg(srv), lambda e: asyncio.sleep(0))
