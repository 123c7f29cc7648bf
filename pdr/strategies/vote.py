"""`vote {}`: majority vote over the current drafts' final answers -> the final answer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdr.evaluation.extract import normalize_answer
from pdr.strategies.registry import CompileContext, Op, register_op
from pdr.strategies.state import Candidate, OpContext, State


@register_op("vote")
@dataclass(frozen=True)
class Vote(Op):
    ends_graph = True

    @classmethod
    def parse(cls, step: Mapping[str, Any], cc: CompileContext) -> Vote:
        return cls()

    def width(self, before: int | None) -> int:
        return 1

    async def run(self, step: int, state: State, ctx: OpContext) -> None:
        groups: dict[str, list[Candidate]] = {}
        for c in state.candidates:
            key = normalize_answer(c.answer)
            if key is not None:
                groups.setdefault(key, []).append(c)
        if not groups:
            # Nobody answered: the final "candidate" is the first draft (no answer, maybe truncated).
            state.final = state.candidates[0]
        else:
            state.final = max(groups.values(), key=len)[0]  # ties: the answer seen first (dict order)
        state.candidates = [state.final]
