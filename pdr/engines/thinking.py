"""Budget forcing: a thinking cap plus an answer buffer (`sampling.thinking_tokens`,
`sampling.answer_tokens`), the way the paper runs thinking models (8K/16K/24K thinking + 2K).

When a generation hits its thinking cap, the model must still answer: its think block is closed
for it and it continues within the answer buffer. How, per engine (docs/real-servers.md,
"Thinking budget"):

- SGLang native, `sampling.budget_forcing=continue` (default): phase 1 is the request capped at
  `thinking_tokens`. A branch that stops on its own is done. A branch cut at the cap is extended
  by a second /generate whose prompt is the same sequence, prompt + phase-1 output, with
  "\n</think>\n\n" appended when the think block is still open (nothing appended when it was
  closed: the answer just continues), capped at `answer_tokens`. The second request extends the
  first, so SGLang's radix cache serves the whole prefix (its `cached_tokens` says so) and no
  prefill is repeated. Works on any SGLang server.
- SGLang native, `sampling.budget_forcing=logit_processor`: one request carrying SGLang's
  thinking-budget custom logit processor (`custom_logit_processor`, `sampling_params.custom_params
  = {"thinking_budget": N}`; the server needs `--enable-custom-logit-processor`): the server
  forces "</think>" after N thinking tokens inside the same decode, capped at max_tokens overall.
- Chat APIs (SGLang chat, OpenAI-compatible): no continuation of a partial assistant turn is
  portable, so pdr sends max_tokens = thinking + answer and says once that the thinking cap is
  not enforced by pdr there (map it to the provider's own field with `engine.extra_body`).
- The simulated engine models the same as `continue` (pdr/engines/sim.py).

Accounting (both phases count): the merged completion's input is phase 1's prompt; its output is
phase 1's tokens + the appended close + phase 2's tokens, i.e. every token of the one sequence
once (phase 2's re-sent prefix is served from the cache, not computed again). `meta["phases"]`
keeps each request's own counts (cap, prompt, completion, cached, finish) for the trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pdr.engines.base import THINK_CLOSE, Completion, GenRequest, split_thinking

if TYPE_CHECKING:
    from pdr.engines.http import HttpClient
    from pdr.engines.sglang import SGLangEngine

log = logging.getLogger(__name__)

FORCED_CLOSE = "\n" + THINK_CLOSE + "\n\n"  # appended to a cut-off think block
_warned: set[str] = set()


def think_closed(prompt: str, raw: str) -> bool:
    """Whether the sequence prompt + raw has left its think block (or never had one to leave:
    a template that pre-fills an empty think block, e.g. Qwen3 with enable_thinking=false)."""
    return THINK_CLOSE in raw or prompt.rstrip().endswith(THINK_CLOSE)


def continuation(prompt: str, raw: str) -> str:
    """The phase-2 prompt: the same sequence, with the think block closed if still open."""
    return prompt + raw + ("" if think_closed(prompt, raw) else FORCED_CLOSE)


def phase_record(c: Completion, cap: int) -> dict[str, Any]:
    return {
        "max_tokens": cap,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "cached_tokens": c.cached_tokens,
        "finish_reason": c.finish_reason,
    }


def merge(first: Completion, second: Completion, raw1: str, raw2: str, prompt: str, caps: tuple[int, int]) -> Completion:
    """One completion of the whole sequence from its two phases (accounting in the module docstring)."""
    closed = think_closed(prompt, raw1)
    raw = raw1 + ("" if closed else FORCED_CLOSE) + raw2
    reasoning, text = split_thinking(raw)
    # The appended close is in phase 2's prompt: what phase 2 read beyond phase 1's sequence.
    injected = max(0, second.prompt_tokens - first.prompt_tokens - first.completion_tokens)
    meta = dict(second.meta)
    meta["phases"] = [phase_record(first, caps[0]), phase_record(second, caps[1])]
    meta["budget_forced"] = not closed
    return Completion(
        text=text,
        reasoning=reasoning,
        prompt_tokens=first.prompt_tokens,
        completion_tokens=first.completion_tokens + injected + second.completion_tokens,
        cached_tokens=first.cached_tokens,
        reasoning_tokens=first.reasoning_tokens or first.completion_tokens,
        finish_reason=second.finish_reason,
        latency_s=first.latency_s + second.latency_s,
        meta=meta,
    )


def processor_body(body: dict[str, Any], request: GenRequest) -> dict[str, Any]:
    """A /generate body with SGLang's thinking-budget logit processor attached."""
    s = request.sampling
    body = dict(body)
    body["custom_logit_processor"] = s.logit_processor
    body["sampling_params"] = {**body["sampling_params"], "custom_params": {"thinking_budget": s.thinking_tokens}}
    return body


