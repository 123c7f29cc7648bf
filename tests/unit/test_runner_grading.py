"""The run's grading and bookkeeping on the event loop (pdr.evaluation.orchestrate, pdr.runner): the
inline fast paths, one math-verify check per distinct answer in flight, failures kept per answer,
and finished problem-samples released as soon as their rows are handed to the writer."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pdr.evaluation
from pdr.config.schema import GradingConfig
from pdr.evaluation import Grade, Grader
from pdr.evaluation.orchestrate import Grading, may_need_math_verify
from tests.conftest import compose_object

CFG = GradingConfig(timeout_s=5.0, workers=1)


def test_fast_grade_is_grade_many_when_it_decides():
    """fast_grade returns exactly grade_many's Grade, or None for what only math-verify decides."""
    pairs = [
        ("\\boxed{42}", "42"),
        ("\\boxed{042}", "42"),
        ("\\boxed{41}", "42"),
        ("\\boxed{1,000}", "1000"),
        ("\\boxed{\\dfrac{1}{2}}", "\\frac12"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("no final answer here", "42"),
        ("\\boxed{" + "9" * 3000 + "x}", "42"),  # too long
        ("\\boxed{x = 42}", "42"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}"),
        ("\\boxed{(1, 3)}", "(1,2)"),
    ]
    with Grader(workers=1) as g:
        fast = [g.fast_grade(r, gold) for r, gold in pairs]
        full = g.grade_many(pairs)
        for f, m in zip(fast, full, strict=True):
            assert f is None or f == m
            assert (f is None) == (m.method == "math_verify")
        assert sum(f is not None for f in fast) == 8
        # A verdict math-verify has given is then known inline.
        assert g.fast_grade("\\boxed{x = 42}", "42") == full[8]


def test_inline_answers_never_reach_a_thread_and_identical_checks_are_shared(monkeypatch):
    calls: list[list[tuple[str, str]]] = []

    def grade_many(pairs, **kw):  # noqa: ANN001
        calls.append(list(pairs))
        time.sleep(0.05)  # still running when the second problem-sample asks for the same check
        return [Grade(True, "correct", "x = 42", None, "math_verify") for _ in pairs]

    monkeypatch.setattr(pdr.evaluation, "grade_many", grade_many)

    async def main() -> tuple[dict, dict]:
        grading = Grading(CFG)
        try:
            return await asyncio.gather(
                grading.grade("p1", "42", ["41", "42", "x = 42"]), grading.grade("p1", "42", ["x = 42"])
            )
        finally:
            grading.close()

    first, second = asyncio.run(main())
    assert calls == [[("\\boxed{x = 42}", "42")]]
    assert first["42"].correct and not first["41"].correct
    assert first["42"].method != "math_verify" and first["41"].method == "number"
    assert first["x = 42"] == second["x = 42"] and first["x = 42"].method == "math_verify"


def test_a_grading_failure_marks_only_its_answers_error_never_wrong(monkeypatch):
    def grade_many(pairs, **kw):  # noqa: ANN001
        raise RuntimeError("grader exploded")

    monkeypatch.setattr(pdr.evaluation, "grade_many", grade_many)

    async def main() -> dict:
        grading = Grading(CFG)
        try:
            return await grading.grade("p1", "42", ["42", "x = 42"])
        finally:
            grading.close()

    grades = asyncio.run(main())
    assert grades["42"].correct
    failed = grades["x = 42"]
    assert isinstance(failed, Grade) and "grader exploded" in failed.error
    assert failed.correct is False and failed.status == "error"


def test_a_final_answer_the_grader_could_not_decide_is_an_error_row():
    """Silently wrong accuracy is the failure to prevent: an undecided grade is an error row
    (re-graded by resume), never counted wrong."""
    from pdr.data import Problem
    from pdr.engines.base import Completion
    from pdr.executor import Outcome, outcome_row
    from pdr.strategies.state import Candidate, State

    final = Candidate(Completion(text="\\boxed{x = 42}", completion_tokens=5), "x = 42")
    outcome = Outcome("p1", 0, State(candidates=[final], final=final), [], 0.1)
    bad = Grade(False, "error", "x = 42", error="worker_unavailable: cannot start")
    row = outcome_row(outcome, Problem("p1", "What?", "42", "test"), {"x = 42": bad}, bad, "slowest")
    assert row["status"] == "error" and row["correct"] is False
    assert row["error_type"] == "GradingError" and "worker_unavailable" in row["error"]


def test_grading_workers_are_warmed_up_only_for_non_integer_gold_answers():
    assert not may_need_math_verify(["42", " -7 ", "+3"])
    assert may_need_math_verify(["42", "\\frac{1}{2}"])
    assert not may_need_math_verify([])


def test_finished_problem_samples_are_not_kept_until_the_end(tmp_path, monkeypatch):
    """Problem-samples finishing one after another (one call at a time): when a row is handed to
    the writer, the earlier rows' traces are gone; memory follows what is in flight, not the run."""
    import pdr.runner
    from pdr.results import ResultsWriter
    from pdr.runner import run

    # Every traces.jsonl entry the runner builds, held weakly. (Not a gc.get_objects() scan: that
    # list also holds a tuple another thread is still building with tuple(genexpr), as pebble's
    # pool manager does, and CPython then fails that thread's resize of it with "SystemError:
    # Objects/tupleobject.c: bad argument to internal function".)
    class Trace(dict):  # a dict that can be weakly referenced
        pass

    made: list[weakref.ref] = []
    real_trace = pdr.runner.outcome_trace

    def outcome_trace(*args, **kwargs):  # noqa: ANN002, ANN003
        trace = Trace(real_trace(*args, **kwargs))
        made.append(weakref.ref(trace))
        return trace

    monkeypatch.setattr(pdr.runner, "outcome_trace", outcome_trace)

    def alive_traces() -> int:
        gc.collect()  # count what is still referenced, not garbage the collector has not reached yet
        return sum(1 for ref in made if ref() is not None)

    seen: list[int] = []
    real = ResultsWriter.write

    def write(self, row, trace, attempt=None, before=None):  # noqa: ANN001
        real(self, row, trace, attempt, before)
        self.flush()  # written now: only the runner could still hold earlier traces
        seen.append(alive_traces())

    monkeypatch.setattr(ResultsWriter, "write", write)
    cfg = compose_object(
        [
            "+experiment=quickstart",
            "progress=false",
            "tracking.enabled=false",
            "engine.max_concurrency=1",
            "engine.latency_base_ms=1",
        ]
    )
    result = run(cfg, tmp_path)
    assert len(result.rows) == 48 and len(seen) > 30
    assert max(seen) <= 6, seen  # the one being handed over (+ any finished meanwhile); not 48
