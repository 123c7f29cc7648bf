"""pdr.rollout: a strategy graph as an RL rollout function (sim engine, the fake SGLang server's
native and chat routes, the OpenAI path), and the TRL 1.16 rollout_func adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pdr.errors import ConfigError
from pdr.evaluation import grade
from pdr.rollout import Episode, arollout, build_config, rollout, trl_rollout_func
from tests.fakes import FakeSGLangServer

PDR2 = ["strategy.widths=[2]", "sampling.max_tokens=600"]
PROBLEMS = [
    {"id": "one", "problem": "What is 1+1?", "answer": "2"},
    {"id": "two", "problem": "What is 2+2?", "answer": "4"},
]
FAST = {"timeout_s": 10.0, "ready_timeout_s": 10.0}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeSGLangServer]:
    # Drafts answer 2 or 4 by sample index; the refine of "What is 1+1?" mostly answers 2.
    with FakeSGLangServer(
        model_path="Qwen/Qwen3-8B", think_words=(5, 12), answer_fn=lambda p, i: str(2 + 2 * (i % 2))
    ) as srv:
        yield srv


def _shape(ep: Episode) -> list[tuple[int, str, int, int]]:
    return [(c.step, c.kind, c.round, c.branch) for c in ep.calls]


def test_sim_rollout_runs_the_graph_and_grades_it():
    eps = rollout(PROBLEMS + ["What is 3+3?"], "pdr", {"name": "sim"}, PDR2, n_samples=2, seed=7)
    assert [(e.problem_id, e.sample) for e in eps] == [
        ("one", 0),
        ("one", 1),
        ("two", 0),
        ("two", 1),
        ("2", 0),
        ("2", 1),
    ]
    for ep in eps:
        # widths=[2]: two drafts (one fork), a global summary, one refine: the compiled graph's calls.
        assert _shape(ep) == [
            (0, "draft", 1, 0),
            (0, "draft", 1, 1),
            (1, "summary", 1, 0),
            (2, "refine", 2, 0),
        ]
        final = ep.final_call
        assert final is ep.calls[-1] and final.answer == ep.answer
        assert all(c.token_ids is None and c.logprobs is None for c in ep.calls)  # the sim has none
        assert ep.calls[2].answer is None and ep.calls[2].reward is None  # a summary is no answer
        assert "What is" in ep.calls[0].messages[-1]["content"]
        if ep.gold is None:
            assert ep.reward is None and ep.status == "no_gold"
        else:
            expected = grade(f"\\boxed{{{ep.answer}}}", ep.gold).correct if ep.answer else False
            assert ep.reward == float(expected) and ep.status in ("correct", "wrong", "no_answer")
            for c in ep.calls:
                if c.answer is not None:
                    assert c.reward == float(grade(f"\\boxed{{{c.answer}}}", ep.gold).correct)
    assert rollout(PROBLEMS, "pdr", {"name": "sim"}, PDR2, seed=7)[0].to_dict() == eps[0].to_dict()  # seeded
    assert {e.reward for e in eps if e.gold} == {0.0, 1.0}  # the sim gets some right, some wrong


def test_native_sglang_rollout_records_ids_logprobs_and_the_rendered_prompt(server):
    server.reset_stats()
    engine = {"name": "sglang", "url": server.url, "chat_template": "chatml", **FAST}
    eps = rollout(PROBLEMS[:1], "pdr", engine, PDR2, n_samples=2)
    assert all(b.get("return_logprob") is True for b in server.bodies("/generate"))
    for ep in eps:
        assert _shape(ep)[-1] == (2, "refine", 2, 0) and len(ep.calls) == 4
        for c in ep.calls:
            assert len(c.token_ids) == len(c.logprobs) == c.completion_tokens > 0
            assert c.prompt_text is not None and c.prompt_text.startswith("<|im_start|>")
            assert c.messages[-1]["content"] in c.prompt_text
        assert ep.reward == float(ep.answer == "2") and ep.status == (
            "correct" if ep.answer == "2" else "wrong"
        )
        drafts = [c for c in ep.calls if c.kind == "draft"]
        assert [c.reward for c in drafts] == [float(c.answer == "2") for c in drafts]
        # The refine's prompt carries the workspace (the summary's text): the operator-consistent part.
        assert ep.calls[2].text.strip()[:40] in ep.calls[3].messages[-1]["content"]


def test_openai_rollout_has_logprobs_without_ids_unless_the_server_sends_them(server):
    engine = {"name": "openai", "url": f"{server.url}/v1", "api_key_env": None, **FAST}
    (ep,) = rollout(PROBLEMS[:1], "long_cot", engine, ["sampling.max_tokens=600"])
    (c,) = ep.calls
    assert c.final and c.token_ids is None and len(c.logprobs) > 0 and c.prompt_text is None
    engine["extra_body"] = {"return_token_ids": True}
    (ep,) = rollout(PROBLEMS[:1], "long_cot", engine, ["sampling.max_tokens=600"])
    assert len(ep.calls[0].token_ids) == len(ep.calls[0].logprobs) and ep.calls[0].prompt_token_ids


def test_arollout_inside_a_running_loop_and_engine_errors_are_episodes(server):
    async def main() -> list[Episode]:
        return await arollout(PROBLEMS, "long_cot", {"name": "sglang", "url": server.url, "chat_template": "chatml",
                                                      **FAST, "max_retries": 0}, ["sampling.max_tokens=600"])  # fmt: skip

    server.fail_next(1, status=400)
    eps = asyncio.run(main())
    server.clear_faults()
    failed = [e for e in eps if e.status == "error"]
    assert len(failed) == 1 and failed[0].reward == 0.0 and failed[0].error


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown key.*'urll'.*did you mean 'url'"):
        build_config("pdr", {"name": "sglang", "urll": "http://x"})
    with pytest.raises(ConfigError, match="engine.url"):
        build_config("pdr", {"name": "sglang", "url": "localhost:30000"})
    cfg = build_config("pdr", {"name": "sglang", "url": "http://h:1"}, ["strategy.widths=[4]"])
    assert cfg.engine.return_logprobs is True and cfg.strategy.widths == [4] and cfg.cache.mode == "off"
    assert build_config("pdr", {"name": "sglang"}, return_logprobs=False).engine.return_logprobs is False
    with pytest.raises(ConfigError, match="n_samples"):
        rollout(PROBLEMS, n_samples=0)
    with pytest.raises(ConfigError, match="unique"):
        rollout([{"id": "a", "problem": "x"}, {"id": "a", "problem": "y"}])


# --- TRL ---------------------------------------------------------------------------------------------


class _Tokenizer:
    """Whitespace 'tokenizer' standing in for trainer.processing_class."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, Any]:
        return {"input_ids": [len(w) for w in text.split()]}

    def apply_chat_template(self, messages: list[dict[str, str]], **kw: Any) -> list[int]:
        return [len(m["content"]) for m in messages]


