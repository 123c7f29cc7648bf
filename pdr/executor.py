"""The executor: runs a compiled strategy graph for every (problem, sample), all at once.

asyncio throughout: every problem-sample is a task, every parallel round a fork sent as one engine
request with n; the engine's limiter bounds what is in flight (`engine.max_concurrency`), so a
server's batch stays full. Each call's usage is recorded in a ledger from which the budgets are
computed (definitions in `budgets()`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pdr.engines.base import Completion, Engine, GenRequest, Message, RequestTag, SamplingParams
from pdr.errors import EngineError
from pdr.seeding import derive_seed
from pdr.strategies.graph import Graph
from pdr.strategies.state import OpContext, State, run_graph

if TYPE_CHECKING:
    from pdr.config.schema import PromptsConfig, SamplingConfig
    from pdr.data import Problem
    from pdr.evaluation import Grade

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    step: int
    kind: str
    branch: int
    n: int  # fork width of the request this completion came from
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    finish_reason: str
    latency_s: float
    from_cache: bool = False
    cap: int = 0  # the generation cap the call was sent with (thinking + answer buffer)


@dataclass
class Outcome:
    problem_id: str
    sample: int
    state: State | None
    calls: list[CallRecord]
    wall_s: float
    error: str | None = None
    error_type: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    simulated: bool = False  # the engine was the simulated one: not a model's result
    oracle: bool = False  # the workspaces were chosen with the gold answers (selection=oracle_*)

    @classmethod
    def failed(
        cls, problem_id: str, sample: int, exc: BaseException, *, simulated: bool = False, oracle: bool = False
    ) -> Outcome:
        """The outcome of a problem-sample that raised `exc` outside the engine-error hierarchy
        (a strategy bug on odd model output, an engine raising something unexpected)."""
        kind = type(exc).__name__
        return cls(
            problem_id, sample, None, [], 0.0, error=f"{kind}: {exc}"[:2000], error_type=kind,
            simulated=simulated, oracle=oracle,
        )  # fmt: skip

    @property
    def final_answer(self) -> str | None:
        """The extracted answer of the final output (None: an error, or no answer)."""
        if self.state is None or self.state.final is None:
            return None
        return self.state.final.answer

    def answers(self) -> list[str]:
        """Every distinct extracted answer to grade (drafts of every round and the final), sorted."""
        if self.state is None:
            return []
        found = {a for rd in self.state.rounds for a in rd.answers if a is not None}
        if self.final_answer is not None:
            found.add(self.final_answer)
        return sorted(found)


def budgets(calls: list[CallRecord], seq_branch: str = "slowest") -> dict[str, float]:
    """Token budgets of one problem-sample from its call ledger.

    - total_tokens: sum over every completion (every branch of every fork) of input + output.
    - seq_tokens: the critical path. Calls within one graph step run concurrently, steps run one
      after another, so it is the sum over steps of the slowest branch's input + output
      (`seq_branch=mean`: the mean branch instead).
    - *_output_tokens: the same with output tokens only.
    - max_context_tokens: the largest input + output of any single call.
    - cached_tokens: prompt tokens the server reported as served from its prefix cache.
    - seq_tokens_nominal: caps x calls on the critical path, the way the paper states budgets:
      the sum over steps of the largest generation cap among the step's calls (inputs and
      realised lengths play no part). total_tokens_nominal: the sum of the caps of every
      completion (each branch of a fork is a call).
    """
    by_step: dict[int, list[CallRecord]] = defaultdict(list)
    for c in calls:
        by_step[c.step].append(c)
    agg: Callable[[list[float]], float] = max if seq_branch == "slowest" else (lambda v: sum(v) / len(v))
    seq = seq_out = seq_nominal = 0.0
    for recs in by_step.values():
        seq += agg([r.prompt_tokens + r.completion_tokens for r in recs])
        seq_out += agg([r.completion_tokens for r in recs])
        seq_nominal += max(r.cap for r in recs)
    return {
        "seq_tokens": seq,
        "total_tokens": float(sum(c.prompt_tokens + c.completion_tokens for c in calls)),
        "seq_output_tokens": seq_out,
        "total_output_tokens": float(sum(c.completion_tokens for c in calls)),
        "seq_tokens_nominal": seq_nominal,
        "total_tokens_nominal": float(sum(c.cap for c in calls)),
        "prompt_tokens": float(sum(c.prompt_tokens for c in calls)),
        "completion_tokens": float(sum(c.completion_tokens for c in calls)),
        "cached_tokens": float(sum(c.cached_tokens for c in calls)),
        "max_context_tokens": float(max((c.prompt_tokens + c.completion_tokens for c in calls), default=0)),
        "engine_calls": float(len({(c.step, c.kind, c.branch if c.n == 1 else -1) for c in calls})),
    }


class Executor:
    """Runs `graph` for single (problem, sample) pairs on `engine`.

    `extract(text)` returns the final answer of a visible solution text (None: none);
    `count_tokens(text)` is the engine's token counter (bounding workspaces).
    """

    def __init__(
        self,
        engine: Engine,
        graph: Graph,
        prompts: PromptsConfig,
        sampling: SamplingConfig,
        seed: int,
        extract: Callable[[str], str | None],
        keep_trace: bool = True,
    ):
        self.engine = engine
        self.graph = graph
        self.prompts = prompts
        self.sampling = sampling
        self.seed = seed
        self.extract = extract
        self.keep_trace = keep_trace
        # The engine's own counter (the sim counts exactly; HTTP engines estimate unless they know better).
        self.count_tokens: Callable[[str], int] = engine.count_tokens

    async def run_one(self, problem: Problem, sample: int) -> Outcome:
        """Run the graph for one (problem, sample). An EngineError fails only this problem-sample
        (an Outcome with `error`); anything else propagates."""
        calls: list[CallRecord] = []
        trace: list[dict[str, Any]] = []
        started = time.perf_counter()
        base = self.sampling

        async def call(
            step: int,
            kind: str,
            messages: list[Message],
            n: int = 1,
            *,
            branch: int = 0,
            max_tokens: int | None = None,
            temperature: float | None = None,
        ) -> list[Completion]:
            # A step's own max_tokens is one cap for everything; else the run's caps (thinking +
            # answer buffer when sampling.thinking_tokens is set).
            sampling = SamplingParams(
                max_tokens=max_tokens or base.max_tokens,
                temperature=base.temperature if temperature is None else temperature,
                top_p=base.top_p,
                top_k=base.top_k,
                thinking_tokens=None if max_tokens else base.thinking_tokens,
                budget_forcing=base.budget_forcing,
                logit_processor=base.logit_processor,
            )
            request = GenRequest(
                messages=tuple(messages),
                sampling=sampling,
                n=n,
                seed=derive_seed(self.seed, problem.id, sample, step, "draft" if kind == "refine" else kind, branch),  # refine calls keep the seeds (and cache keys) they had as "draft"
                tag=RequestTag(problem.id, sample, step, kind, branch),
            )
            # Recorded timing (the MLflow trace's spans, the trace view): the call's wall-clock start
            # and its latency as pdr saw it (limiter queueing included), two clock reads a call.
            t_wall, t0 = time.time(), time.perf_counter()
            out = await self.engine.generate(request)
            latency = time.perf_counter() - t0
            for i, c in enumerate(out):
                calls.append(
                    CallRecord(
                        step,
                        kind,
                        branch + i,
                        n,
                        c.prompt_tokens,
                        c.completion_tokens,
                        c.cached_tokens,
                        c.reasoning_tokens,
                        c.finish_reason,
                        c.latency_s,
                        bool(c.meta.get("from_cache")),
                        sampling.max_tokens,
                    )
                )
            if self.keep_trace:
                trace.append(
                    {
                        "step": step,
                        "kind": kind,
                        "branch": branch,
                        "n": n,
                        "started": round(t_wall, 6),
                        "latency_s": round(latency, 6),
                        "from_cache": any(bool(c.meta.get("from_cache")) for c in out),
                        "messages": [[m.role, m.content] for m in messages],
                        "outputs": [
                            {
                                "text": c.text,
                                "reasoning": c.reasoning,
                                "finish_reason": c.finish_reason,
                                "prompt_tokens": c.prompt_tokens,
                                "completion_tokens": c.completion_tokens,
                                "cached_tokens": c.cached_tokens,
                                **({"phases": c.meta["phases"]} if "phases" in c.meta else {}),
                            }
                            for c in out
                        ],
                    }
                )
            return out

        async def gold_correct(answers: list[str | None]) -> list[bool]:
            return await grade_against_gold(answers, problem.answer)

        ctx = OpContext(
            problem=problem.problem,
            prompts=self.prompts,
            call=call,
            rng=lambda step, purpose: random.Random(
                derive_seed(self.seed, problem.id, sample, step, purpose)
            ),
            count_tokens=self.count_tokens,
            extract=self.extract,
            gold_correct=gold_correct if self.graph.oracle else None,
        )
        flags = {"simulated": bool(self.engine.simulated), "oracle": self.graph.oracle}
        try:
            state = await run_graph(self.graph, ctx)
            return Outcome(
                problem.id,
                sample,
                state,
                calls,
                time.perf_counter() - started,
                trace=trace,
                notes=dict(ctx.notes),
                **flags,
            )
        except EngineError as exc:
            # Per-problem isolation: this problem-sample is recorded with status "error"; the
            # run goes on (and fails above engine.max_error_rate).
            log.warning("problem %s sample %d failed: %s", problem.id, sample, exc)
            return Outcome(
                problem.id,
                sample,
                None,
                calls,
                time.perf_counter() - started,
                error=str(exc),
                error_type=type(exc).__name__,
                trace=trace,
                notes=dict(ctx.notes),
                **flags,
            )


async def grade_against_gold(answers: list[str | None], gold: str) -> list[bool]:
    """Whether each extracted final answer is correct against `gold` (None: not correct), by the
    run's grader: inline where its fast path decides, the rest in a thread (math-verify)."""
    from pdr.evaluation.grading import fast_grade, grade_many

    out: list[bool | None] = []
    rest: list[int] = []
    for i, a in enumerate(answers):
        if a is None:
            out.append(False)
            continue
        g = fast_grade(f"\\boxed{{{a}}}", gold)
        out.append(None if g is None else g.correct)
        if g is None:
            rest.append(i)
    if rest:
        pairs = [(f"\\boxed{{{answers[i]}}}", gold) for i in rest]
        for i, g in zip(rest, await asyncio.to_thread(grade_many, pairs), strict=True):
            out[i] = g.correct
    return [bool(v) for v in out]


