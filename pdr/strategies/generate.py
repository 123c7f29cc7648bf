"""`generate {n, prompt?, max_tokens?, temperature?}`: fork n drafts.

Without a workspace the drafts see only the problem (prompt `draft`); with one, the problem plus the
workspace (prompt `refine`), and after a critique step each branch also sees its draft's critique.
Branches whose prompts are identical are one engine request with n (one prefill, n branches);
otherwise each branch is its own single-sample request, all sent concurrently. Requests are tagged
kind="draft" for first drafts and kind="refine" once they build on a workspace or critiques.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdr.engines.base import Completion
from pdr.strategies.registry import CompileContext, Op, register_op
from pdr.strategies.state import PROMPT_NAMES, OpContext, RoundRecord, State, render


@register_op("generate")
@dataclass(frozen=True)
class Generate(Op):
    keys = ("n", "prompt", "max_tokens", "temperature")
    needs_drafts = False
    ends_graph = True
    width_from = "n"

    n: int
    prompt: str | None = None  # None: "draft" without a workspace, "refine" with one
    max_tokens: int | None = None
    temperature: float | None = None
    round: int = 0  # 1-based index among the generate steps (filled by the compiler)

    @classmethod
    def parse(cls, step: Mapping[str, Any], cc: CompileContext) -> Generate:
        prompt = step.get("prompt")
        if prompt is not None:
            cc.choice("prompt", prompt, PROMPT_NAMES, "prompt")
        max_tokens = step.get("max_tokens")
        return cls(
            n=cc.int(step, "n", minimum=1),
            prompt=prompt,
            max_tokens=None if max_tokens is None else cc.int(step, "max_tokens", minimum=1),
            temperature=step.get("temperature"),
        )

    def width(self, before: int | None) -> int:
        return self.n

    def describe(self) -> str:
        return f"generate({self.n})"

    async def run(self, step: int, state: State, ctx: OpContext) -> None:
        workspaces, critiques = state.workspaces, state.critiques
        # Per-branch workspaces come n of them (the distill learnt this generate's width at compile
        # time); a shared one serves all. A workspace stays until the next distill, so a later
        # generate of another width reuses per-branch workspaces round-robin.
        per_branch = (
            [None] * self.n
            if workspaces is None
            else [workspaces[j % len(workspaces)] for j in range(self.n)]
        )
        template = getattr(ctx.prompts, self.prompt or ("draft" if workspaces is None else "refine"))
        users = []
        for j, ws in enumerate(per_branch):
            user = render(template, problem=ctx.problem, workspace=ws or "")
            if critiques:
                user += render(ctx.prompts.critique_block, critique=critiques[j % len(critiques)])
            users.append(user)
        # A first draft sees only the problem; anything that builds on earlier drafts is a refine.
        kind = "refine" if workspaces is not None or critiques else "draft"
        completions: list[Completion]
        if len(set(users)) == 1:  # one prompt: one fork of n
            completions = await ctx.call(
                step,
                kind,
                ctx.messages(users[0]),
                self.n,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        else:

            async def one(j: int) -> Completion:
                (c,) = await ctx.call(
                    step,
                    kind,
                    ctx.messages(users[j]),
                    1,
                    branch=j,
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                )
                return c

            completions = list(await asyncio.gather(*(one(j) for j in range(self.n))))
        state.candidates = [ctx.candidate(c) for c in completions]
        state.critiques = None
        sizes = [ctx.count_tokens(ws) for ws in per_branch if ws is not None]
        state.rounds.append(
            RoundRecord(
                round=self.round,
                width=self.n,
                answers=[c.answer for c in state.candidates],
                truncated=[c.truncated for c in state.candidates],
                workspace_tokens=sum(sizes) / len(sizes) if sizes else 0.0,
            )
        )
