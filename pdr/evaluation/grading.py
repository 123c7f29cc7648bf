"""Grading: is the final answer of a response mathematically equal to the gold answer?

Contract (design.md §6): ``grade(response, gold) -> Grade`` with ``.correct``, ``.status``
(``"correct" | "wrong" | "no_answer"``, or ``"error"`` when the grading workers cannot start: see
Errors) and ``.extracted``; ``grade_many(pairs)`` is the batch form
(same order, same length). Neither ever raises and neither ever hangs.

Order of checks
---------------
1. **Extract** the final answer (``pdr.evaluation.extract``: strip thinking, last ``\\boxed{}`` /
   ``\\fbox{}``, else an explicit "Final Answer: X", else a closing commitment on the last line).
   Nothing → ``no_answer``, ``extracted=None``.
1b. **Prepare** both sides (``equivalence.prepare``): Unicode math as LaTeX (``√2``, ``−``, ``π``,
   ``x²``), ``\\mathrm{e}`` as ``e``, ``X \\approx Y`` as its exact part ``X``, and repeating decimals
   (``0.\\overline{27}``, ``0.1\\overline{6}``, ``0.666\\ldots``) as the fraction they denote.
2. **Fast paths, inline** (no sympy, microseconds):

   * the normalized strings are equal → correct. Normalization only drops what cannot change the
     meaning: ``$``/``\\(..\\)`` delimiters, ``\\left``/``\\right``, ``\\dfrac``/``\\tfrac`` → ``\\frac``,
     LaTeX spacing commands (``\\!``, ``\\,``...), ``\\displaystyle``, ``^{\\circ}`` → ``^\\circ``,
     a trailing period, and whitespace that does not separate two letters/digits (``2 3`` stays
     ``2 3``);
   * both sides are numbers with a base subscript (``52_8``): equal digits and base → correct, else
     wrong (math-verify ignores the base);
   * both sides are plain numbers (integers with leading zeros or thousands separators, decimals,
     ``a/b``, ``\\frac{a}{b}``, ``\\frac12``) → compared exactly as fractions: equal → correct;
     unequal and both exact (no decimal point) → wrong. A decimal that differs from the gold goes
     on to math-verify (``6.72\\times 10^{-5}`` for ``.0000672``), where a decimal must still be
     the exact value: ``0.333333`` for ``\\frac13`` is a wrong approximation (issue 13).
3. **Size bound.** An extracted answer or a gold answer longer than ``max_answer_chars`` (default
   2000) that the fast paths did not accept is wrong with ``error="too_long"``: it is never handed to
   sympy. Real answers are short; long ones are runaway output and the inputs most likely to make
   sympy crawl (a 1 MB gold once made a 478 MB worker).
4. **math-verify** (``math_verify.parse`` + ``verify``, its own signal-based timeouts disabled with
   ``parsing_timeout=None`` / ``timeout_seconds=None``). Gold and prediction are both wrapped in
   ``$...$`` when they carry no math delimiters and parsed with LaTeX + Expr extraction; ``verify``
   gets them in that order (it is asymmetric: gold first). Corrections on top of math-verify:
   its numeric comparison treats ``|a - b|`` below 1e-15 as zero, so ``1/2004!`` "equals"
   ``1/2006!`` (Math-Verify #14), and rounds decimals to 6 places; we patch its
   ``sympy_numeric_eq`` to also require a relative difference below 1e-10 (1e-12 when either side
   is a decimal: a decimal must be the value, not a rounding of it). ``a \\pm b`` is expanded to
   both roots. When math-verify still says "different", two plain expressions with the same
   variables are compared with every variable a **positive real** (the assumption a contest's
   parameters carry: ``\\sqrt{2/k}`` = ``\\sqrt{2}/\\sqrt{k}``, Math-Verify #64). Results without
   error are cached (LRU, in the calling process).

Timeout design, and why
-----------------------
math-verify's own timeout is ``signal.alarm`` (fails outside the main thread) and sympy can spin for
ever on inputs like ``9^{9^{9^9}}`` inside one C call. So the math-verify step runs in worker
processes (``pdr.evaluation.pool``: a ``pebble.ProcessPool``, started lazily on the first check
that needs it and reused); each check has a hard wall-clock limit (``timeout_s``, default 5 s) after
which its worker is killed and replaced and the check is graded wrong with ``error="timeout"``.
This works from the main thread, any other thread, inside a running asyncio loop (call ``await
asyncio.to_thread(grade_many, pairs)``), inside daemonic ``multiprocessing.Pool`` workers, and from
a script without an ``if __name__ == "__main__":`` guard, ``python -c`` or stdin: the workers never
import the caller's ``__main__`` (see ``pdr.evaluation.pool``). Each worker caps its address space
(``memory_limit_mb``, default 4096).

``workers=0`` runs math-verify in the calling thread instead: for debugging only, it has **no hard
timeout** (a pathological answer can hang the caller).

Errors
------
Internal failures never raise out of ``grade``/``grade_many``. A check that fails is graded
**wrong** with ``Grade.error`` saying why: ``"timeout"``, ``"too_long"``, ``"worker_died"`` (the
worker crashed, e.g. a C-level stack overflow), ``"exception: <Type>"`` (math-verify raised),
``"gold_unparsable"`` (math-verify found nothing in the gold answer: a data problem),
``"internal: <Type>: ..."`` (a bug in this module).

One case is not a verdict at all: when the worker processes **cannot start** (or never answer), the
status is ``"error"`` (``correct=False``, ``error="worker_unavailable: ..."``), so that a broken
grading set-up can never pass for a model's wrong answers. This is the only use of ``"error"``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pdr.errors import ConfigError
from pdr.evaluation.equivalence import check, fast_check, load_math_verify, prepare
from pdr.evaluation.extract import extract_answer
from pdr.evaluation.pool import CheckPool, PoolUnavailable

__all__ = [
    "DEFAULT_MAX_ANSWER_CHARS",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WORKERS",
    "Grade",
    "Grader",
    "configure",
    "fast_grade",
    "grade",
    "grade_many",
    "shutdown",
    "warm_up",
]

log = logging.getLogger(__name__)

Status = Literal["correct", "wrong", "no_answer", "error"]

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_WORKERS = 1  # matches `grading.workers`; one process already grades hundreds of answers/s
DEFAULT_MAX_ANSWER_CHARS = 2000
DEFAULT_CACHE_SIZE = 100_000
DEFAULT_MEMORY_LIMIT_MB = 4096


@dataclass(frozen=True, slots=True)
class Grade:
    """The verdict on one response.

    correct:   True iff status == "correct".
    status:    "correct" | "wrong" | "no_answer" (no final answer could be extracted), or
               "error" when the grading workers could not start: no verdict (module docstring).
    extracted: the extracted final answer (content of the last box, or of the final-answer
               statement), or None when status == "no_answer".
    error:     None, or why the check failed (status is then "wrong", or "error" for
               "worker_unavailable: ..."): "timeout", "too_long", "worker_died",
               "exception: <Type>", "gold_unparsable", "internal: ...". See the module docstring.
    method:    which check decided: "none" (no answer), "string" (normalized strings equal),
               "number" (exact number comparison), "math_verify", or "limit" (too_long).
    """

    correct: bool
    status: Status
    extracted: str | None
    error: str | None = None
    method: str = "none"


# --------------------------------------------------------------------------------------------------
# Grader
# --------------------------------------------------------------------------------------------------

_GRADERS: weakref.WeakSet[Grader] = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_all_graders() -> None:
    for grader in list(_GRADERS):
        grader.close()


class Grader:
    """Grades responses against gold answers; owns a pool of worker processes (see module docstring).

    Thread-safe: any number of threads may call ``grade``/``grade_many`` at once; they share the
    workers. Knobs:

    timeout_s:         hard wall-clock limit per math-verify check, seconds (default 5).
    workers:           worker processes, started lazily up to this many (default 1).
                       0 = math-verify in the calling thread, NO hard timeout (debugging only).
    max_answer_chars:  longer extracted (or gold) answers are wrong with error "too_long" unless the string
                       fast path accepts them (default 2000).
    cache_size:        error-free math-verify verdicts remembered, LRU (default 100000; 0 = off).
    memory_limit_mb:   address-space cap of each worker (default 4096; None = no cap).
    fast_paths:        False sends every answer to math-verify (to audit the fast paths).
    """

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = DEFAULT_WORKERS,
        max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        memory_limit_mb: int | None = DEFAULT_MEMORY_LIMIT_MB,
        fast_paths: bool = True,
    ):
        _check_timeout(timeout_s)
        _check_workers(workers)
        if max_answer_chars < 1:
            raise ConfigError(f"max_answer_chars={max_answer_chars}: must be >= 1")
        if cache_size < 0:
            raise ConfigError(f"cache_size={cache_size}: must be >= 0 (0 = no cache)")
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.max_answer_chars = int(max_answer_chars)
        self.cache_size = int(cache_size)
        self.memory_limit_mb = memory_limit_mb
        self.fast_paths = fast_paths
        self._lock = threading.Lock()
        self._pool: CheckPool | None = None
        self._pool_pid = os.getpid()
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        _GRADERS.add(self)

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes. Safe to call twice; a later call to grade() restarts them."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def set_workers(self, workers: int) -> None:
        """Change the pool size (the current workers are stopped; new ones start when needed)."""
        _check_workers(workers)
        with self._lock:
            self.workers = int(workers)
            pool = self._pool
            self._pool = None
        if pool is not None:
            pool.close()  # a new pool of the new size starts on the next check

    def warm_up(self) -> None:
        """Start the worker processes now and wait until they are ready (with ``workers=0``: import
        math-verify), so that the first check does not pay the ~0.5 s start-up. Checks decided by the
        fast paths (``\\boxed{1}`` vs ``1``) never start a worker. Never raises."""
        try:
            if self.workers == 0:
                load_math_verify()
            else:
                self._ensure_pool().warm_up()
        except Exception:  # noqa: BLE001 - a failed start shows up as errors on the checks themselves
            log.exception("grading warm-up failed")

    # ---- public API -----------------------------------------------------------------------------

    def grade(self, response: str, gold: str, *, timeout_s: float | None = None) -> Grade:
        """Grade one response against its gold answer. Never raises, never hangs (see module docstring)."""
        return self.grade_many([(response, gold)], timeout_s=timeout_s)[0]

    def grade_many(self, pairs: Sequence[tuple[str, str]], *, timeout_s: float | None = None) -> list[Grade]:
        """Grade ``(response, gold)`` pairs; returns one Grade per pair, same order and length.

        Fast paths run inline; the rest go to the workers in parallel (identical checks once).
        Blocks the calling thread: from async code use ``await asyncio.to_thread(...)``.
        """
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        out: list[Grade | None] = [None] * len(pairs)
        todo: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for i, pair in enumerate(pairs):
            extracted: str | None = None
            try:
                response, gold = pair
                extracted = extract_answer(response if isinstance(response, str) else str(response or ""))
                gold = str(gold)
                decided, key = self._grade_inline(extracted, gold)
                if decided is not None:
                    out[i] = decided
                else:
                    todo.setdefault(key, []).append((i, extracted))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a grading bug must not crash a run (design §6)
                log.exception("grading failed")
                out[i] = Grade(
                    False, "wrong", extracted, f"internal: {type(exc).__name__}: {exc}"[:300], "none"
                )
        if todo:
            keys = list(todo)
            try:
                verdicts = self._check(keys, timeout)
            except Exception as exc:  # noqa: BLE001 - as above
                log.exception("grading failed")
                verdicts = [(False, f"internal: {type(exc).__name__}: {exc}"[:300])] * len(keys)
            for key, (equal, error) in zip(keys, verdicts, strict=True):
                if error is None:
                    self._remember(key, equal)
                status: Status = "correct" if equal else "wrong"
                if error is not None and error.startswith("worker_unavailable"):
                    status = "error"  # no verdict: never count a broken set-up as wrong answers
                for i, extracted in todo[key]:
                    out[i] = Grade(equal, status, extracted, error, "math_verify")
        return [
            g if g is not None else Grade(False, "wrong", None, "internal: no result", "none") for g in out
        ]

    def fast_grade(self, response: str, gold: str) -> Grade | None:
        """The Grade of one response if it can be decided without math-verify (no answer, the fast
        paths, ``too_long``, a remembered math-verify verdict), else None: then ``grade_many``
        decides it, and returns exactly what it would have. Microseconds; runs in the calling
        thread (an event loop may call it). Never raises (an internal error is None)."""
        try:
            extracted = extract_answer(response if isinstance(response, str) else str(response or ""))
            return self._grade_inline(extracted, str(gold))[0]
        except Exception:  # noqa: BLE001 - grade_many will report it, with its error recorded
            return None

    # ---- internals ------------------------------------------------------------------------------

    def _grade_inline(self, extracted: str | None, gold: str) -> tuple[Grade | None, tuple[str, str] | None]:
        """A Grade decided without math-verify, or (None, cache key) for the workers."""
        if extracted is None:
            return Grade(False, "no_answer", None, None, "none"), None
        too_long = len(extracted) > self.max_answer_chars or len(gold) > self.max_answer_chars
        # Both sides as they are meant (Unicode math, repeating decimals, ...: equivalence.prepare);
        # over-long inputs are compared only as strings, so they skip it.
        pred, gold = (extracted, gold) if too_long else (prepare(extracted), prepare(gold))
        if self.fast_paths:
            decided = fast_check(pred, gold)
            if decided is not None:
                equal, method = decided
                return Grade(equal, "correct" if equal else "wrong", extracted, None, method), None
        if too_long:
            # The gold is bounded like the answer: a 1 MB gold once made a 478 MB worker.
            return Grade(False, "wrong", extracted, "too_long", "limit"), None
        key = (gold, pred)
        cached = self._recall(key)
        if cached is not None:
            return Grade(cached, "correct" if cached else "wrong", extracted, None, "math_verify"), None
        return None, key

    def _check(self, keys: list[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str | None]]:
        if self.workers == 0:
            return [check(gold, pred) for gold, pred in keys]
        try:
            return self._ensure_pool().run(keys, timeout_s)
        except PoolUnavailable as exc:
            return [(False, f"worker_unavailable: {exc}"[:500])] * len(keys)

    def _ensure_pool(self) -> CheckPool:
        with self._lock:
            if self._pool is not None and self._pool_pid != os.getpid():
                # We are a fork of the process that started these workers: they are not our
                # children and their pipes are shared with the parent. Start our own.
                self._pool = None
            if self._pool is None:
                self._pool = CheckPool(self.workers, self.memory_limit_mb)
                self._pool_pid = os.getpid()
                _register_atexit()
            return self._pool

    def _recall(self, key: tuple[str, str]) -> bool | None:
        if not self.cache_size:
            return None
        with self._lock:
            value = self._cache.get(key)
            if value is not None:
                self._cache.move_to_end(key)
            return value

    def _remember(self, key: tuple[str, str], equal: bool) -> None:
        if not self.cache_size:
            return
        with self._lock:
            self._cache[key] = equal
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


def _check_timeout(timeout_s: float) -> None:
    if not timeout_s > 0:
        raise ConfigError(f"grading.timeout_s={timeout_s}: must be > 0")


def _check_workers(workers: int) -> None:
    if workers < 0:
        raise ConfigError(f"grading.workers={workers}: must be >= 0 (0 = in-process, no hard timeout)")


def _register_atexit() -> None:
    # Registered after pebble (and multiprocessing) are imported, so it runs before their exit hooks
    # (atexit is LIFO) and the workers get a clean stop.
    import pebble  # noqa: F401 - for the order of the exit hooks

    global _ATEXIT_REGISTERED
    if not _ATEXIT_REGISTERED:
        atexit.register(_close_all_graders)
        _ATEXIT_REGISTERED = True


# --------------------------------------------------------------------------------------------------
# Module-level API over a shared default Grader
# --------------------------------------------------------------------------------------------------

_default: Grader | None = None
_default_lock = threading.Lock()


def _default_grader() -> Grader:
    global _default
    with _default_lock:
        if _default is None:
            _default = Grader()
        return _default


def configure(**settings: Any) -> Grader:
    """Replace the shared grader used by ``grade``/``grade_many`` (settings as for ``Grader``)."""
    global _default
    new = Grader(**settings)
    with _default_lock:
        old, _default = _default, new
    if old is not None:
        old.close()
    return new


def warm_up(workers: int | None = None) -> None:
    """Start the shared grader's worker processes now (see ``Grader.warm_up``); ``workers`` as for
    ``grade``. Never raises."""
    try:
        grader = _default_grader()
        if workers is not None and workers != grader.workers:
            grader.set_workers(workers)
    except ConfigError:
        log.exception("grading warm-up failed")
        return
    grader.warm_up()


def shutdown() -> None:
    """Stop the shared grader's worker processes (they restart on the next check)."""
    with _default_lock:
        grader = _default
    if grader is not None:
        grader.close()


