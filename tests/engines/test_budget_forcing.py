"""Budget forcing (a thinking cap + an answer buffer): a model that never closes its think block
still answers within the buffer; on SGLang native the second request extends the first sequence
(prefix-cached) and both phases are accounted; the sim models the same."""

from __future__ import annotations

import asyncio

import pytest

from pdr.engines.base import GenRequest, Message, RequestTag, SamplingParams
from pdr.engines.sglang import SGLangEngine
from pdr.engines.thinking import FORCED_CLOSE
from pdr.errors import ConfigError
from pdr.executor import budgets
from tests.conftest import compose_object
from tests.engines.test_sglang import make_cfg
from tests.fakes import FakeSGLangServer, run_with_engine
from tests.strategies.scripted import PROBLEM


def _request(n=1, think=40, answer=30, **kw):
    return GenRequest(
        (Message("user", "force: what is 6*7?"),),
        SamplingParams(max_tokens=think + answer, thinking_tokens=think, **kw),
        n=n,
        seed=7,
        tag=RequestTag("p1", 0, 0, "draft"),
    )


def test_a_model_that_never_closes_its_think_block_still_answers_and_reuses_the_prefix():
    with FakeSGLangServer(think_words=(5000, 5000), answer_fn=lambda prompt, i: "42") as srv:
        out = run_with_engine(SGLangEngine(make_cfg(srv.url)), lambda e: e.generate(_request()))
        (c,) = out
        first, second = srv.bodies("/generate")
        assert first["sampling_params"]["max_new_tokens"] == 40
        assert second["sampling_params"]["max_new_tokens"] == 30
        # the second request extends the first sequence, with the think block closed for the model
        assert second["text"].startswith(first["text"]) and second["text"].endswith(FORCED_CLOSE)
        assert c.finish_reason == "stop" and "\\boxed{42}" in c.text and c.reasoning
        p1, p2 = c.meta["phases"]
        assert p1["finish_reason"] == "length" and p1["completion_tokens"] == 40
        # the prefix (prompt + phase 1's 40 tokens) is served from the cache, block-aligned (16)
        assert p2["cached_tokens"] >= p1["prompt_tokens"] + 40 - 16
        # both phases are in the one completion's accounting: the sequence once
        assert c.prompt_tokens == p1["prompt_tokens"]
        assert c.completion_tokens == p2["prompt_tokens"] - p1["prompt_tokens"] + p2["completion_tokens"]
        assert c.completion_tokens <= 40 + 30 + 2


def test_a_branch_done_within_the_thinking_cap_is_one_request():
    with FakeSGLangServer(think_words=(5, 5)) as srv:
        (c,) = run_with_engine(SGLangEngine(make_cfg(srv.url)), lambda e: e.generate(_request(think=200)))
        assert srv.count("/generate") == 1 and c.finish_reason == "stop" and len(c.meta["phases"]) == 1


def test_fork_of_two_continues_each_branch():
    with FakeSGLangServer(think_words=(5000, 5000)) as srv:
        out = run_with_engine(SGLangEngine(make_cfg(srv.url)), lambda e: e.generate(_request(n=2)))
        assert len(out) == 2 and srv.count("/generate") == 3
        assert all(c.finish_reason == "stop" and "\\boxed{" in c.text for c in out)


def test_logit_processor_option_is_one_request_with_custom_params():
    with FakeSGLangServer(think_words=(5, 5)) as srv:
        req = _request(budget_forcing="logit_processor", logit_processor='{"callable": "x"}')
        run_with_engine(SGLangEngine(make_cfg(srv.url)), lambda e: e.generate(req))
        (body,) = srv.bodies("/generate")
        assert body["custom_logit_processor"] == '{"callable": "x"}'
        assert body["sampling_params"]["custom_params"] == {"thinking_budget": 40}
        assert body["sampling_params"]["max_new_tokens"] == 70


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sampling.thinking_tokens=8192"], "sampling.max_tokens=4096 contradicts sampling.thinking_tokens=8192"),
        (["sampling.answer_tokens=2048"], "sampling.answer_tokens=2048: is the buffer after a thinking cap"),
        (["sampling.max_tokens=null"], "sampling.max_tokens=null"),
        (["sampling.thinking_tokens=100", "sampling.max_tokens=null", "sampling.budget_forcing=logit_processor"],
         "needs sampling.logit_processor"),
    ],
)
def test_contradicting_caps_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        compose_object(overrides)
    assert message in str(err.value)


def test_thinking_plus_buffer_derives_max_tokens():
    s = compose_object(["sampling.thinking_tokens=8192", "sampling.max_tokens=null"]).sampling
    assert (s.thinking_tokens, s.answer_tokens, s.max_tokens) == (8192, 2048, 10240)
    s = compose_object(["sampling.thinking_tokens=100", "sampling.answer_tokens=50", "sampling.max_tokens=150"]).sampling
    assert s.max_tokens == 150


def test_sim_models_budget_forcing_and_both_phases_count():
    from pdr.engines.sim import SimEngine
    from pdr.evaluation import extract_answer
    from pdr.executor import Executor
    from pdr.strategies.graph import compile_graph

    cfg = compose_object(["strategy=long_cot", "engine.think_tokens=3000",
                          "sampling.thinking_tokens=200", "sampling.answer_tokens=400", "sampling.max_tokens=null"])
    engine = SimEngine(cfg.engine, [PROBLEM])
    ex = Executor(engine, compile_graph(cfg.strategy), cfg.prompts, cfg.sampling, 0, extract=extract_answer)
    out = asyncio.run(ex.run_one(PROBLEM, 0))
    (rec,) = out.calls
    c = out.state.final.completion
    assert c.meta["budget_forced"] and c.finish_reason == "stop" and out.final_answer is not None
    p1, p2 = c.meta["phases"]
    assert p1["completion_tokens"] == 200 and p2["cached_tokens"] == p1["prompt_tokens"] + 200
    assert rec.completion_tokens == 200 + 1 + p2["completion_tokens"]
    assert out.trace[0]["outputs"][0]["phases"] == [p1, p2]
    b = budgets(out.calls)
    assert b["seq_tokens"] == rec.prompt_tokens + rec.completion_tokens
    assert b["seq_tokens_nominal"] == 600