async def generate_native(engine: SGLangEngine, http: HttpClient, request: GenRequest, prompt: str) -> list[Completion]:
    """`request` (with `sampling.thinking_tokens` set) on SGLang's native /generate, budget-forced;
    `n` completions in branch order."""
    from pdr.engines.sglang import parse_native_response

    s = request.sampling
    assert s.thinking_tokens is not None
    think, answer = s.thinking_tokens, s.max_tokens - s.thinking_tokens

    async def post(req: GenRequest, text: str, cap: int, processor: bool = False) -> tuple[Any, float]:
        t0 = time.monotonic()

        def body() -> dict[str, Any]:
            b = engine.native_body(req, text, cap)
            return processor_body(b, req) if processor else b

        data = await http.request_json("POST", "/generate", body_factory=body)
        return data, time.monotonic() - t0

    if s.budget_forcing == "logit_processor":
        data, took = await post(request, prompt, s.max_tokens, processor=True)
        return parse_native_response(data, request.n, client_latency_s=took, name=engine.name)

    data, took = await post(request, prompt, think)
    firsts = parse_native_response(data, request.n, client_latency_s=took, name=engine.name)
    raws = [str(item.get("text") or "") for item in (data if isinstance(data, list) else [data])]

    async def finish(i: int) -> Completion:
        c1 = firsts[i]
        if c1.finish_reason != "length":  # stopped within the thinking cap: nothing to force
            c1.meta["phases"] = [phase_record(c1, think)]
            return c1
        branch = replace(request, n=1, seed=request.seed + i)
        text = continuation(prompt, raws[i])
        data2, took2 = await post(branch, text, answer)
        (c2,) = parse_native_response(data2, 1, client_latency_s=took2, name=engine.name)
        raw2 = str((data2[0] if isinstance(data2, list) else data2).get("text") or "")
        return merge(c1, c2, raws[i], raw2, prompt, (think, answer))

    return list(await asyncio.gather(*(finish(i) for i in range(request.n))))


def with_budget_field(extra: dict[str, Any], path: str, budget: int) -> dict[str, Any]:
    """`extra` (engine.extra_body) with `budget` set at the dotted `path` (engine.thinking_budget_field,
    e.g. "google.thinking_config.thinking_budget"), intermediate mappings created or copied: the
    provider enforces the thinking cap. `extra` itself is not modified."""
    out = dict(extra)
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        child = node.get(key)
        node[key] = dict(child) if isinstance(child, dict) else {}
        node = node[key]
    node[leaf] = budget
    return out


def warn_not_enforced(engine_name: str, api: str) -> None:
    """Say once per process that a thinking cap is not enforced by pdr on this API."""
    key = f"{engine_name}:{api}"
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "%s (%s API): sampling.thinking_tokens is not enforced by pdr here; each call is capped at "
            "sampling.max_tokens = thinking + answer. Name the provider's own thinking-budget field with "
            "engine.thinking_budget_field (docs/real-servers.md §12), or use engine=sglang engine.api=native",
            engine_name,
            api,
        )
