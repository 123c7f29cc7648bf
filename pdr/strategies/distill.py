"""`distill {type, k?, selection?, workspace_tokens?, include_thinking?}`: build the next workspace
from the current drafts, from scratch (never appended), within `workspace_tokens` (kappa).

The distill types (the table `registry.DISTILL_TYPES`; one decorated function each, below):
- global_summary (shared): one model call summarises every draft (prompt `summary`).
- top_k_shared (shared, k): the k best drafts verbatim, one workspace for every branch.
- top_k_per_sample (per branch, k): k drafts per branch of the next generate, drawn by score.
- random_k (per branch, k): k drafts per branch drawn uniformly.
- previous_solution (shared): every current draft verbatim; with one draft (SR) that is the
  previous solution, shown unnumbered. (Called `all` before; that name now errors.)

Top-k selection (the paper leaves the rule open; `selection`):
- agreement (default): a draft's score is the number of drafts whose final answer matches its
  own (answerless drafts score 0, truncated ones rank last). top_k_shared keeps the k best for
  every branch; top_k_per_sample draws k per branch without replacement with probability
  proportional to score + 0.5, so branches see different but well-supported workspaces.
- judge: the model ranks the numbered drafts (prompt `select`) and its boxed list of numbers is
  used; top_k_shared makes one judge call, top_k_per_sample one per branch (a single fork of
  `branches`). An unparsable reply falls back to the agreement ranking (counted in the trace).
- oracle_correct / oracle_incorrect (the paper's verification-ability analysis, Oracle-PDR):
  every distill type that chooses among drafts (top-k, random-k, and global_summary, which then
  summarises only those) sees only the drafts whose final answer the grader finds correct /
  incorrect against the gold answer (answerless drafts count as incorrect), ranked among
  themselves by agreement. A workspace may then hold fewer than k drafts. Fallback when no
  draft of the wanted kind exists: all drafts, as `agreement` would choose (counted in the
  row's notes as `oracle_fallback`). Rows of such runs carry `oracle: true`.

k, the widths and kappa are checked here, at compile time, and nowhere else.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pdr.errors import ConfigError
from pdr.evaluation.extract import normalize_answer
from pdr.strategies.registry import (
    DISTILL_TYPES,
    RENAMED_DISTILL_TYPES,
    CompileContext,
    DistillType,
    Op,
    lookup,
    register_distill,
    register_op,
)
from pdr.strategies.state import Candidate, OpContext, State, render, trim_tokens, warn_once

SELECTION_RULES = ("agreement", "judge", "oracle_correct", "oracle_incorrect")
ORACLE_RULES = ("oracle_correct", "oracle_incorrect")
DEFAULT_K = 2  # k of a type that keeps k drafts when strategy.k is null
# An extractive workspace gives each of its candidates workspace_tokens / (their number) tokens;
# below this a candidate cannot hold a worked solution and its final answer.
MIN_TOKENS_PER_CANDIDATE = 128


@register_op("distill")
@dataclass(frozen=True)
class Distill(Op):
    keys = ("type", "k", "selection", "workspace_tokens", "include_thinking", "distill_input_tokens")

    type: str
    k: int | None = None
    selection: str = "agreement"
    workspace_tokens: int = 4096
    include_thinking: bool = False
    # The bound on what a summarizer / judge call reads: every draft's text is cut to an equal
    # share of it (None: drafts in full, as long as the generation cap allows).
    distill_input_tokens: int | None = None
    # Workspaces to build: the width of the next generate for a per-branch type (set at compile
    # time by `check`), 1 for a shared one.
    branches: int = 1

    @property
    def spec(self) -> DistillType:
        return DISTILL_TYPES[self.type]

    @classmethod
    def parse(cls, step: Mapping[str, Any], cc: CompileContext) -> Distill:
        spec: DistillType = lookup(
            DISTILL_TYPES,
            step.get("type"),
            cc.key("type", step.get("type")),
            "distill type",
            renamed=RENAMED_DISTILL_TYPES,
        )
        k = None
        if spec.needs_k:
            # null (strategy.k's default) means DEFAULT_K for the types that keep k drafts.
            k = DEFAULT_K if step.get("k") is None else cc.int(step, "k", minimum=1)
        elif step.get("k") is not None:  # a setting that does nothing: said once per process
            warn_once(
                f"{cc.key('k', step.get('k'))}={step.get('k')} does nothing with distill type {spec.name} "
                "(it keeps no k drafts); drop it"
            )
        selection = step.get("selection", cc.default("selection", "agreement"))
        cc.choice("selection", selection, SELECTION_RULES, "selection rule")
        ws = cc.int(
            {"workspace_tokens": step.get("workspace_tokens", cc.default("workspace_tokens", 4096))},
            "workspace_tokens",
            minimum=1,
        )
        dit = step.get("distill_input_tokens", cc.default("distill_input_tokens", None))
        if dit is not None:
            dit = cc.int({"distill_input_tokens": dit}, "distill_input_tokens", minimum=MIN_TOKENS_PER_CANDIDATE)
        return cls(
            type=spec.name,
            k=k,
            selection=selection,
            workspace_tokens=ws,
            include_thinking=bool(step.get("include_thinking", cc.default("include_thinking", False))),
            distill_input_tokens=dit,
        )

    def check(self, cc: CompileContext) -> Distill:
        assert cc.width is not None  # the compiler puts a generate first (needs_drafts)
        if cc.next_width is None:
            raise ConfigError(
                f"{cc.where}: no generate step follows this distill, so its workspace is never read "
                "(add a generate after it, or remove it)"
            )
        k_key = cc.key("k", self.k)
        ws_key = cc.key("workspace_tokens", self.workspace_tokens)
        if self.k is not None and self.k > cc.width:
            widths = cc.knob(cc.width_key or "")
            if isinstance(widths, list) and widths:
                raise ConfigError(
                    f"{k_key}={self.k}: must be <= the smallest width {min(widths)} of {cc.width_key}="
                    f"{list(widths)} (lower {k_key} or raise the widths)"
                )
            raise ConfigError(
                f"{cc.where}: k={self.k} is larger than the {cc.width} drafts of the round before it "
                f"(lower {k_key} or raise {cc.width_key})"
            )
        # kappa is shared by the candidates an extractive workspace shows (k, or every draft).
        ws, shown = self.workspace_tokens, (self.k or cc.width) if self.spec.extractive else 1
        if ws // shown < MIN_TOKENS_PER_CANDIDATE:
            per = f"({ws // shown} tokens per candidate, need >= {MIN_TOKENS_PER_CANDIDATE})"
            if shown == 1:
                raise ConfigError(
                    f"{ws_key}={ws}: must be >= {MIN_TOKENS_PER_CANDIDATE} "
                    "(the workspace must hold at least one worked solution)"
                )
            if self.k is not None:
                raise ConfigError(
                    f"{ws_key}={ws}: too small for {k_key}={self.k} {per}: raise {ws_key} to >= "
                    f"{self.k * MIN_TOKENS_PER_CANDIDATE} or lower {k_key}"
                )
            raise ConfigError(
                f"{ws_key}={ws}: too small for the {cc.width} drafts before {cc.where} {per}: raise "
                f"{ws_key} to >= {cc.width * MIN_TOKENS_PER_CANDIDATE} or keep fewer drafts"
            )
        return replace(self, branches=cc.next_width if self.spec.per_branch else 1)

    @property
    def oracle(self) -> bool:
        """Whether the workspace is chosen with the gold answers (an oracle selection rule on a
        type that chooses among drafts)."""
        return self.selection in ORACLE_RULES and self.type != "previous_solution"

    def describe(self) -> str:
        extra = f", {self.selection}" if self.oracle else ""
        return f"distill({self.type}{'' if self.k is None else f', k={self.k}'}{extra})"

    async def run(self, step: int, state: State, ctx: OpContext) -> None:
        workspaces = await self.spec.build(self, list(state.candidates), ctx, step)
        want = self.branches if self.spec.per_branch else 1
        if len(workspaces) != want:
            raise RuntimeError(
                f"distill type {self.type} built {len(workspaces)} workspaces, expected {want}"
            )
        state.workspaces = workspaces
        if self.spec.per_branch:
            state.workspaces_log.append({"step": step, "type": self.type, "workspaces": workspaces})
        else:
            state.workspaces_log.append({"step": step, "type": self.type, "workspace": workspaces[0]})


# ---- the distill types ---------------------------------------------------------------------------


@register_distill("global_summary", needs_k=False, per_branch=False, extractive=False)
async def global_summary(op: Distill, drafts: list[Candidate], ctx: OpContext, step: int) -> list[str]:
    drafts = await oracle_pool(op, drafts, ctx)
    cands = render_candidates(drafts, op.include_thinking, ctx, per_candidate=input_share(op, drafts))
    user = render(ctx.prompts.summary, problem=ctx.problem, candidates=cands, kappa=op.workspace_tokens)
    (c,) = await ctx.call(step, "summary", ctx.messages(user))
    summary = c.text if c.text.strip() else "(the summarizer produced no summary)"
    return [trim_tokens(summary, op.workspace_tokens, ctx.count_tokens)]


@register_distill("top_k_shared", needs_k=True, per_branch=False)
async def top_k_shared(op: Distill, drafts: list[Candidate], ctx: OpContext, step: int) -> list[str]:
    drafts = await oracle_pool(op, drafts, ctx)
    if op.selection == "judge":
        (chosen,) = await judge(step, op, drafts, ctx, n_branches=1)
    else:
        chosen = rank_by_agreement(drafts)[: _k(op, drafts)]
    return [extractive(chosen, op, ctx)]


@register_distill("top_k_per_sample", needs_k=True, per_branch=True)
async def top_k_per_sample(op: Distill, drafts: list[Candidate], ctx: OpContext, step: int) -> list[str]:
    drafts = await oracle_pool(op, drafts, ctx)
    if op.selection == "judge":
        chosen = await judge(step, op, drafts, ctx, n_branches=op.branches)
    else:  # score-weighted draws without replacement, per branch
        rng, k, scores = ctx.rng(step, "select"), _k(op, drafts), agreement_scores(drafts)
        chosen = []
        for _ in range(op.branches):
            pool = list(range(len(drafts)))
            picked = []
            for _ in range(k):
                i = rng.choices(pool, weights=[scores[i] + 0.5 for i in pool])[0]
                pool.remove(i)
                picked.append(drafts[i])
            chosen.append(picked)
    return [extractive(c, op, ctx) for c in chosen]


@register_distill("random_k", needs_k=True, per_branch=True)
async def random_k(op: Distill, drafts: list[Candidate], ctx: OpContext, step: int) -> list[str]:
    drafts = await oracle_pool(op, drafts, ctx)
    rng = ctx.rng(step, "select")
    return [extractive(rng.sample(drafts, _k(op, drafts)), op, ctx) for _ in range(op.branches)]


@register_distill("previous_solution", needs_k=False, per_branch=False)
async def previous_solution(op: Distill, drafts: list[Candidate], ctx: OpContext, step: int) -> list[str]:
    return [extractive(drafts, op, ctx)]


# ---- helpers -------------------------------------------------------------------------------------


async def oracle_pool(op: Distill, drafts: list[Candidate], ctx: OpContext) -> list[Candidate]:
    """The drafts a distill chooses from: all of them, or with an oracle selection rule those the
    grader finds correct (oracle_correct) / incorrect (oracle_incorrect) against the gold answer;
    all of them again when none is of the wanted kind (notes["oracle_fallback"])."""
    if op.selection not in ORACLE_RULES:
        return drafts
    if ctx.gold_correct is None:
        raise RuntimeError(f"selection {op.selection} needs the gold answers (OpContext.gold_correct)")
    flags = await ctx.gold_correct([d.answer for d in drafts])
    want = op.selection == "oracle_correct"
    pool = [d for d, ok in zip(drafts, flags, strict=True) if ok == want]
    if not pool:
        ctx.notes["oracle_fallback"] += 1
        return drafts
    return pool


def input_share(op: Distill, drafts: Sequence[Candidate]) -> int | None:
    """Each draft's share of `distill_input_tokens` in a summarizer / judge prompt (None: unbounded)."""
    if op.distill_input_tokens is None:
        return None
    return max(1, op.distill_input_tokens // max(1, len(drafts)))


def _k(op: Distill, drafts: Sequence[Candidate]) -> int:
    return min(op.k or len(drafts), len(drafts))


async def judge(
    step: int, op: Distill, drafts: list[Candidate], ctx: OpContext, n_branches: int
) -> list[list[Candidate]]:
    """k drafts for each of `n_branches` branches (in branch order), ranked by the model: one
    fork of n_branches judge calls (prompt `select`), filled up from the agreement ranking."""
    k = _k(op, drafts)
    ranked = rank_by_agreement(drafts)
    cands = render_candidates(drafts, op.include_thinking, ctx, per_candidate=input_share(op, drafts))
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


def agreement_scores(drafts: Sequence[Candidate]) -> list[float]:
    counts = Counter(normalize_answer(d.answer) for d in drafts if d.answer is not None)
    return [float(counts[normalize_answer(d.answer)]) if d.answer is not None else 0.0 for d in drafts]


def rank_by_agreement(drafts: list[Candidate]) -> list[Candidate]:
    scores = agreement_scores(drafts)
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


def render_candidates(
    drafts: Sequence[Candidate], include_thinking: bool, ctx: OpContext, per_candidate: int | None
) -> str:
    """The drafts as numbered candidates (prompt `candidate`), each cut to `per_candidate` tokens
    if given; a single draft cut that way is shown unnumbered (SR's previous solution)."""
    parts = []
    for i, d in enumerate(drafts, 1):
        body = d.body(include_thinking) or "(no solution: the output was cut off)"
        if per_candidate is not None:
            body = trim_tokens(body, per_candidate, ctx.count_tokens)
        if len(drafts) == 1 and per_candidate is not None:
            return body
        parts.append(render(ctx.prompts.candidate, index=i, solution=body))
    return "\n\n".join(parts)


def extractive(chosen: Sequence[Candidate], op: Distill, ctx: OpContext) -> str:
    """The chosen drafts verbatim, each cut to its share of the bound, the whole within it."""
    per = op.workspace_tokens // max(1, len(chosen))
    text = render_candidates(list(chosen), op.include_thinking, ctx, per)
    return trim_tokens(text, op.workspace_tokens, ctx.count_tokens)