def outcome_row(
    outcome: Outcome, problem: Problem, grades: dict[str, Grade], final_grade: Grade | None, seq_branch: str
) -> dict[str, Any]:
    """The results.jsonl row of one problem-sample. `grades` maps a draft's answer to its Grade;
    `final_grade` is the final answer's (None when there is no final answer)."""
    row: dict[str, Any] = {"problem_id": outcome.problem_id, "sample": outcome.sample, "gold": problem.answer}
    row["simulated"] = outcome.simulated
    row["oracle"] = outcome.oracle
    row.update(budgets(outcome.calls, seq_branch))
    row["wall_s"] = round(outcome.wall_s, 4)
    state = outcome.state
    if state is None:
        row.update(
            answer=None,
            correct=False,
            answer_correct=None,
            status="error",
            error=outcome.error,
            error_type=outcome.error_type,
            rounds=[],
        )
        return row
    final = state.final
    assert final is not None
    # The status says how the final output ended, one meaning each: `truncated` whenever it hit
    # its cap, even if a boxed answer survived in it; the grade of whatever answer was extracted
    # is `answer_correct` (None: no answer), and `correct` (what accuracy counts) follows it.
    answer_correct: bool | None = None
    if final.answer is not None:
        assert final_grade is not None, "a final answer is always graded"
        answer_correct = bool(final_grade.correct)
    if final_grade is not None and final_grade.status == "error":
        # The grader could not decide (its workers could not start, a grading job failed). Never
        # counted as wrong: the row is an error row, re-graded by resume=true.
        status = "error"
        row.update(error=f"grading failed: {final_grade.error}", error_type="GradingError")
    elif final.truncated:
        status = "truncated"
    elif final.answer is None:
        status = "no_answer"
    else:
        assert final_grade is not None
        status = final_grade.status if final_grade.status in ("correct", "wrong", "no_answer") else "wrong"
    row.update(
        answer=short_answer(final.answer),
        correct=bool(answer_correct),
        answer_correct=answer_correct,
        status=status,
        finish_reason=final.completion.finish_reason,
    )
    if final_grade is not None and final_grade.error:
        row["grade_error"] = final_grade.error
    rounds = []
    for rd in state.rounds:
        corr = [bool(grades[a].correct) if a is not None and a in grades else False for a in rd.answers]
        rounds.append(
            {
                "round": rd.round,
                "width": rd.width,
                "answers": [short_answer(a) for a in rd.answers],
                "correct": corr,
                "draft_accuracy": sum(corr) / len(corr) if corr else None,
                "truncated": sum(rd.truncated),
                "workspace_tokens": rd.workspace_tokens,
            }
        )
    row["rounds"] = rounds
    if outcome.notes:
        row["notes"] = outcome.notes
    return row


def outcome_trace(outcome: Outcome, problem: Problem, row: dict[str, Any]) -> dict[str, Any]:
    """The traces.jsonl entry of one problem-sample: its calls and workspaces, with its row's verdict."""
    return {
        "problem_id": problem.id,
        "sample": outcome.sample,
        "problem": problem.problem,
        "gold": problem.answer,
        "status": row["status"],
        "answer": row.get("answer"),
        "calls": outcome.trace,
        "workspaces": outcome.state.workspaces_log if outcome.state else [],
        "steps": outcome.state.step_times if outcome.state else [],
    }


ANSWER_CHARS = 2000  # the grader rejects longer answers anyway; keep rows small (full text: traces)


def short_answer(answer: str | None) -> str | None:
    """An answer as rows keep it: cut to ANSWER_CHARS, saying how much was cut."""
    if answer is None or len(answer) <= ANSWER_CHARS:
        return answer
    return answer[:ANSWER_CHARS] + f"...[{len(answer) - ANSWER_CHARS} more characters]"
