"""What the ops share at run time: the drafts and workspace of one (problem, sample) (`State`), the
executor's services (`OpContext`), and the helpers every op uses (`render`, `trim_tokens`).

The executor supplies an `OpContext` whose `call()` sends one fork to the engine and records its
usage; the ops are plain logic over the drafts and the workspace, free of HTTP and threads.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pdr.engines.base import Completion, Message

if TYPE_CHECKING:
    from pdr.strategies.graph import Graph

# The templates of `prompts` (pdr.config.schema.PromptsConfig) a step may name with `prompt:`.
PROMPT_NAMES = ("draft", "refine", "sr_refine", "summary", "select", "critique")
PLACEHOLDER = re.compile(r"\{(problem|workspace|candidates|solution|critique|k|kappa|index)\}")
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log `message` as a warning the first time it is seen in this process (a sweep compiles the
    same graph for every job; one warning is enough)."""
    if message not in _warned:
        _warned.add(message)
        logging.getLogger("pdr.strategies").warning(message)


def render(template: str, **values: Any) -> str:
    """Fill only pdr's placeholders; every other brace (LaTeX) is left alone."""
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


@dataclass
class Candidate:
    completion: Completion
    answer: str | None  # extracted final answer (None: no answer)

    @property
    def truncated(self) -> bool:
        return self.completion.finish_reason == "length"

    def body(self, include_thinking: bool) -> str:
        c = self.completion
        if include_thinking and c.reasoning:
            return f"<think>\n{c.reasoning}\n</think>\n{c.text}"
        return c.text


@dataclass
class RoundRecord:
    round: int
    width: int
    answers: list[str | None]
    truncated: list[bool]
    workspace_tokens: float  # mean size of the workspaces the round's drafts saw (0: none)


@dataclass
class State:
    candidates: list[Candidate] = field(default_factory=list)
    # The workspace(s) the next generate reads, set by the last distill: one shared by every
    # branch, or one per branch (as many as the generate's width, fixed at compile time).
    workspaces: list[str] | None = None
    critiques: list[str] | None = None  # one per draft, read (and cleared) by the next generate
    final: Candidate | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    workspaces_log: list[dict[str, Any]] = field(default_factory=list)
    # Each op's wall-clock start and end (epoch seconds): the MLflow trace's step spans.
    step_times: list[dict[str, Any]] = field(default_factory=list)


class CallFn(Protocol):
    """Send one fork: `n` samples of one prompt -> n completions in branch order. `branch` tells
    apart concurrent single-sample calls of the same step (each gets its own seed)."""

    def __call__(
        self,
        step: int,
        kind: str,
        messages: list[Message],
        n: int = 1,
        *,
        branch: int = 0,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Awaitable[list[Completion]]: ...


@dataclass
class OpContext:
    problem: str
    prompts: Any  # PromptsConfig
    call: CallFn
    rng: Callable[[int, str], random.Random]  # (step, purpose) -> a seeded RNG
    count_tokens: Callable[[str], int]
    extract: Callable[[str], str | None]
    # Final answers -> whether each is correct against the gold answer (same order). Only the
    # oracle selection rules read it (never a strategy's own decisions otherwise).
    gold_correct: Callable[[list[str | None]], Awaitable[list[bool]]] | None = None
    notes: Counter[str] = field(default_factory=Counter)  # counts of noteworthy events, for the trace

    def messages(self, user: str) -> list[Message]:
        out = []
        if self.prompts.system:
            out.append(Message("system", self.prompts.system))
        out.append(Message("user", user))
        return out

    def candidate(self, completion: Completion) -> Candidate:
        """A draft with its extracted final answer (none for an empty, cut-off output)."""
        c = completion
        return Candidate(c, None if c.finish_reason == "length" and not c.text else self.extract(c.text))


async def run_graph(graph: Graph, ctx: OpContext) -> State:
    """Run the compiled ops in order on one (problem, sample); the final candidate is the vote's
    winner or the last draft."""
    state = State()
    for step, op in enumerate(graph.ops):
        started = time.time()
        await op.run(step, state, ctx)
        state.step_times.append({"step": step, "op": type(op).__name__.lower(), "started": round(started, 6),
                                 "ended": round(time.time(), 6)})
    if state.final is None:
        state.final = state.candidates[-1]
    return state


def trim_tokens(text: str, limit: int, count_tokens: Callable[[str], int]) -> str:
    """`text` cut to at most `limit` tokens, keeping its head and its tail (where the final answer
    is) and marking the cut. Exact for the engine's own token counter."""
    n = count_tokens(text)
    if n <= limit:
        return text
    marker = "\n[... {} tokens omitted ...]\n"
    budget = limit - count_tokens(marker.format(n)) - 1
    if budget <= 0:
        return text[: max(1, len(text) * limit // n)]
    ratio = budget / n
    while True:
        keep = int(len(text) * ratio)
        head, tail = keep * 3 // 10, keep - keep * 3 // 10
        out = text[:head] + marker.format(n - budget) + (text[-tail:] if tail else "")
        if count_tokens(out) <= limit or ratio < 1e-4:
            return out
        ratio *= 0.9
