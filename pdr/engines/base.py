"""The engine protocol: what every engine (sim, sglang, openai) offers the executor.

One call = one `GenRequest` = one prompt sampled `n` times (a fork: one prefill, `n` branches).
The engine returns exactly `n` `Completion`s in branch order. Engines own concurrency limits,
timeouts and retries; the executor and the strategies never see HTTP or threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pdr.errors import EngineRequestError

# Calls in flight when neither the config nor the server says (engine.max_concurrency=null).
DEFAULT_MAX_CONCURRENCY = 64
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Per-call sampling. `max_tokens` is the per-call generation cap and is always sent to servers
    (SGLang's native default is 128 tokens, which silently truncates reasoning)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    # A thinking cap inside max_tokens (the rest is the answer buffer), enforced by budget forcing
    # (pdr/engines/thinking.py) the way `budget_forcing` says; None: max_tokens caps everything.
    thinking_tokens: int | None = None
    budget_forcing: str = "continue"
    logit_processor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict, like `dataclasses.asdict` (same call-cache keys) at a tenth of its
        cost. The thinking fields only when a thinking cap is set, so earlier cache keys stay valid."""
        d: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "stop": tuple(self.stop),
        }
        if self.thinking_tokens is not None:
            d["thinking_tokens"] = self.thinking_tokens
            d["budget_forcing"] = self.budget_forcing
        return d


@dataclass(frozen=True)
class RequestTag:
    """Where a call sits in the experiment. Real engines use it only for request ids and logs;
    the simulated engine uses `problem_id` to look up its answer key."""

    problem_id: str
    sample: int
    step: int
    kind: str  # "draft" | "summary" | "select" | "critique" | ...
    branch: int = 0


