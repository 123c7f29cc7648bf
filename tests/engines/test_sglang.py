"""SGLangEngine against the fake SGLang HTTP server (real HTTP on a real port).

Async code runs through `asyncio.run` inside plain tests (no pytest-asyncio).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from pdr.config.engines import SGLangEngineConfig
from pdr.engines.base import Completion, GenRequest, Message, RequestTag, SamplingParams, split_thinking
from pdr.engines.http import HttpClient
from pdr.engines.sglang import NATIVE_SAMPLING_KEYS, SGLangEngine, parse_native_response
from pdr.errors import (
    AuthError,
    ConfigError,
    ContextLengthError,
    EngineRequestError,
    EngineUnavailable,
)
from tests.fakes import FakeSGLangServer, run_with_engine

T = TypeVar("T")


def make_cfg(url: str, **kw: Any) -> SGLangEngineConfig:
    """Test defaults: short timeouts and tiny backoffs so retries cost milliseconds."""
    base: dict[str, Any] = dict(
        url=url,
        timeout_s=5.0,
        ready_timeout_s=5.0,
        retry_backoff_s=0.01,
        retry_backoff_max_s=0.05,
        max_retries=3,
    )
    base.update(kw)
    return SGLangEngineConfig(**base)


def with_engine(cfg: SGLangEngineConfig, fn: Callable[[SGLangEngine], Awaitable[T]]) -> T:
    return run_with_engine(SGLangEngine(cfg), fn)


def request(content: str, n: int = 1, max_tokens: int = 1000, **sampling: Any) -> GenRequest:
    return GenRequest(
        (Message("system", "You are a careful solver."), Message("user", content)),
        SamplingParams(max_tokens=max_tokens, **sampling),
        n=n,
        seed=100,
        tag=RequestTag("p1", sample=0, step=0, kind="draft"),
    )


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeSGLangServer]:
    with FakeSGLangServer() as srv:
        yield srv


@pytest.fixture
def fake(shared_server: FakeSGLangServer) -> FakeSGLangServer:
    """The module's fake server with faults, counters and latency reset for each test."""
    shared_server.clear_faults()
    shared_server.reset_stats()
    shared_server.set_latency(0, 0, 0)
    return shared_server


# ---------------------------------------------------------------------------------- request shape


def test_native_request_shape_sends_max_new_tokens_and_only_known_keys(fake: FakeSGLangServer) -> None:
    req = request("shape: what is 1+1?", max_tokens=777, top_k=20, stop=("\n\nUser:",))
    with_engine(make_cfg(fake.url), lambda e: e.generate(req))
    body = fake.last_body("/generate")
    sp = body["sampling_params"]
    assert sp["max_new_tokens"] == 777
    assert set(sp) <= NATIVE_SAMPLING_KEYS
    assert sp == {"max_new_tokens": 777, "temperature": 1.0, "top_p": 1.0, "top_k": 20, "stop": ["\n\nUser:"]}
    assert "seed" not in sp and "sampling_seed" not in sp  # not configured
    assert body["text"] == (
        "<|im_start|>system\nYou are a careful solver.<|im_end|>\n"
        "<|im_start|>user\nshape: what is 1+1?<|im_end|>\n<|im_start|>assistant\n"
    )
    # The rid starts with the engine's prefix: /abort_request can reach all its requests at once.
    assert re.match(r"pdr[0-9a-f]{8}-p1-s0-t0-draft-b0-", body["rid"])


