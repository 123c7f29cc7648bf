"""Against a real SGLang server (GPU). Skipped unless PDR_TEST_SGLANG_URL is set:

    PDR_TEST_SGLANG_URL=http://127.0.0.1:30000 pytest -m gpu tests/engines/test_gpu_real_server.py

Optional: PDR_TEST_SGLANG_API_KEY_ENV (the NAME of the env var holding the server's key),
PDR_TEST_SGLANG_TEMPLATE (native chat template when the model family is not guessed).
Small generation caps keep it to a few seconds on an 8B model.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import pytest

from pdr.config.engines import OpenAIEngineConfig, SGLangEngineConfig
from pdr.engines.base import Completion, GenRequest, Message, SamplingParams
from pdr.engines.openai import OpenAIEngine
from pdr.engines.sglang import SGLangEngine
from pdr.errors import ContextLengthError
from tests.fakes import run_with_engine

URL = os.environ.get("PDR_TEST_SGLANG_URL")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not URL, reason="set PDR_TEST_SGLANG_URL=http://HOST:PORT to run against a real server"
    ),
]
T = TypeVar("T")
E = TypeVar("E", SGLangEngine, OpenAIEngine)


def sglang_cfg(**kw: Any) -> SGLangEngineConfig:
    return SGLangEngineConfig(
        url=URL or "http://127.0.0.1:30000",
        api_key_env=os.environ.get("PDR_TEST_SGLANG_API_KEY_ENV") or None,
        chat_template=os.environ.get("PDR_TEST_SGLANG_TEMPLATE") or None,
        timeout_s=300,
        ready_timeout_s=30,
        **kw,
    )


run = run_with_engine


QUESTION = GenRequest(
    (Message("user", "What is 17 + 25? Put the final answer in \\boxed{}."),),
    SamplingParams(max_tokens=512, temperature=0.6, top_p=0.95),
    n=4,
)


def check_samples(out: list[Completion], n: int) -> None:
    assert len(out) == n
    for c in out:
        assert c.prompt_tokens > 0 and c.completion_tokens > 0
        assert c.finish_reason in ("stop", "length")
        assert c.completion_tokens <= 512


def test_native_generate_with_n() -> None:
    async def go(e: SGLangEngine) -> tuple[list[Completion], dict[str, Any]]:
        return await e.generate(QUESTION), e.info()

    out, info = run(SGLangEngine(sglang_cfg(api="native")), go)
    check_samples(out, 4)
    assert info["version"] and info["model"]
    if not info.get("disable_radix_cache"):
        # One prompt, n samples: the prefix was pre-filled once, so the samples hit the cache.
        assert all(c.cached_tokens > 0 for c in out)


def test_native_fanout() -> None:
    out = run(SGLangEngine(sglang_cfg(api="native", fork="fanout")), lambda e: e.generate(QUESTION))
    check_samples(out, 4)


def test_chat_api_with_n() -> None:
    out = run(SGLangEngine(sglang_cfg(api="chat")), lambda e: e.generate(QUESTION))
    check_samples(out, 4)
    if any(c.finish_reason == "stop" for c in out):
        assert any(c.text for c in out)


def test_openai_engine_on_sglang_v1() -> None:
    cfg = OpenAIEngineConfig(
        url=f"{URL}/v1", api_key_env=os.environ.get("PDR_TEST_SGLANG_API_KEY_ENV") or None, timeout_s=300
    )
    out = run(OpenAIEngine(cfg), lambda e: e.generate(QUESTION))
    check_samples(out, 4)


def test_context_overflow_is_a_context_length_error() -> None:
    async def go(e: SGLangEngine) -> None:
        ctx = int(e.info().get("context_length") or 32768)
        long = GenRequest((Message("user", "hello " * (ctx + 10)),), SamplingParams(max_tokens=16))
        with pytest.raises(ContextLengthError):
            await e.generate(long)

    run(SGLangEngine(sglang_cfg()), go)
