"""A scripted engine and helpers shared by the strategy tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pdr.engines.base import BaseEngine, Completion, GenRequest
from pdr.engines.sim import count_words
from pdr.evaluation import extract_answer
from pdr.executor import Executor
from pdr.strategies.graph import compile_graph
from tests.conftest import compose_object


@dataclass(frozen=True)
class P:
    id: str
    problem: str
    answer: str
    difficulty: float | None = 0.5


PROBLEM = P("p1", "Compute the number of lattice points on the circle of radius five.", "12")


class ScriptedEngine(BaseEngine):
    """Answers every branch with a fixed-size completion whose answer is chosen by a function of
    (kind, branch). Records every request."""

    name = "scripted"

    def __init__(self, answer_for=lambda kind, branch, prompt: "12", think=50, words=20, max_concurrency=64):
        super().__init__(max_concurrency)
        self.answer_for = answer_for
        self.think = think
        self.words = words
        self.requests: list[GenRequest] = []

    def count_tokens(self, text: str) -> int:
        return count_words(text)

    async def _generate(self, request: GenRequest) -> list[Completion]:
        self.requests.append(request)
        prompt = "\n".join(m.content for m in request.messages)
        out = []
        for i in range(request.n):
            branch = request.tag.branch + i
            ans = self.answer_for(request.tag.kind, branch, prompt)
            text = " ".join(["w"] * self.words) + f" at step {request.tag.step} so \\boxed{{{ans}}}"
            out.append(
                Completion(
                    text=text,
                    reasoning="r " * self.think,
                    prompt_tokens=count_words(prompt),
                    completion_tokens=self.think + self.words + 5 + branch,
                    cached_tokens=0,
                )
            )
        return out


def run(strategy_overrides, engine, seed=0, problem=PROBLEM, sample=0):
    cfg = compose_object(strategy_overrides)
    graph = compile_graph(cfg.strategy)
    ex = Executor(engine, graph, cfg.prompts, cfg.sampling, seed, extract=extract_answer)
    return asyncio.run(ex.run_one(problem, sample)), graph, cfg


def run_steps(steps, engine, seed=0, **knobs):
    """Run a strategy given as a raw list of steps (the generic graph schema)."""
    from pdr.config.strategy import StrategyConfig

    cfg = compose_object([])
    graph = compile_graph(StrategyConfig(steps=steps, **knobs))
    ex = Executor(engine, graph, cfg.prompts, cfg.sampling, seed, extract=extract_answer)
    return asyncio.run(ex.run_one(PROBLEM, 0)), graph
