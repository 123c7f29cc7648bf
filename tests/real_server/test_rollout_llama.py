"""pdr.rollout against a real llama.cpp server (llama-cpp-python, Gemma-3-270M, CPU).

What llama-cpp-python 0.3.x returns, checked here: with `logprobs: true` *and* `top_logprobs`
(pdr sends 0) one `logprobs.content` entry per generated token, as many as `usage.completion_tokens`;
without `top_logprobs` none at all. Token ids: never (tokens are strings; vLLM's
`return_token_ids` is ignored), so they are recorded as None, not re-tokenized.
"""

from __future__ import annotations

import math

import pytest

from pdr.rollout import rollout, trl_rollout_func

pytestmark = pytest.mark.real_server
CAP = 32


def test_pdr_rollout_with_width_two_returns_every_calls_logprobs(llama_server):
    engine = {"name": "openai", "url": llama_server.url, "api_key_env": None, "timeout_s": 600.0}
    overrides = [
        "strategy.widths=[2]", "strategy.distill=top_k_shared", "strategy.k=1", "strategy.workspace_tokens=256",
        f"sampling.max_tokens={CAP}", "sampling.temperature=0.8",
    ]  # fmt: skip
    (ep,) = rollout([{"id": "add", "problem": "What is 2+3? Put the answer in \\boxed{}.", "answer": "5"}],
                    "pdr", engine, overrides)  # fmt: skip
    assert ep.status != "error", ep.error
    # Two drafts (the server ignores n: fanned out) and the final refine.
    assert [(c.step, c.kind, c.branch) for c in ep.calls] == [
        (0, "draft", 0),
        (0, "draft", 1),
        (2, "refine", 0),
    ]
    assert ep.calls[-1].final and ep.reward in (0.0, 1.0)
    for c in ep.calls:
        assert 0 < c.completion_tokens <= CAP
        assert isinstance(c.logprobs, list) and len(c.logprobs) == c.completion_tokens
        assert all(isinstance(x, float) and math.isfinite(x) and x <= 0.0 for x in c.logprobs)
        assert c.token_ids is None  # llama-cpp-python sends token strings only
    # The refine saw the kept draft: the operator's prompt.
    assert (
        ep.calls[0].text[:20] in ep.calls[2].messages[-1]["content"]
        or ep.calls[1].text[:20] in ep.calls[2].messages[-1]["content"]
    )

    # TRL's rollout_func needs completion token ids: refused, naming the fix, never re-tokenized.
    fn = trl_rollout_func("long_cot", engine, [f"sampling.max_tokens={CAP}"])
    with pytest.raises(Exception, match="no token ids or logprobs"):
        fn(["What is 2+3?"], None)
