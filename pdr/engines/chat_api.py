"""The OpenAI chat-completions protocol (POST /v1/chat/completions): the request body and the
parsing of the answer. Used by `engine=openai` and by `engine=sglang` with `api=chat`.

Usage accounting for a choice (`parse_chat_response`):

* prompt tokens: `usage.prompt_tokens` for every choice — servers count the prompt once per
  prompt even when `n > 1`, and each choice did see the whole prompt;
* completion / reasoning / cached tokens: the choice's own `meta_info` when the server sends it
  (SGLang with `return_meta_info`); otherwise `usage.completion_tokens` (and `reasoning_tokens`)
  split over the choices in proportion to their text length in characters, summing exactly to the
  reported total (marked `meta["usage_split"] = "proportional"`). Cached tokens without meta:
  `prompt_tokens_details.cached_tokens`, taken as per-prompt unless it exceeds the prompt length,
  in which case it was summed over the choices (older SGLang) and is divided by n.

Token ids and logprobs (`engine.return_logprobs=true`, for RL rollouts: `pdr.rollout`): the body
asks for `logprobs: true, top_logprobs: 0` (llama-cpp-python returns none without
`top_logprobs`), and each completion's `meta` gets `logprobs` (one float per generated token,
thinking included) and `token_ids` (ints, or None when the server sends token strings only),
read by `completion_logprobs`. None, with one warning per engine, when the server sends nothing:
never invented.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pdr.engines.base import Completion, GenRequest, finish_reason, split_thinking
from pdr.errors import EngineRequestError


def chat_body(
    request: GenRequest,
    *,
    model: str,
    max_tokens: int,
    max_tokens_field: str = "max_tokens",
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
    logprobs: bool = False,
) -> dict[str, Any]:
    """The /v1/chat/completions body for one prompt sampled `request.n` times (with `logprobs`:
    asking for the sampled tokens' logprobs, see the module docstring).

    The generation cap is always sent (servers' defaults differ: SGLang's chat default is "until
    the context is full"); temperature and top_p are always sent so server-side generation_config
    defaults never apply silently.
    """
    s = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        max_tokens_field: max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
    }
    if request.n != 1:
        body["n"] = request.n
    if s.top_k is not None:
        body["top_k"] = s.top_k  # an extension (SGLang, vLLM); hosted OpenAI rejects it
    if s.stop:
        body["stop"] = list(s.stop)
    if seed is not None:
        body["seed"] = seed
    if logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = 0
    if extra:
        body.update(extra)
    return body


class FewerChoices(EngineRequestError):
    """The server answered fewer choices than the `n` asked for (it ignores `n`: llama.cpp's
    servers, some gateways). `completions` are the ones it did return, parsed."""

    def __init__(self, message: str, completions: list[Completion]):
        super().__init__(message)
        self.completions = completions


def parse_chat_response(
    data: Any, n: int, *, client_latency_s: float, name: str, logprobs: bool = False
) -> list[Completion]:
    """Completions in choice-index order (exactly `n`), with usage as described in the module
    docstring (and, with `logprobs`, `meta["token_ids"]`/`meta["logprobs"]`). Raises EngineRequestError on a malformed body, FewerChoices (carrying what came
    back) when fewer than `n` choices came back."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise EngineRequestError(f"{name}: malformed chat response (no choices): {str(data)[:200]}")
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    if 0 < len(choices) < n:
        got = parse_chat_response(
            data, len(choices), client_latency_s=client_latency_s, name=name, logprobs=logprobs
        )
        raise FewerChoices(
            f"{name}: asked for n={n} choices, the server returned {len(choices)} (it ignores n: "
            "set engine.fork=fanout)",
            got,
        )
    if len(choices) != n:
        raise EngineRequestError(f"{name}: asked for n={n} choices, the server returned {len(choices)}")
    usage = data.get("usage") or {}
    texts: list[tuple[str | None, str]] = []
    for ch in choices:
        msg = ch.get("message") if isinstance(ch, dict) else None
        if not isinstance(msg, dict):
            raise EngineRequestError(f"{name}: malformed chat choice: {str(ch)[:200]}")
        content = msg.get("content") or ""
        reasoning = msg.get("reasoning_content")
        if reasoning is None:
            reasoning = msg.get("reasoning")  # vLLM and some gateways
        if reasoning is None:
            # No reasoning parser on the server: the think block is still in the content.
            reasoning, content = split_thinking(content)
        texts.append((reasoning, content))

    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    metas = [ch.get("meta_info") if isinstance(ch.get("meta_info"), dict) else None for ch in choices]
    have_meta = all(m is not None and "completion_tokens" in m for m in metas)
    if not have_meta:
        lengths = [len(c) + len(r or "") for r, c in texts]
        completion = largest_remainder_split(int(usage.get("completion_tokens") or 0), lengths)
        details = usage.get("completion_tokens_details") or {}
        r_total = usage.get("reasoning_tokens") or details.get("reasoning_tokens") or 0
        reasoning_split = largest_remainder_split(int(r_total), [len(r or "") for r, _ in texts])
        cached_total = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        cached_each = cached_total // n if n > 1 and cached_total > prompt_tokens else cached_total
        cached_each = min(cached_each, prompt_tokens) if prompt_tokens else cached_each

    out = []
    for i, (ch, (reasoning, content)) in enumerate(zip(choices, texts, strict=True)):
        raw_finish = ch.get("finish_reason")
        meta: dict[str, Any] = {"id": data.get("id"), "finish_reason_raw": raw_finish}
        if ch.get("matched_stop") is not None:
            meta["matched_stop"] = ch["matched_stop"]
        mi = metas[i]
        if have_meta and mi is not None:
            comp = Completion(
                text=content,
                reasoning=reasoning,
                prompt_tokens=int(mi.get("prompt_tokens") or prompt_tokens),
                completion_tokens=int(mi.get("completion_tokens") or 0),
                cached_tokens=int(mi.get("cached_tokens") or 0),
                reasoning_tokens=int(mi.get("reasoning_tokens") or 0),
                finish_reason=finish_reason(raw_finish),
                latency_s=float(mi.get("e2e_latency") or client_latency_s),
                meta=meta,
            )
        else:
            if n > 1:
                meta["usage_split"] = "proportional"
            comp = Completion(
                text=content,
                reasoning=reasoning,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion[i],
                cached_tokens=cached_each,
                reasoning_tokens=reasoning_split[i],
                finish_reason=finish_reason(raw_finish),
                latency_s=client_latency_s,
                meta=meta,
            )
        meta["client_latency_s"] = round(client_latency_s, 6)
        if logprobs:
            meta["token_ids"], meta["logprobs"] = completion_logprobs(ch, name)
            if isinstance(data.get("prompt_token_ids"), list):  # vLLM with return_token_ids
                meta["prompt_token_ids"] = data["prompt_token_ids"]
        out.append(comp)
    return out


_TOKEN_ID = re.compile(r"token_id:(\d+)\Z")  # vLLM's tokens with return_tokens_as_token_ids
_warned_no_logprobs: set[str] = set()
logger = logging.getLogger(__name__)


def completion_logprobs(choice: Any, name: str) -> tuple[list[int] | None, list[float] | None]:
    """(token ids, logprobs) of one generated sequence as the server reported them, each None
    when it did not. Reads, in order: SGLang's `meta_info.output_token_logprobs`
    (`[logprob, token_id, text]` tuples; native /generate items and chat choices with
    `return_meta_info`), the OpenAI `logprobs.content` list (token ids when vLLM sends the
    tokens as `token_id:N`), and a choice-level `token_ids` list (vLLM's `return_token_ids`) or
    `output_ids` (SGLang's /generate)."""
    if not isinstance(choice, dict):
        return None, None
    ids: list[int] | None = None
    lps: list[float] | None = None
    meta_info = choice.get("meta_info")
    tuples = meta_info.get("output_token_logprobs") if isinstance(meta_info, dict) else None
    if isinstance(tuples, list) and tuples:
        try:
            lps = [float(t[0]) for t in tuples]
            ids = [int(t[1]) for t in tuples]
        except (TypeError, ValueError, IndexError):
            ids = lps = None
    content = (
        (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    )
    if lps is None and isinstance(content, list) and content:
        try:
            lps = [float(e["logprob"]) for e in content]
        except (TypeError, ValueError, KeyError):
            lps = None
        matches = [_TOKEN_ID.match(str(e.get("token", ""))) if isinstance(e, dict) else None for e in content]
        if lps is not None and all(matches):
            ids = [int(m.group(1)) for m in matches]  # type: ignore[union-attr]
    token_ids = (choice.get("token_ids") or choice.get("output_ids")) if ids is None else None
    if isinstance(token_ids, list) and all(isinstance(t, int) for t in token_ids):
        ids = list(token_ids)
    if lps is None and name not in _warned_no_logprobs:
        _warned_no_logprobs.add(name)
        logger.warning(
            "%s: engine.return_logprobs=true but the server returned no logprobs%s; recorded as None "
            "(the server does not support them, or not on this route)",
            name,
            "" if ids is not None else " or token ids",
        )
    return ids, lps


def largest_remainder_split(total: int, weights: list[float]) -> list[int]:
    """Split the integer `total` into len(weights) integers proportional to `weights`, summing
    exactly to `total` (largest-remainder rounding; equal split when all weights are 0)."""
    k = len(weights)
    if k == 0:
        return []
    total = max(0, int(total))
    wsum = float(sum(max(0.0, w) for w in weights))
    if wsum <= 0:
        weights, wsum = [1.0] * k, float(k)
    raw = [total * max(0.0, w) / wsum for w in weights]
    out = [int(r) for r in raw]
    order = sorted(range(k), key=lambda i: (raw[i] - out[i], -i), reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out
