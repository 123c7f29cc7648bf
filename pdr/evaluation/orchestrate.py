"""Grading a run's answers on its asyncio event loop, without ever blocking it or crashing the run.

`Grading` decides what the inline fast paths can (microseconds) on the loop and sends the rest to
math-verify (`grade_many`) on long-lived grading threads, sharing identical checks in flight;
`start_warm_up` starts the grading workers early when the gold answers suggest they will be needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

# Module attributes looked up at call time (`evaluation.grade_many`, `grading.fast_grade`), not
# names bound here: tests replace them.
import pdr.evaluation as evaluation
from pdr.evaluation import grading
from pdr.evaluation.grading import Grade


class GradingSettings(Protocol):
    """What grading reads of the config (pdr.config.schema.GradingConfig)."""

    timeout_s: float  # hard wall-clock limit per math-verify check
    workers: int  # grading worker processes


log = logging.getLogger(__name__)

T = TypeVar("T")

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def may_need_math_verify(golds: Iterable[str]) -> bool:
    """Whether grading against the gold answers `golds` is likely to need math-verify (and so its
    worker processes): yes unless every gold answer is an integer (AIME-style), where the inline
    fast paths decide any numeric answer and a worker, ~0.5 s of a core to start, would most
    likely never be used."""
    return any(not _INTEGER.fullmatch(str(g)) for g in golds)


def start_warm_up(golds: Iterable[str], workers: int) -> None:
    """Start the grading workers (~0.5 s: sympy) on a background thread if `golds` may need them,
    so that the first math-verify check does not pay for it at the end of a problem-sample."""
    if may_need_math_verify(golds):
        threading.Thread(
            target=evaluation.warm_up, args=(workers,), name="pdr-grade-warm-up", daemon=True
        ).start()


class GradingThreads:
    """Long-lived daemon threads for the math-verify part of grading, one per job in flight
    (started when none is idle, then reused).

    Daemon threads, not `asyncio.to_thread`: a check that never returns (a stuck grader) must not
    block the loop's shutdown (the default executor is joined) or the interpreter's exit, so that
    the run's stall guard can fail it cleanly instead of hanging at the very end; and a stuck job
    holds only its own thread, never another problem-sample's grading.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """`fn()` on a grading thread, as an awaitable (call from the event loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._threads += 1
            else:
                self._idle -= 1
        self._jobs.put((fn, loop, fut))
        if spawn:
            threading.Thread(target=self._work, name="pdr-grade", daemon=True).start()
        return fut

    def close(self) -> None:
        """Let the idle threads exit (a stuck one stays until its job returns, harmlessly)."""
        with self._lock:
            threads, self._threads = self._threads, 0
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, loop, fut = job
            try:
                result, exc = fn(), None
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, exc = None, e
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            with self._lock:
                self._idle += 1


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # cancelled meanwhile (the run is ending)
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class Grading:
    """The grading of one run, on its event loop: never raises (a grading failure grades the
    answers it concerns `error`, with the reason, never `wrong`), never blocks the loop.

    What the inline fast paths decide (no answer, string or number equality, a verdict already
    known: microseconds) is graded on the loop; only the rest goes to math-verify, on a grading
    thread, and each distinct (answer, gold) check only once at a time: the samples of a problem
    that reach the same answer together share one check (one in three MATH-500 checks otherwise).
    Event-loop thread only; `close()` at the end of the run.
    """

    def __init__(self, cfg: GradingSettings) -> None:
        self.cfg = cfg
        self.threads = GradingThreads()
        self._checking: dict[tuple[str, str], asyncio.Future[Grade]] = {}  # (response, gold) -> its Grade

    async def grade(self, problem_id: str, gold: str, answers: Sequence[str]) -> dict[str, Grade]:
        """The Grade of each of the distinct extracted `answers` against `gold`, by answer.
        `problem_id` names the problem in the log line of a failed check."""
        grades: dict[str, Grade] = {}
        waiting: dict[str, asyncio.Future[Grade]] = {}
        new: list[tuple[str, str]] = []
        for a in answers:
            response = f"\\boxed{{{a}}}"
            g = grading.fast_grade(response, gold)
            if g is not None:
                grades[a] = g
                continue
            key = (response, gold)
            fut = self._checking.get(key)
            if fut is None:
                fut = self._checking[key] = asyncio.get_running_loop().create_future()
                new.append(key)
            waiting[a] = fut
        if new:
            cfg = self.cfg
            job = self.threads.run(
                lambda: evaluation.grade_many(new, timeout_s=cfg.timeout_s, workers=cfg.workers)
            )
            job.add_done_callback(partial(self._checked, new, problem_id))
        for a, fut in waiting.items():
            grades[a] = await asyncio.shield(fut)  # one waiter's cancellation is not the others'
        return grades

    def _checked(self, keys: list[tuple[str, str]], problem_id: str, job: asyncio.Future[Any]) -> None:
        """Hand a finished `grade_many` job's Grades to everyone waiting for them (loop thread)."""
        try:
            results = list(job.result())
            if len(results) != len(keys):
                raise RuntimeError(f"grade_many returned {len(results)} grades for {len(keys)} answers")
        except BaseException as exc:  # noqa: BLE001 - grading must never crash a run (design §6)
            log.warning("grading failed for problem %s: %s: %s", problem_id, type(exc).__name__, exc)
            # Counted wrong, with the reason recorded (what the grader itself does on a failure).
            results = [Grade(False, "error", None, error=f"{type(exc).__name__}: {exc}"[:500])] * len(keys)
        for key, grade in zip(keys, results, strict=True):
            fut = self._checking.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(grade)

    def close(self) -> None:
        self.threads.close()


__all__ = ["Grading", "GradingThreads", "may_need_math_verify", "start_warm_up"]
