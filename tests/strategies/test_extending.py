"""A new distill type and a new op, registered from this file exactly as docs/extending.md shows,
compile and run like the built-in ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from pdr.errors import ConfigError
from pdr.strategies.distill import Distill, extractive
from pdr.strategies.graph import compile_graph
from pdr.strategies.registry import DISTILL_TYPES, OPS, CompileContext, Op, register_distill, register_op
from pdr.strategies.state import Candidate, OpContext, State
from tests.strategies.scripted import ScriptedEngine, run_steps


@pytest.fixture
def example_plugins():
    """Register the examples for one test, then remove them (the registries are global)."""

    # docs/extending.md, "A new distill type": one function and its decorator.
    @register_distill("answered_k", needs_k=True, per_branch=False)
    async def answered_k(op: Distill, drafts: list[Candidate], ctx: OpContext, step: int) -> list[str]:
        """The first k drafts that reached a final answer, verbatim (fewer if fewer did)."""
        answered = [d for d in drafts if d.answer is not None]
        return [extractive(answered[: op.k] or drafts[:1], op, ctx)]

    # docs/extending.md, "A new op": one class and its decorator.
    @register_op("take_first")
    @dataclass(frozen=True)
    class TakeFirst(Op):
        """`take_first {n}`: keep only the first n drafts (no model call)."""

        keys = ("n",)  # the step keys it accepts
        ends_graph = True  # with n: 1 it leaves the final answer
        n: int

        @classmethod
        def parse(cls, step: Mapping[str, Any], cc: CompileContext) -> TakeFirst:
            return cls(n=cc.int(step, "n", minimum=1))

        def check(self, cc: CompileContext) -> TakeFirst:
            if cc.width is not None and self.n > cc.width:
                raise ConfigError(f"{cc.key('n', self.n)}={self.n}: only {cc.width} drafts to take from")
            return self

        def width(self, before: int | None) -> int:
            return self.n

        def describe(self) -> str:
            return f"take_first({self.n})"

        async def run(self, step: int, state: State, ctx: OpContext) -> None:
            state.candidates = state.candidates[: self.n]

    yield
    del DISTILL_TYPES["answered_k"], OPS["take_first"]


def test_registered_distill_type_and_op_compile_and_run(example_plugins):
    # Branches 1 and 3 give no final answer; the workspace must hold branches 0 and 2.
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: "" if branch in (1, 3) else f"A{branch}")
    steps = [
        {"op": "generate", "n": 4},
        {"op": "distill", "type": "answered_k", "k": 2},
        {"op": "generate", "n": 3},
        {"op": "take_first", "n": 1},
    ]
    out, graph = run_steps(steps, eng)
    assert graph.describe() == "generate(4) -> distill(answered_k, k=2) -> generate(3) -> take_first(1)"
    assert [(r.tag.kind, r.n) for r in eng.requests] == [("draft", 4), ("refine", 3)]
    (ws,) = {entry["workspace"] for entry in out.state.workspaces_log}
    assert "\\boxed{A0}" in ws and "\\boxed{A2}" in ws and ws.count("### Candidate") == 2
    assert len(out.state.candidates) == 1 and out.state.final is out.state.candidates[0]


def test_registered_plugins_get_the_same_compile_checks(example_plugins):
    def steps(k, take):
        return [
            {"op": "generate", "n": 2},
            {"op": "distill", "type": "answered_k", "k": k},
            {"op": "generate", "n": 2},
            {"op": "take_first", "n": take},
        ]

    from pdr.config.strategy import StrategyConfig

    with pytest.raises(ConfigError, match="k=3 is larger than the 2 drafts"):
        compile_graph(StrategyConfig(steps=steps(3, 1)))
    with pytest.raises(ConfigError, match=r"strategy.steps\[3\].n=3: only 2 drafts"):
        compile_graph(StrategyConfig(steps=[*steps(2, 2)[:3], {"op": "take_first", "n": 3}, {"op": "vote"}]))
    with pytest.raises(ConfigError, match="the last step generates 2 drafts"):
        compile_graph(StrategyConfig(steps=steps(2, 2)))
    with pytest.raises(ConfigError, match="did you mean 'answered_k'"):
        compile_graph(
            StrategyConfig(
                steps=[
                    {"op": "generate", "n": 2},
                    {"op": "distill", "type": "answerd_k", "k": 1},
                    {"op": "generate", "n": 1},
                ]
            )
        )
    with pytest.raises(ConfigError, match="unknown key 'm' for op take_first"):
        compile_graph(StrategyConfig(steps=[{"op": "generate", "n": 2}, {"op": "take_first", "m": 1}]))
