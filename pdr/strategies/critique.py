"""`critique {prompt?}`: an error analysis of each current draft (one call per draft, concurrent),
shown to the next generate: branch j sees the critique of draft j (modulo their number)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdr.strategies.registry import CompileContext, Op, register_op
from pdr.strategies.state import PROMPT_NAMES, Candidate, OpContext, State, render


@register_op("critique")
@dataclass(frozen=True)
class Critique(Op):
    keys = ("prompt",)

    prompt: str = "critique"

    @classmethod
    def parse(cls, step: Mapping[str, Any], cc: CompileContext) -> Critique:
        return cls(prompt=cc.choice("prompt", step.get("prompt", "critique"), PROMPT_NAMES, "prompt"))

    async def run(self, step: int, state: State, ctx: OpContext) -> None:
        template = getattr(ctx.prompts, self.prompt)

        async def one(j: int, cand: Candidate) -> str:
            user = render(template, problem=ctx.problem, solution=cand.body(False) or "(no solution)")
            (c,) = await ctx.call(step, "critique", ctx.messages(user), 1, branch=j)
            return c.text

        state.critiques = list(await asyncio.gather(*(one(j, c) for j, c in enumerate(state.candidates))))
