"""What each graph op does to one (problem, sample): the strategy logic, free of HTTP and threads.

The executor supplies an `OpContext` whose `call()` sends one fork to the engine and records its
usage; everything here is plain logic over the drafts and the workspace.

Top-k selection (the paper leaves the rule open; `strategy.selection`):
- agreement (default): a draft's score is the number of drafts whose final answer matches its
  own (answerless drafts score 0, truncated ones rank last). top_k_shared keeps the k best for
  every branch; top_k_per_sample draws k per branch without replacement with probability
  proportional to score + 0.5, so branches see different but well-supported workspaces.
- judge: the model ranks the numbered drafts (prompt `select`) and its boxed list of numbers is
  used; top_k_shared makes one judge call, top_k_per_sample one per branch (a single fork of
  n). An unparsable reply falls back to the agreement ranking (counted in the trace).
random_k draws k uniformly per branch.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pdr.engines.base import Completion, Message
from pdr.evaluation.extract import normalize_answer
from pdr.strategies.graph import Critique, Distill, Generate, Graph, Vote

PLACEHOLDER = re.compile(r"\{(problem|workspace|candidates|solution|critique|k|index)\}")


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
    # Workspaces for the next generate: one shared, or one per branch (resolved lazily, since
    # per-branch workspaces need the next round's width).
    shared_workspace: str | None = None
    pending: tuple[int, Distill, list[Candidate]] | None = None  # (step, op, drafts) awaiting per-branch selection
    critiques: list[str] | None = None
    final: Candidate | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    workspaces_log: list[dict[str, Any]] = field(default_factory=list)


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
    notes: Counter[str] = field(default_factory=Counter)  # counts of noteworthy events, for the trace

    def messages(self, user: str) -> list[Message]:
        out = []
        if self.prompts.system:
            out.append(Message("system", self.prompts.system))
        out.append(Message("user", user))
        return out


async def run_graph(graph: Graph, ctx: OpContext) -> State:
    state = State()
    for step, op in enumerate(graph.ops):
        if isinstance(op, Generate):
            await _generate(step, op, state, ctx)
        elif isinstance(op, Distill):
            await _distill(step, op, state, ctx)
        elif isinstance(op, Critique):
            await _critique(step, op, state, ctx)
        elif isinstance(op, Vote):
            _vote(state)
    if state.final is None:
        state.final = state.candidates[-1]
    return state


def _candidate(c: Completion, ctx: OpContext) -> Candidate:
    return Candidate(c, None if c.finish_reason == "length" and not c.text else ctx.extract(c.text))


async def _generate(step: int, op: Generate, state: State, ctx: OpContext) -> None:
    workspaces = await _resolve_workspaces(step, op.n, state, ctx)
    prompt = op.prompt or ("draft" if workspaces is None else "refine")
    template = getattr(ctx.prompts, prompt)
    critiques = state.critiques
    completions: list[Completion]
    if workspaces is None or len(set(workspaces)) == 1 and not critiques:
        ws = workspaces[0] if workspaces else ""
        user = render(template, problem=ctx.problem, workspace=ws)
        if critiques:
            user += render(ctx.prompts.critique_block, critique=critiques[0])
        completions = await ctx.call(
            step, "draft", ctx.messages(user), op.n, max_tokens=op.max_tokens, temperature=op.temperature
        )
    else:  # per-branch prompts: n concurrent single-sample calls
        import asyncio

        async def one(j: int) -> Completion:
            user = render(template, problem=ctx.problem, workspace=workspaces[j])
            if critiques:
                user += render(ctx.prompts.critique_block, critique=critiques[j % len(critiques)])
            (c,) = await ctx.call(
                step, "draft", ctx.messages(user), 1, branch=j, max_tokens=op.max_tokens, temperature=op.temperature
            )
            return c

        completions = list(await asyncio.gather(*(one(j) for j in range(op.n))))
    state.candidates = [_candidate(c, ctx) for c in completions]
    state.critiques = None
    ws_sizes = [ctx.count_tokens(w) for w in workspaces] if workspaces else []
    state.rounds.append(
        RoundRecord(
            round=op.round,
            width=op.n,
            answers=[c.answer for c in state.candidates],
            truncated=[c.truncated for c in state.candidates],
            workspace_tokens=sum(ws_sizes) / len(ws_sizes) if ws_sizes else 0.0,
        )
    )


async def _distill(step: int, op: Distill, state: State, ctx: OpContext) -> None:
    drafts = list(state.candidates)
    state.shared_workspace, state.pending = None, None
    if op.type == "global_summary":
        cands = _render_candidates(drafts, op.include_thinking, ctx, per_candidate=None)
        user = render(ctx.prompts.summary, problem=ctx.problem, candidates=cands)
        (c,) = await ctx.call(step, "summary", ctx.messages(user))
        summary = c.text if c.text.strip() else "(the summarizer produced no summary)"
        state.shared_workspace = trim_tokens(summary, op.workspace_tokens, ctx.count_tokens)
    elif op.type == "all":
        state.shared_workspace = _extractive(drafts, op, ctx)
    elif op.type == "top_k_shared":
        chosen = await _select(step, op, drafts, ctx, n_branches=1)
        state.shared_workspace = _extractive(chosen[0], op, ctx)
    else:  # per-branch types: resolved by the next generate, which knows its width
        state.pending = (step, op, drafts)
    if state.shared_workspace is not None:
        state.workspaces_log.append({"step": step, "type": op.type, "workspace": state.shared_workspace})


async def _resolve_workspaces(step: int, n: int, state: State, ctx: OpContext) -> list[str] | None:
    if state.shared_workspace is not None:
        return [state.shared_workspace] * n
    if state.pending is None:
        return None
    dstep, op, drafts = state.pending
    chosen = await _select(dstep, op, drafts, ctx, n_branches=n)
    out = [_extractive(c, op, ctx) for c in chosen]
    state.workspaces_log.append({"step": dstep, "type": op.type, "workspaces": out})
    return out


async def _select(step: int, op: Distill, drafts: list[Candidate], ctx: OpContext, n_branches: int) -> list[list[Candidate]]:
    """k drafts per branch (one list for the shared type)."""
    k = min(op.k or len(drafts), len(drafts))
    rng = ctx.rng(step, "select")
    if op.type == "random_k":
        return [rng.sample(drafts, k) for _ in range(n_branches)]
    ranked = _rank_by_agreement(drafts)
    if op.selection == "judge":
        cands = _render_candidates(drafts, op.include_thinking, ctx, per_candidate=None)
        user = render(ctx.prompts.select, problem=ctx.problem, candidates=cands, k=k)
        replies = await ctx.call(step, "select", ctx.messages(user), n_branches)
        out = []
        for reply in replies:
            picked = [drafts[i - 1] for i in _parse_indices(ctx.extract(reply.text), len(drafts))]
            if not picked:
                ctx.notes["judge_unparsable"] += 1
            # Fill up (or replace an unparsable reply) from the agreement ranking.
            fill = [d for d in ranked if all(d is not p for p in picked)]
            out.append((picked + fill)[:k])
        return out
    if op.type == "top_k_shared":
        return [ranked[:k]]
    scores = _agreement_scores(drafts)
    out = []
    for _ in range(n_branches):  # top_k_per_sample: score-weighted draws without replacement
        pool = list(range(len(drafts)))
        picked = []
        for _ in range(k):
            weights = [scores[i] + 0.5 for i in pool]
            i = rng.choices(pool, weights=weights)[0]
            pool.remove(i)
            picked.append(drafts[i])
        out.append(picked)
    return out


def _agreement_scores(drafts: Sequence[Candidate]) -> list[float]:
    counts = Counter(normalize_answer(d.answer) for d in drafts if d.answer is not None)
    return [float(counts[normalize_answer(d.answer)]) if d.answer is not None else 0.0 for d in drafts]


def _rank_by_agreement(drafts: list[Candidate]) -> list[Candidate]:
    scores = _agreement_scores(drafts)
    order = sorted(range(len(drafts)), key=lambda i: (-scores[i], drafts[i].truncated, i))
    return [drafts[i] for i in order]


def _parse_indices(boxed: str | None, n: int) -> list[int]:
    if not boxed:
        return []
    seen: list[int] = []
    for tok in re.findall(r"\d+", boxed):
        i = int(tok)
        if 1 <= i <= n and i not in seen:
            seen.append(i)
    return seen


def _render_candidates(drafts: Sequence[Candidate], include_thinking: bool, ctx: OpContext, per_candidate: int | None) -> str:
    parts = []
    for i, d in enumerate(drafts, 1):
        body = d.body(include_thinking) or "(no solution: the output was cut off)"
        if per_candidate is not None:
            body = trim_tokens(body, per_candidate, ctx.count_tokens)
        if len(drafts) == 1 and per_candidate is not None:
            return body  # a single draft (SR's previous solution) needs no numbering
        parts.append(render(ctx.prompts.candidate, index=i, solution=body))
    return "\n\n".join(parts)


def _extractive(chosen: Sequence[Any], op: Distill, ctx: OpContext) -> str:
    """The chosen drafts verbatim, each cut to its share of the bound, the whole within it."""
    per = op.workspace_tokens // max(1, len(chosen))
    text = _render_candidates(list(chosen), op.include_thinking, ctx, per)
    return trim_tokens(text, op.workspace_tokens, ctx.count_tokens)


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


async def _critique(step: int, op: Critique, state: State, ctx: OpContext) -> None:
    import asyncio

    template = getattr(ctx.prompts, op.prompt)

    async def one(j: int, cand: Candidate) -> str:
        user = render(template, problem=ctx.problem, solution=cand.body(False) or "(no solution)")
        (c,) = await ctx.call(step, "critique", ctx.messages(user), 1, branch=j)
        return c.text

    state.critiques = list(await asyncio.gather(*(one(j, c) for j, c in enumerate(state.candidates))))


def _vote(state: State) -> None:
    groups: dict[str, list[Candidate]] = {}
    for c in state.candidates:
        key = normalize_answer(c.answer)
        if key is not None:
            groups.setdefault(key, []).append(c)
    if not groups:
        # Nobody answered: the final "candidate" is the first draft (no answer, maybe truncated).
        state.final = state.candidates[0]
    else:
        best = max(groups.values(), key=len)  # ties: the answer seen first (dict order)
        state.final = best[0]
    state.candidates = [state.final]