def fast_grade(response: str, gold: str) -> Grade | None:
    """The shared grader's verdict on one response if no math-verify check is needed, else None
    (see ``Grader.fast_grade``). Inline and cheap: for callers that grade on an event loop and send
    only the rest to ``grade_many`` in a thread."""
    return _default_grader().fast_grade(response, gold)


def grade(response: str, gold: str, *, timeout_s: float | None = None, workers: int | None = None) -> Grade:
    """Grade one response against its gold answer with the shared grader. Never raises, never hangs.

    ``timeout_s`` overrides the per-check limit for this call. ``workers`` resizes the shared pool
    (sticky); 0 switches it to in-process checks without a hard timeout.
    """
    return grade_many([(response, gold)], timeout_s=timeout_s, workers=workers)[0]


def grade_many(
    pairs: Sequence[tuple[str, str]], *, timeout_s: float | None = None, workers: int | None = None
) -> list[Grade]:
    """Grade ``(response, gold)`` pairs with the shared grader: one Grade per pair, same order.

    Options as for ``grade``. Blocks; from async code: ``await asyncio.to_thread(grade_many, pairs)``.
    """
    try:
        grader = _default_grader()
        if workers is not None and workers != grader.workers:
            grader.set_workers(workers)
        if timeout_s is not None:
            _check_timeout(timeout_s)
    except ConfigError as exc:
        return [Grade(False, "wrong", None, f"internal: {exc}", "none") for _ in pairs]
    return grader.grade_many(pairs, timeout_s=timeout_s)
