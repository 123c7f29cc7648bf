"""engine.return_logprobs: token ids and logprobs in Completion.meta, from SGLang's native
/generate, the OpenAI chat route (SGLang's and vLLM's shapes), and a server that sends none.
Off by default: the request bodies and call-cache keys of existing configurations are unchanged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from pdr.config.engines import OpenAIEngineConfig, SGLangEngineConfig
from pdr.engines import chat_api
from pdr.engines.base import GenRequest, Message, RequestTag, SamplingParams
from pdr.engines.openai import OpenAIEngine
from pdr.engines.sglang import SGLangEngine
from tests.fakes import FakeSGLangServer, run_with_engine

FAST = dict(timeout_s=5.0, ready_timeout_s=5.0, retry_backoff_s=0.01, retry_backoff_max_s=0.05)


def request(n: int = 2) -> GenRequest:
    return GenRequest(
        (Message("user", "What is 1+1?"),),
        SamplingParams(max_tokens=500, temperature=0.7),
        n=n,
        seed=3,
        tag=RequestTag("p1", 0, 0, "draft"),
    )


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSGLangServer]:
    with FakeSGLangServer(model_path="Qwen/Qwen3-8B") as srv:
        yield srv


@pytest.fixture
def fake(server: FakeSGLangServer) -> FakeSGLangServer:
    server.clear_faults()
    server.reset_stats()
    server.logprobs = True
    chat_api._warned_no_logprobs.clear()
    return server


def sglang(fake: FakeSGLangServer, **kw: Any) -> SGLangEngine:
    return SGLangEngine(SGLangEngineConfig(url=fake.url, chat_template="chatml", **FAST, **kw))


def openai(fake: FakeSGLangServer, **kw: Any) -> OpenAIEngine:
    return OpenAIEngine(OpenAIEngineConfig(url=f"{fake.url}/v1", api_key_env=None, **FAST, **kw))


def generate(engine: Any, n: int = 2) -> tuple[list[Any], str]:
    async def go(e: Any) -> tuple[list[Any], str]:
        return await e.generate(request(n)), e.identity()

    return run_with_engine(engine, go)


def _check(out: list[Any], with_ids: bool = True) -> None:
    # One logprob per generated token: the words of the whole generation (thinking included) + EOS.
    # (Without per-choice meta_info the per-choice counts are a proportional split: compare sums.)
    assert sum(len(c.meta["logprobs"]) for c in out) == sum(c.completion_tokens for c in out)
    for c in out:
        lps = c.meta["logprobs"]
        assert isinstance(lps, list) and lps and all(isinstance(x, float) and -1.0 < x <= 0.0 for x in lps)
        if "usage_split" not in c.meta:
            assert len(lps) == c.completion_tokens
        if with_ids:
            ids = c.meta["token_ids"]
            assert len(ids) == len(lps) and all(isinstance(t, int) for t in ids)
            assert ids[-1] == 151645  # the EOS of a natural stop
        else:
            assert c.meta["token_ids"] is None


def test_native_generate_returns_ids_and_logprobs(fake):
    out, identity = generate(sglang(fake, return_logprobs=True))
    body = fake.last_body("/generate")
    assert body["return_logprob"] is True and "return_logprob" not in body["sampling_params"]
    _check(out)
    assert out[0].meta["token_ids"] != out[1].meta["token_ids"]  # per sample, in sample order
    assert identity.endswith("|logprobs")


@pytest.mark.parametrize("engine", ["sglang-chat", "openai"])
def test_chat_route_returns_logprobs(fake, engine):
    e = (
        sglang(fake, api="chat", return_logprobs=True)
        if engine == "sglang-chat"
        else openai(fake, return_logprobs=True)
    )
    out, identity = generate(e)
    body = fake.last_body("/v1/chat/completions")
    assert body["logprobs"] is True and body["top_logprobs"] == 0
    _check(out, with_ids=False)  # OpenAI's shape has token strings, no ids
    assert identity.endswith("|logprobs")


@pytest.mark.parametrize("extra", [{"return_tokens_as_token_ids": True}, {"return_token_ids": True}])
def test_vllm_token_id_shapes(fake, extra):
    out, _ = generate(openai(fake, return_logprobs=True, extra_body=extra))
    _check(out, with_ids=True)
    if "return_token_ids" in extra:
        assert all(isinstance(c.meta["prompt_token_ids"], list) for c in out)


def test_off_by_default_bodies_and_cache_keys_unchanged(fake):
    out, identity = generate(sglang(fake))
    assert "return_logprob" not in fake.last_body("/generate")
    assert "token_ids" not in out[0].meta and "logprobs" not in out[0].meta
    assert not identity.endswith("logprobs")
    out, identity = generate(openai(fake))
    assert "logprobs" not in fake.last_body("/v1/chat/completions")
    assert identity == f"openai|model=Qwen/Qwen3-8B|url={fake.url}/v1"
    req = request()
    assert req.cache_key(identity) != req.cache_key(identity + "|logprobs")


def test_a_server_without_logprobs_gives_none_and_one_warning(fake, caplog):
    fake.logprobs = False
    with caplog.at_level(logging.WARNING):
        out, _ = generate(openai(fake, return_logprobs=True), n=3)
        out2, _ = generate(openai(fake, return_logprobs=True), n=1)
        native, _ = generate(sglang(fake, return_logprobs=True), n=2)
    for c in out + out2:
        assert c.meta["logprobs"] is None and c.meta["token_ids"] is None
    for c in native:  # /generate still has `output_ids`: the ids are real, the logprobs absent
        assert c.meta["logprobs"] is None and c.meta["token_ids"][-1] == 151645
    warnings = [r.getMessage() for r in caplog.records if "returned no logprobs" in r.getMessage()]
    assert len(warnings) == 2 and warnings[0].startswith("openai:") and warnings[1].startswith("sglang:")


def test_parse_never_fakes_partial_data():
    ids, lps = chat_api.completion_logprobs({"logprobs": {"content": [{"token": "a", "logprob": "x"}]}}, "t")
    assert ids is None and lps is None
    ids, lps = chat_api.completion_logprobs(
        {"meta_info": {"output_token_logprobs": [[-0.5, 7, None], [-0.25, 9, "b"]]}}, "t"
    )
    assert ids == [7, 9] and lps == [-0.5, -0.25]