class _Trainer:
    processing_class = _Tokenizer()


def test_trl_rollout_func_shapes_the_final_call(server):
    """TRL 1.16 GRPOTrainer._generate: rollout_func(prompts, trainer) must return prompt_ids,
    completion_ids, logprobs, one per prompt entry (entries repeat num_generations times)."""
    engine = {"name": "sglang", "url": server.url, "chat_template": "chatml", **FAST}
    fn = trl_rollout_func("pdr", engine, PDR2, standard_fraction=0.5)
    prompts = [
        [{"role": "user", "content": p["problem"]}] for p in PROBLEMS for _ in range(3)
    ]  # 2 groups x 3
    out = fn(prompts, _Trainer())
    assert {"prompt_ids", "completion_ids", "logprobs"} <= set(out)
    assert all(len(v) == 6 for v in out.values())
    assert out["pdr_strategy"] == ["pdr"] * 3 + ["long_cot"] * 3  # half the groups operator, half standard
    for ids, lps in zip(out["completion_ids"], out["logprobs"], strict=True):
        assert len(ids) == len(lps) > 0 and all(isinstance(t, int) for t in ids)
    # The operator's final prompt holds the workspace: longer than the standard prompt.
    assert min(len(p) for p in out["prompt_ids"][:3]) > max(len(p) for p in out["prompt_ids"][3:])
    # Without token ids from the server it refuses (never trains on re-tokenized text).
    no_ids = trl_rollout_func("long_cot", {"name": "openai", "url": f"{server.url}/v1", "api_key_env": None, **FAST},
                              ["sampling.max_tokens=600"])  # fmt: skip
    with pytest.raises(ConfigError, match="no token ids or logprobs"):
        no_ids(prompts[:1], _Trainer())