def test_fake_default_of_128_tokens_is_the_trap_the_client_avoids(fake: FakeSGLangServer) -> None:
    """Sanity of the fake: without max_new_tokens the server stops at 128 tokens."""
    fake.think_words = (300, 300)
    try:
        req = urllib.request.Request(
            f"{fake.url}/generate",
            data=json.dumps({"text": "trap prompt"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = json.loads(resp.read())
        assert raw["meta_info"]["finish_reason"] == {"type": "length", "length": 128}
        out = with_engine(make_cfg(fake.url), lambda e: e.generate(request("trap prompt", max_tokens=4000)))
        assert out[0].finish_reason == "stop" and out[0].completion_tokens > 300
    finally:
        fake.think_words = (20, 60)


def test_send_seed_uses_sampling_seed_per_branch() -> None:
    with FakeSGLangServer(deterministic_inference=True) as srv:
        cfg = make_cfg(srv.url, send_seed=True, fork="fanout")
        out = with_engine(cfg, lambda e: e.generate(request("seeded", n=3)))
        assert len(out) == 3
        bodies = srv.bodies("/generate")
        assert sorted(b["sampling_params"]["sampling_seed"] for b in bodies) == [100, 101, 102]
        assert all("seed" not in b["sampling_params"] and "n" not in b["sampling_params"] for b in bodies)


def test_send_seed_needs_fanout_and_a_deterministic_server(fake: FakeSGLangServer) -> None:
    with pytest.raises(ConfigError, match="engine.fork=fanout"):
        make_cfg(fake.url, send_seed=True)
    with pytest.raises(ConfigError, match="enable-deterministic-inference"):
        with_engine(make_cfg(fake.url, send_seed=True, fork="fanout"), lambda e: asyncio.sleep(0))


# ---------------------------------------------------------------------------------- fork / join


def test_fork_n_is_one_request_and_keeps_sample_order(fake: FakeSGLangServer) -> None:
    req = request("fork order: compute 7*6", n=8)
    out = with_engine(make_cfg(fake.url), lambda e: e.generate(req))
    assert fake.count("/generate") == 1
    assert fake.last_body("/generate")["sampling_params"]["n"] == 8
    assert len(out) == 8
    prompt = fake.last_body("/generate")["text"]
    expected = [split_thinking(fake.generate_sample(prompt, i, 1000).text) for i in range(8)]
    assert [(c.reasoning, c.text) for c in out] == expected
    assert len({c.text + (c.reasoning or "") for c in out}) == 8  # distinct samples


def test_fanout_sends_n_concurrent_single_requests(fake: FakeSGLangServer) -> None:
    fake.set_latency(base_ms=200)
    req = request("fanout: compute 3*3", n=4)

    async def go(e: SGLangEngine) -> tuple[list[Completion], float, int]:
        t0 = time.monotonic()
        out = await e.generate(req)
        return out, time.monotonic() - t0, e.calls

    out, wall, calls = with_engine(make_cfg(fake.url, fork="fanout"), go)
    assert fake.count("/generate") == 4 and calls == 4
    assert all("n" not in b["sampling_params"] for b in fake.bodies("/generate"))
    assert len(out) == 4 and len({c.text + (c.reasoning or "") for c in out}) == 4
    assert wall < 0.7  # concurrent, not 4 x 200 ms
    assert fake.max_in_flight >= 2


# ---------------------------------------------------------------------------------- usage


def test_usage_accounting_native(fake: FakeSGLangServer) -> None:
    out = with_engine(make_cfg(fake.url), lambda e: e.generate(request("usage: sum of 1..10", n=4)))
    prompt = fake.last_body("/generate")["text"]
    plen = len(prompt.split())
    for i, c in enumerate(out):
        sample = fake.generate_sample(prompt, i, 1000)
        assert c.prompt_tokens == plen
        assert c.cached_tokens == plen - 1  # n>1: the prompt was pre-filled once
        assert c.completion_tokens == sample.completion_tokens
        assert 0 < c.reasoning_tokens < c.completion_tokens
        assert c.finish_reason == "stop" and not c.truncated
        assert c.latency_s > 0 and c.meta["id"]


def test_finish_reason_length_means_truncated(fake: FakeSGLangServer) -> None:
    out = with_engine(make_cfg(fake.url), lambda e: e.generate(request("truncate me", max_tokens=5)))
    (c,) = out
    assert c.finish_reason == "length" and c.truncated
    assert c.completion_tokens == 5
    assert c.text == "" and c.reasoning  # cut inside the thinking: all of it is thinking


def test_thinking_separation_and_enable_thinking_false(fake: FakeSGLangServer) -> None:
    (c,) = with_engine(make_cfg(fake.url), lambda e: e.generate(request("think: 5!")))
    assert c.reasoning and "<think>" not in c.text and "</think>" not in c.text
    assert c.text.startswith("So the answer is \\boxed{")

    cfg = make_cfg(fake.url, chat_template_kwargs={"enable_thinking": False})
    (c,) = with_engine(cfg, lambda e: e.generate(request("no think: 5!")))
    assert fake.last_body("/generate")["text"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert c.reasoning is None and c.reasoning_tokens == 0
    assert c.text.startswith("So the answer is")


def test_parse_native_response_tolerates_missing_and_extra_keys() -> None:
    data = {
        "text": "<think>a b</think>\n\nanswer",
        "meta_info": {"id": "x", "finish_reason": {"type": "abort", "message": "Aborted"}, "new_key": 1},
    }
    (c,) = parse_native_response(data, 1, client_latency_s=0.25)
    assert (c.reasoning, c.text) == ("a b", "answer")
    assert c.finish_reason == "abort" and c.meta["abort_message"] == "Aborted"
    assert c.prompt_tokens == 0 and c.latency_s == 0.25
    with pytest.raises(EngineRequestError, match="n=2"):
        parse_native_response([data], 2, client_latency_s=0.0)
    with pytest.raises(EngineRequestError, match="malformed"):
        parse_native_response({"oops": 1}, 1, client_latency_s=0.0)


# ---------------------------------------------------------------------------------- retries


def test_retry_503_then_success(fake: FakeSGLangServer) -> None:
    fake.fail_next(2, status=503)
    out = with_engine(make_cfg(fake.url), lambda e: e.generate(request("retry 503")))
    assert len(out) == 1
    assert fake.count("/generate") == 3  # two 503s, one success: retried 2 times


@pytest.mark.parametrize("status", [408, 429, 502, 504])
def test_other_retryable_statuses(fake: FakeSGLangServer, status: int) -> None:
    fake.fail_next(1, status=status, body={"error": {"message": "busy"}})
    with_engine(make_cfg(fake.url), lambda e: e.generate(request(f"retry {status}")))
    assert fake.count("/generate") == 2


def test_retry_after_connection_reset(fake: FakeSGLangServer) -> None:
    fake.reset_next(1)
    out = with_engine(make_cfg(fake.url), lambda e: e.generate(request("reset")))
    assert len(out) == 1 and fake.count("/generate") == 2


def test_hang_times_out_then_retry_succeeds(fake: FakeSGLangServer) -> None:
    fake.hang_next(1, seconds=3.0)  # its rid stays in flight on the server: the retry needs a new one
    t0 = time.monotonic()
    out = with_engine(make_cfg(fake.url, timeout_s=0.5), lambda e: e.generate(request("hang")))
    assert len(out) == 1 and fake.count("/generate") == 2
    assert time.monotonic() - t0 < 2.5
    rids = [b["rid"] for b in fake.bodies("/generate")]
    assert rids[0] != rids[1]


def test_gives_up_after_max_retries(fake: FakeSGLangServer) -> None:
    fake.fail_next(10, status=503)
    with pytest.raises(EngineUnavailable, match="gave up after 3 attempts"):
        with_engine(make_cfg(fake.url, max_retries=2), lambda e: e.generate(request("give up")))
    assert fake.count("/generate") == 3


def test_unreachable_server_is_unavailable() -> None:
    from pdr.engines.launch import find_free_port

    cfg = make_cfg(f"http://127.0.0.1:{find_free_port()}", ready_timeout_s=0.3)
    with pytest.raises(EngineUnavailable, match="not ready"):
        with_engine(cfg, lambda e: asyncio.sleep(0))


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "body", "exc", "text"),
    [
        (400, {"error": {"message": "bad parameter range"}}, EngineRequestError, "bad parameter range"),
        (
            400,
            {"error": "unknown field `seed`, expected one of `max_new_tokens`"},
            EngineRequestError,
            "unknown field",
        ),
        (
            400,
            {"object": "error", "message": "text: bad", "type": "Bad Request", "param": None, "code": 400},
            EngineRequestError,
            "text: bad",
        ),
        (
            500,
            {"object": "error", "message": "scheduler crashed", "type": "500", "param": None, "code": 500},
            EngineRequestError,
            "scheduler crashed",
        ),
        (404, {"detail": "Not Found"}, EngineRequestError, "Not Found"),
        (401, {"error": "Unauthorized"}, AuthError, "Unauthorized"),
        (403, {"error": "Forbidden"}, AuthError, "Forbidden"),
    ],
)
def test_error_shapes_map_to_exceptions_without_retry(
    fake: FakeSGLangServer, status: int, body: dict[str, Any], exc: type[Exception], text: str
) -> None:
    fake.fail_next(1, status=status, body=body)
    with pytest.raises(exc, match=text) as info:
        with_engine(make_cfg(fake.url), lambda e: e.generate(request(f"error {status}")))
    assert type(info.value) is exc
    assert info.value.status == status  # type: ignore[attr-defined]
    assert fake.count("/generate") == 1  # no retry


def test_real_fake_error_bodies_through_the_client(fake: FakeSGLangServer) -> None:
    """The fake's own validation errors (all three shapes) reach the right exception."""

    async def main() -> list[Exception]:
        http = HttpClient(fake.url, name="t", timeout_s=5, max_retries=3, max_connections=4, backoff_s=0.01)
        await http.start()
        errors = []
        try:
            for body in (
                {"text": "x", "sampling_params": {"seed": 1}},
                {"text": 123},
                {"text": "x", "sampling_params": {"temperature": -1}},
                {"text": "x " * 40000},
            ):
                try:
                    await http.request_json("POST", "/generate", body)
                except EngineRequestError as e:
                    errors.append(e)
        finally:
            await http.close()
        return errors

    errors = asyncio.run(main())
    assert [type(e) for e in errors] == [
        EngineRequestError,
        EngineRequestError,
        EngineRequestError,
        ContextLengthError,
    ]
    assert "unknown field `seed`" in str(errors[0])
    assert "valid string" in str(errors[1])
    assert "temperature must be non-negative" in str(errors[2])
    assert "40000 tokens" in str(errors[3])
    assert fake.count("/generate") == 4


def test_context_length_error() -> None:
    with FakeSGLangServer(context_length=100) as srv:
        long = "word " * 150
        with pytest.raises(ContextLengthError, match="longer than the model's context length"):
            with_engine(make_cfg(srv.url), lambda e: e.generate(request(long, max_tokens=10)))
        assert srv.count("/generate") == 1
        # Prompt fits, prompt + max_tokens does not: also a ContextLengthError by default.
        with pytest.raises(ContextLengthError, match="on_context_overflow=truncate"):
            with_engine(make_cfg(srv.url), lambda e: e.generate(request("word " * 50, max_tokens=500)))


def test_context_overflow_truncate_retries_once_with_a_fitting_cap() -> None:
    with FakeSGLangServer(context_length=200) as srv:
        cfg = make_cfg(srv.url, on_context_overflow="truncate")
        out = with_engine(cfg, lambda e: e.generate(request("word " * 50, max_tokens=500)))
        first, second = srv.bodies("/generate")
        plen = len(second["text"].split())
        assert first["sampling_params"]["max_new_tokens"] == 500
        assert second["sampling_params"]["max_new_tokens"] == 200 - plen - 1
        assert out[0].meta["max_tokens_reduced_to"] == 200 - plen - 1
        # When the prompt alone is too long nothing fits: still an error, after one request.
        srv.reset_stats()
        with pytest.raises(ContextLengthError, match="no smaller max_tokens fits"):
            with_engine(cfg, lambda e: e.generate(request("word " * 300, max_tokens=500)))
        assert srv.count("/generate") == 1


# ---------------------------------------------------------------------------------- auth


SECRET = "sk-test-0123456789-very-secret"


def test_api_key_sent_and_never_leaked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PDR_TEST_KEY", SECRET)
    with FakeSGLangServer(api_key=SECRET) as srv:
        # A proxy echoing the credentials back in an error body must not leak them either.
        srv.fail_next(1, status=503, body={"error": {"message": f"overloaded (auth=Bearer {SECRET})"}})

        async def go(e: SGLangEngine) -> tuple[list[Completion], dict[str, Any], str]:
            return await e.generate(request("auth ok")), e.info(), e.identity()

        out, info, identity = with_engine(make_cfg(srv.url, api_key_env="PDR_TEST_KEY"), go)
        assert len(out) == 1
        assert srv.headers("/generate")[-1]["authorization"] == f"Bearer {SECRET}"
        assert SECRET not in repr(info) and SECRET not in identity  # /server_info does return the key
        assert SECRET not in caplog.text


def test_wrong_key_is_auth_error_without_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PDR_TEST_KEY", SECRET)
    with FakeSGLangServer(api_key="the-right-key") as srv:
        with pytest.raises(AuthError) as info:
            with_engine(make_cfg(srv.url, api_key_env="PDR_TEST_KEY"), lambda e: asyncio.sleep(0))
        assert "401" in str(info.value) and "PDR_TEST_KEY" in str(info.value)
        assert SECRET not in str(info.value) and SECRET not in caplog.text
        # Without any key configured: also an AuthError, hinting at engine.api_key_env.
        with pytest.raises(AuthError, match="engine.api_key_env"):
            with_engine(make_cfg(srv.url), lambda e: asyncio.sleep(0))


def test_missing_api_key_env_var_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, fake: FakeSGLangServer
) -> None:
    monkeypatch.delenv("PDR_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match="PDR_TEST_MISSING_KEY"):
        with_engine(make_cfg(fake.url, api_key_env="PDR_TEST_MISSING_KEY"), lambda e: asyncio.sleep(0))
    assert fake.count("/health_generate") == 0  # failed before any request


# ---------------------------------------------------------------------------------- readiness, info


def test_start_waits_for_health_generate() -> None:
    with FakeSGLangServer(starting=True) as srv:

        async def main() -> dict[str, Any]:
            engine = SGLangEngine(make_cfg(srv.url))
            task = asyncio.create_task(engine.start())
            await asyncio.sleep(0.6)
            assert not task.done()
            srv.set_starting(False)
            await task
            info = engine.info()
            await engine.close()
            return info

        info = asyncio.run(main())
        assert srv.count("/health_generate") >= 2
        assert info["readiness_endpoint"] == "/health_generate"


def test_start_times_out_while_starting() -> None:
    with FakeSGLangServer(starting=True) as srv:
        with pytest.raises(EngineUnavailable, match="not ready after 0.5 s"):
            with_engine(make_cfg(srv.url, ready_timeout_s=0.5), lambda e: asyncio.sleep(0))


def test_info_and_identity(fake: FakeSGLangServer) -> None:
    async def go(e: SGLangEngine) -> tuple[dict[str, Any], str]:
        return e.info(), e.identity()

    info, identity = with_engine(make_cfg(fake.url), go)
    assert info["version"] == "0.5.23"
    assert info["model"] == "fake/Qwen3-fake"
    assert info["context_length"] == 32768  # /server_info has null: taken from /v1/models
    assert info["dp_size"] == 1 and info["chat_template"] == "qwen3"
    assert identity == f"sglang|api=native|model=fake/Qwen3-fake|url={fake.url}|template=qwen3"
    _, chat_identity = with_engine(make_cfg(fake.url, api="chat"), go)
    assert chat_identity == f"sglang|api=chat|model=fake/Qwen3-fake|url={fake.url}"


def test_older_server_aliases_and_health_fallback() -> None:
    """0.5.3-like: only /get_model_info and /get_server_info, smaller meta_info; and a server
    whose /health_generate is missing falls back to /health."""
    with FakeSGLangServer(legacy=True, context_length=4096, model_path="Qwen/Qwen3-0.6B") as srv:
        srv.fail_next(1, status=404, route="/health_generate", body={"detail": "Not Found"})

        async def go(e: SGLangEngine) -> tuple[dict[str, Any], list[Completion]]:
            return e.info(), await e.generate(request("legacy", n=2))

        info, out = with_engine(make_cfg(srv.url), go)
        assert info["readiness_endpoint"] == "/health"
        assert info["model"] == "Qwen/Qwen3-0.6B" and info["context_length"] == 4096
        assert srv.count("/model_info") == 1 and srv.count("/get_model_info") == 1
        assert len(out) == 2 and all(c.reasoning_tokens == 0 and c.completion_tokens > 0 for c in out)


def test_unknown_model_family_needs_a_template() -> None:
    with FakeSGLangServer(model_path="acme/mystery-7b") as srv:
        with pytest.raises(ConfigError, match="engine.chat_template"):
            with_engine(make_cfg(srv.url), lambda e: asyncio.sleep(0))
        out = with_engine(make_cfg(srv.url, chat_template="chatml"), lambda e: e.generate(request("x")))
        assert len(out) == 1


# ---------------------------------------------------------------------------------- chat API


def test_chat_api_fork_usage_and_reasoning(fake: FakeSGLangServer) -> None:
    cfg = make_cfg(fake.url, api="chat", chat_template_kwargs={"enable_thinking": True})
    out = with_engine(cfg, lambda e: e.generate(request("chat fork", n=3, max_tokens=900)))
    assert fake.count("/v1/chat/completions") == 1
    body = fake.last_body("/v1/chat/completions")
    assert body["n"] == 3 and body["max_completion_tokens"] == 900
    assert body["separate_reasoning"] is True and body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["messages"][1] == {"role": "user", "content": "chat fork"}
    assert "max_tokens" not in body and "seed" not in body
    assert len(out) == 3
    for c in out:
        assert c.reasoning and c.text.startswith("So the answer is")
        assert c.prompt_tokens > 0 and c.cached_tokens == c.prompt_tokens - 1  # per-choice meta_info
        assert 0 < c.reasoning_tokens < c.completion_tokens


def test_chat_api_context_error_uses_openai_shape() -> None:
    with FakeSGLangServer(context_length=50) as srv:
        with pytest.raises(ContextLengthError):
            with_engine(make_cfg(srv.url, api="chat"), lambda e: e.generate(request("w " * 100)))


# ---------------------------------------------------------------------------------- scale


def test_hundreds_of_concurrent_requests_with_latency(fake: FakeSGLangServer) -> None:
    fake.set_latency(base_ms=100, per_token_ms=0.5)
    reqs = [request(f"concurrency {i}", n=2, max_tokens=200) for i in range(150)]

    async def go(e: SGLangEngine) -> tuple[list[list[Completion]], float]:
        t0 = time.monotonic()
        outs = await asyncio.gather(*(e.generate(r) for r in reqs))
        return outs, time.monotonic() - t0

    outs, wall = with_engine(make_cfg(fake.url, max_concurrency=400), go)
    assert all(len(o) == 2 for o in outs)
    assert fake.count("/generate") == 150
    assert fake.max_in_flight >= 100  # latency is asyncio.sleep in the fake, and the client pools are sharded
    assert wall < 5.0


# ---------------------------------------------------------------------------------- pure helpers


def test_chat_templates_render_exactly(tmp_path: Any) -> None:
    from pdr.engines.chat_templates import resolve_template

    msgs = [
        Message("system", "S"),
        Message("user", "U1"),
        Message("assistant", "<think>old reasoning</think>\n\nA1"),
        Message("user", "U2"),
    ]
    chatml = resolve_template("chatml", None, [])
    assert (
        chatml.render(msgs[:2])
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
    )
    qwen3 = resolve_template("qwen3", None, [])
    out = qwen3.render(msgs, enable_thinking=False)
    assert "old reasoning" not in out and "<|im_start|>assistant\nA1<|im_end|>" in out
    assert out.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    llama3 = resolve_template("llama3", None, [])
    out = llama3.render(msgs[:2])
    assert not out.startswith("<|begin_of_text|>")  # the server's tokenizer adds BOS
    assert out == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    path = tmp_path / "t.jinja"
    path.write_text(
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% if not enable_thinking %}(no think){% endif %}{% endif %}"
    )
    jinja = resolve_template(str(path), None, [])
    assert jinja.render(msgs[:2], enable_thinking=False) == "[system]S\n[user]U1\n[assistant](no think)"
    assert jinja.name.startswith("file:")


def test_template_resolution_rules() -> None:
    from pdr.engines.chat_templates import guess_template, resolve_template

    assert guess_template("Qwen/Qwen3-8B") == "qwen3"
    assert guess_template("Qwen/QwQ-32B") == "chatml"
    assert guess_template("meta-llama/Llama-3.1-8B-Instruct") == "llama3"
    assert guess_template("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") is None  # its own template
    assert resolve_template(None, None, [None, "Qwen/Qwen3-4B"]).name == "qwen3"
    with pytest.raises(ConfigError, match="neither a built-in template"):
        resolve_template("chatm", None, [])
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install transformers"):
            resolve_template(None, "Qwen/Qwen3-8B", [])


def test_context_message_parsing() -> None:
    from pdr.engines.context import is_context_error, parse_context_overflow

    m1 = "The input (40000 tokens) is longer than the model's context length (32768 tokens)."
    m2 = (
        "Requested token count exceeds the model's maximum context length of 32768 tokens. You requested a total "
        "of 34000 tokens: 30000 tokens from the input messages and 4000 tokens for the completion. Please reduce"
    )
    m3 = (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion."
    )
    assert all(is_context_error(m) for m in (m1, m2, m3))
    assert not is_context_error("temperature must be non-negative")
    o1, o2, o3 = (parse_context_overflow(m) for m in (m1, m2, m3))
    assert o1 is not None and o1.fitting_max_tokens() < 0  # nothing fits
    assert o2 is not None and (o2.input_tokens, o2.context_length, o2.completion) == (30000, 32768, 4000)
    assert o2.fitting_max_tokens() == 2767
    assert o3 is not None and (o3.input_tokens, o3.context_length) == (4000, 4096)
    assert parse_context_overflow("context length exceeded") is None


def test_error_message_shapes_and_split() -> None:
    from pdr.engines.chat_api import largest_remainder_split
    from pdr.engines.http import error_message

    assert error_message({"error": {"message": "a"}}) == "a"
    assert error_message({"error": "b"}) == "b"
    assert error_message({"object": "error", "message": "c", "code": 400}) == "c"
    assert error_message(None, "plain text body") == "plain text body"
    assert largest_remainder_split(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(largest_remainder_split(97, [5, 0, 13, 2])) == 97
    assert largest_remainder_split(5, [0, 0]) == [3, 2]
