"""`vote {}`: majority vote over the current drafts' final answers -> the final answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdr.evaluation.extract import normalize_answer
from pdr.strategies.registry import CompileContext, Op, register_op
from pdr.strategies.state import OpContext, State


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
        state.final = state.candidates[majority_index([c.answer for c in state.candidates])]
        state.candidates = [state.final]


def majority_index(answers: Sequence[str | None]) -> int:
    """The index of the draft the vote makes final: the first draft of the largest group of equal
    normalized answers (ties: the answer seen first); the first draft when nobody answered (no
    answer, maybe truncated). Also how pdr.export finds a finished run's vote winner."""
    groups: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        key = normalize_answer(answer)
        if key is not None:
            groups.setdefault(key, []).append(i)
    return max(groups.values(), key=len)[0] if groups else 0