@dataclass(frozen=True)
class GenRequest:
    messages: tuple[Message, ...]
    sampling: SamplingParams
    n: int = 1
    seed: int = 0  # branch i uses seed + i; derived from the run seed and the tag
    tag: RequestTag | None = None

    def cache_key(self, engine_identity: str) -> str:
        """Stable key of this call's inputs (engine, prompt, sampling, n, seed), excluding the tag
        except for what changes the output. Used by the call cache."""
        payload = {
            "engine": engine_identity,
            "messages": [[m.role, m.content] for m in self.messages],
            "sampling": self.sampling.as_dict(),
            "n": self.n,
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class Completion:
    """One branch's output. `text` is the visible answer (thinking removed); `reasoning` the thinking.

    Token counts are as the server reports them (the sim engine counts its own tokens).
    `finish_reason` is "stop", "length" (hit max_tokens: the output is truncated) or "abort".
    `meta` holds server facts; with `engine.return_logprobs=true` also `token_ids` (list[int])
    and `logprobs` (list[float]) of the whole generated sequence, thinking included, each None
    when the server did not send it (never estimated), and `prompt_token_ids` where the server
    sends them (vLLM's `return_token_ids`).
    """

    text: str
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (`meta` copied one level deep). Not `dataclasses.asdict`, which
        deep-copies recursively: ~25 us per completion, ~40 % of the call journal's per-call cost."""
        d = dict(self.__dict__)
        d["meta"] = dict(self.meta)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(**d)


_FINISH_REASONS = frozenset({"stop", "length", "abort"})


def finish_reason(raw: Any) -> str:
    """A server's finish reason as a `Completion.finish_reason`: "stop", "length" or "abort";
    anything else (None, "tool_calls", "eos" ...) counts as "stop"."""
    reason = str(raw)
    return reason if reason in _FINISH_REASONS else "stop"


def approx_tokens(text: str) -> int:
    """A token count without the model's tokenizer: ~4 characters per token for English and LaTeX."""
    return max(1, (len(text) + 3) // 4)


def split_thinking(raw: str) -> tuple[str | None, str]:
    """Split a raw generation into (thinking, visible answer).

    `<think>a</think>b` -> ("a", "b"). A `</think>` without the opening tag (templates that put
    `<think>` in the prompt) also splits. An unclosed `<think>` means the model never left its
    thinking (truncated): everything is thinking and the answer is empty.
    """
    close = raw.rfind(THINK_CLOSE)
    if close >= 0:
        head = raw[:close]
        open_ = head.find(THINK_OPEN)
        thinking = head[open_ + len(THINK_OPEN) :] if open_ >= 0 else head
        return thinking.strip("\n"), raw[close + len(THINK_CLOSE) :].lstrip("\n")
    open_ = raw.find(THINK_OPEN)
    if open_ >= 0:
        return raw[open_ + len(THINK_OPEN) :].strip("\n"), ""
    return None, raw


@runtime_checkable
class Engine(Protocol):
    """What the executor, the call cache and the runner use of an engine; nothing else is probed.

    `BaseEngine` provides every member but `_generate`; `CachedEngine` (pdr.engines.cache) wraps
    any Engine and is one itself. All methods run on the event loop's thread.
    """

    name: str  # the registry key: `engine.name`, the YAML option, the logged value
    simulated: bool  # True only for the embedded simulated model: its numbers are never a model's
    # Requests sent on so far: to the model (a fanned-out fork of n counts n), or, for a wrapper
    # such as CachedEngine, to the engine it wraps.
    calls: int

    async def start(self) -> None:
        """Connect (and launch, if configured) and wait until the engine can serve; may raise."""
        ...

    async def generate(self, request: GenRequest) -> list[Completion]:
        """Sample `request.n` completions of one prompt; exactly `n` results, branch order."""
        ...

    async def close(self) -> None:
        """Release everything `start` acquired. Idempotent; `info()` still works afterwards."""
        ...

    def identity(self) -> str:
        """What determines outputs (engine kind, model, server); part of the call-cache key."""
        ...

    def info(self) -> dict[str, Any]:
        """Facts to record with the run (server version, model path, context length ...)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` as this engine counts them (an estimate when it has no tokenizer)."""
        ...


class EngineWrapper:
    """An engine in front of another (`self.engine`): `name`, `simulated`, `start`, `close`,
    `identity`, `info` and `count_tokens` pass through; a wrapper defines `generate` and `calls`
    and overrides what else it changes (CachedEngine: `close`; pdr.rollout's recorder: nothing)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def simulated(self) -> bool:
        return self.engine.simulated

    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()

    def identity(self) -> str:
        return self.engine.identity()

    def info(self) -> dict[str, Any]:
        return self.engine.info()

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)


class WeightedLimiter:
    """An asyncio limiter where a call takes `weight` slots (a fork with n branches takes n).

    A request wider than the limit takes all slots (alone) rather than deadlocking. Waiters are
    served first come, first served (a wide fork is never starved by a stream of narrow calls),
    and a release wakes only the waiters it lets through: O(1) per call, however many wait (a
    condition variable with `notify_all` wakes every waiter on every release, which is quadratic:
    0.14 ms vs 0.011 ms of CPU per call with 2000 calls queued behind 64 slots). Event-loop thread only.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, weight: int) -> int:
        """Wait for `weight` slots (clamped to [1, capacity]); returns the weight to release."""
        weight = min(max(weight, 1), self.capacity)
        if not self._waiters and self._used + weight <= self.capacity:
            self._used += weight
            return weight
        entry = (weight, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        except BaseException:
            if entry[1].done() and not entry[1].cancelled():
                self._used -= weight  # granted, then cancelled before it could be used: give back
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            self._wake()
            raise
        return weight

    async def release(self, weight: int) -> None:
        self._used -= weight
        self._wake()

    def _wake(self) -> None:
        """Grant slots to the waiters at the head of the queue while they fit."""
        waiters = self._waiters
        while waiters:
            weight, fut = waiters[0]
            if fut.done():  # cancelled while queued
                waiters.popleft()
                continue
            if self._used + weight > self.capacity:
                break
            waiters.popleft()
            self._used += weight
            fut.set_result(None)

    @property
    def in_use(self) -> int:
        return self._used

    @property
    def waiting(self) -> int:
        """Calls queued for slots."""
        return len(self._waiters)


class BaseEngine:
    """Shared plumbing: the concurrency limit, the fan-out fallback for servers without `n`, and
    defaults for every `Engine` member.

    Subclasses implement `_generate(request)` for one prompt with `request.n` samples (or set
    `supports_n = False` and receive only n == 1 requests, fanned out here concurrently), and
    register themselves with `pdr.engines.registry.register_engine`.
    """

    name = "base"
    simulated = False
    supports_n = True

    def __init__(self, max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY):
        self.limiter = WeightedLimiter(max_concurrency or DEFAULT_MAX_CONCURRENCY)
        self.calls = 0  # engine requests actually issued (after any fan-out)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def identity(self) -> str:
        return self.name

    def info(self) -> dict[str, Any]:
        return {"engine": self.name}

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    async def generate(self, request: GenRequest) -> list[Completion]:
        if request.n > 1 and not self.supports_n:
            parts = await asyncio.gather(*(self._one(_branch(request, i)) for i in range(request.n)))
            return [c for part in parts for c in part]
        return await self._one(request)

    async def _one(self, request: GenRequest) -> list[Completion]:
        weight = await self.limiter.acquire(request.n)
        try:
            self.calls += 1
            out = await self._generate(request)
        finally:
            await self.limiter.release(weight)
        if len(out) != request.n:
            raise EngineRequestError(f"{self.name}: asked for n={request.n} samples, got {len(out)}")
        return out

    async def _generate(self, request: GenRequest) -> list[Completion]:
        raise NotImplementedError


def _branch(request: GenRequest, i: int, n: int = 1) -> GenRequest:
    """Branches i .. i+n-1 of a fork as their own request (n=1 by default), seeded seed + i."""
    tag = request.tag
    if tag is not None:
        tag = RequestTag(tag.problem_id, tag.sample, tag.step, tag.kind, tag.branch + i)
    return GenRequest(request.messages, request.sampling, n=n, seed=request.seed + i, tag=tag)
