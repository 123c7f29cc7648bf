"""Grading: is the final answer of a response mathematically equal to the gold answer?

Contract (design.md §6): ``grade(response, gold) -> Grade`` with ``.correct``, ``.status``
(``"correct" | "wrong" | "no_answer"``) and ``.extracted``; ``grade_many(pairs)`` is the batch form
(same order, same length). Neither ever raises and neither ever hangs.

Order of checks
---------------
1. **Extract** the final answer (``pdr.evaluation.extract``: strip thinking, last ``\\boxed{}`` /
   ``\\fbox{}``, else an explicit "Final Answer: X"). Nothing → ``no_answer``, ``extracted=None``.
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
     on to math-verify, which accepts rounding (``0.333333`` for ``\\frac13``).
3. **Size bound.** An extracted answer longer than ``max_answer_chars`` (default 2000) that the fast
   paths did not accept is wrong with ``error="too_long"``: it is never handed to sympy. Real answers
   are short; long ones are runaway output and the inputs most likely to make sympy crawl.
4. **math-verify** (``math_verify.parse`` + ``verify``, its own signal-based timeouts disabled with
   ``parsing_timeout=None`` / ``timeout_seconds=None``). Gold and prediction are both wrapped in
   ``$...$`` when they carry no math delimiters and parsed with LaTeX + Expr extraction; ``verify``
   gets them in that order (it is asymmetric: gold first). One correction on top of math-verify:
   its numeric comparison treats ``|a - b|`` below 1e-15 as zero, so ``1/2004!`` "equals"
   ``1/2006!`` (Math-Verify #14). We patch its ``sympy_numeric_eq`` to also require a relative
   difference below 1e-10 (1e-4 when either side is a decimal, keeping its 6-decimal rounding
   for ordinary magnitudes). Results without error are cached (LRU, in the calling process).

Timeout design, and why
-----------------------
math-verify's own timeout is ``signal.alarm``: it raises "signal only works in main thread" in
threads and asyncio executors, and sympy can spin for ever on inputs like ``9^{9^{9^9}}``, often
inside one C call that no in-process mechanism can interrupt. So the math-verify step runs in a
small pool of long-lived worker processes (``multiprocessing``, "spawn" context: fork is unsafe
once the parent has threads or an event loop). The pool starts lazily on the first check that
needs it, grows up to ``workers`` processes as batches demand, and is reused across calls; a
round-trip costs ~0.1 ms, and each worker warms up (imports sympy, builds the LaTeX parser) before
its first check. Each check has a hard wall-clock deadline (``timeout_s``, default 5 s) measured in
the parent from the moment the check is sent; a worker that misses it is SIGKILLed and reaped, a
replacement is started at once, and the check is graded wrong with ``error="timeout"``. This works
unchanged from the main thread, any other thread, inside a running asyncio loop (call
``await asyncio.to_thread(grade_many, pairs)``), and from inside worker processes, including
daemonic ``multiprocessing.Pool`` workers. Workers exit when the parent closes their pipe (and
within a second if the parent dies); an ``atexit`` hook stops and reaps them, so no zombies are
left. Each worker caps its address space (``memory_limit_mb``, default 4096) so a runaway
expansion fails with MemoryError instead of swapping the machine.

Like any "spawn" user, a script that grades at import time of its ``__main__`` module must guard
its entry point with ``if __name__ == "__main__":`` (the children re-import ``__main__``).

``workers=0`` runs math-verify in the calling thread instead: for debugging only, it has **no hard
timeout** (a pathological answer can hang the caller).

Errors
------
Internal failures never raise out of ``grade``/``grade_many``; they grade the answer **wrong** (status
``"wrong"``, so the three contract statuses are kept) with ``Grade.error`` saying why:
``"timeout"``, ``"too_long"``, ``"worker_died"`` (the worker crashed, e.g. a C-level stack overflow),
``"worker_unavailable: ..."`` (worker processes cannot be started), ``"exception: <Type>"``
(math-verify raised), ``"gold_unparsable"`` (math-verify found nothing in the gold answer: a data
problem), ``"internal: <Type>: ..."`` (a bug in this module).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from pdr.errors import ConfigError
from pdr.evaluation.extract import extract_answer

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnContext

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

Status = Literal["correct", "wrong", "no_answer"]

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_WORKERS = 1  # matches `grading.workers`; one process already grades hundreds of answers/s
DEFAULT_MAX_ANSWER_CHARS = 2000
DEFAULT_CACHE_SIZE = 100_000
DEFAULT_MEMORY_LIMIT_MB = 4096
_START_TIMEOUT_S = 120.0  # a fresh worker imports sympy; on a loaded machine that can take a while
_START_FAILURES_BEFORE_BACKOFF = 3
_START_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class Grade:
    """The verdict on one response.

    correct:   True iff status == "correct".
    status:    "correct" | "wrong" | "no_answer" (no final answer could be extracted).
    extracted: the extracted final answer (content of the last box, or of the final-answer
               statement), or None when status == "no_answer".
    error:     None, or why the check failed (status is then "wrong"): "timeout", "too_long",
               "worker_died", "worker_unavailable: ...", "exception: <Type>", "gold_unparsable",
               "internal: ...". See the module docstring.
    method:    which check decided: "none" (no answer), "string" (normalized strings equal),
               "number" (exact number comparison), "math_verify", or "limit" (too_long).
    """

    correct: bool
    status: Status
    extracted: str | None
    error: str | None = None
    method: str = "none"


# --------------------------------------------------------------------------------------------------
# Fast paths (inline, no sympy)
# --------------------------------------------------------------------------------------------------

_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_LEFT_RIGHT_DOT = re.compile(r"\\(?:left|right)\s*\.")  # invisible delimiters: drop entirely
_SIZING = re.compile(r"\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])")
_SPACING = re.compile(r"\\[,;:! ]|\\(?:quad|qquad|displaystyle|textstyle)(?![a-zA-Z])|~")
_WS = re.compile(r"\s+")
# A space survives only between two alphanumerics: `\pi r` (a different token from `\pir`), `2 3`.
_DROPPABLE_SPACE = re.compile(r"(?<![A-Za-z0-9]) | (?![A-Za-z0-9])")

_NUM_MAX_CHARS = 200  # longer "numbers" go to math-verify (and int() refuses > 4300 digits anyway)
_INT = re.compile(r"[+-]?\d+")
# Thousands separators: `1,000`, `1{,}000`, and `1\,000` / `1\!000` (spacing commands → a space).
_INT_SEP = re.compile(r"[+-]?\d{1,3}(?:(?:,|\{,\}| )\d{3})+")
_DEC = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)")
_SLASH = re.compile(r"([+-]?\d+)/([+-]?\d+)")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_FRAC_SHORT = re.compile(r"([+-]?)\\frac(\d)(\d)")
_BASE_NUMBER = re.compile(r"([0-9A-Za-z]+)_\{?(\d+)\}?")  # 52_8, 4210_{5}, 1A_{16}


def _normalize(s: str) -> str:
    """A canonical spelling of a LaTeX answer; equal outputs mean equal answers (see docstring)."""
    s = s.strip()
    for left, right in _DELIMS:
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _LEFT_RIGHT_DOT.sub("", s)
    s = _SIZING.sub("", s)
    s = _SPACING.sub(" ", s)
    s = s.replace("^{\\circ}", "^\\circ")
    s = _WS.sub(" ", s).strip()
    s = _DROPPABLE_SPACE.sub("", s)
    return s.rstrip(".")


def _plain_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, exact) if normalized ``s`` is a plain number; exact is False for decimals."""
    if len(s) > _NUM_MAX_CHARS:
        return None
    try:
        if _INT.fullmatch(s):
            return Fraction(int(s)), True
        if _INT_SEP.fullmatch(s):
            return Fraction(int(s.replace("{,}", "").replace(",", "").replace(" ", ""))), True
        if _DEC.fullmatch(s):
            return Fraction(s), False
        if m := _SLASH.fullmatch(s):
            return Fraction(int(m[1]), int(m[2])), True
        if m := _FRAC.fullmatch(s) or _FRAC_SHORT.fullmatch(s):
            value = Fraction(int(m[2]), int(m[3]))
            return (-value if m[1] == "-" else value), True
    except (ValueError, ZeroDivisionError):
        return None
    return None


def _fast_check(extracted: str, gold: str) -> tuple[bool, str] | None:
    """(correct, method) when the fast paths can decide, else None (ask math-verify)."""
    pred_n, gold_n = _normalize(extracted), _normalize(gold)
    if pred_n == gold_n and pred_n:
        return True, "string"
    pred_b, gold_b = _BASE_NUMBER.fullmatch(pred_n), _BASE_NUMBER.fullmatch(gold_n)
    if pred_b and gold_b:
        # math-verify drops the base subscript, so `52_6` would "equal" `52_8`.
        return (pred_b[1].lstrip("0") == gold_b[1].lstrip("0") and pred_b[2] == gold_b[2]), "string"
    pred_v, gold_v = _plain_number(pred_n), _plain_number(gold_n)
    if pred_v is not None and gold_v is not None:
        if pred_v[0] == gold_v[0]:
            return True, "number"
        if pred_v[1] and gold_v[1]:
            return False, "number"
    return None


# --------------------------------------------------------------------------------------------------
# The math-verify check (runs in a worker process, or in the caller with workers=0)
# --------------------------------------------------------------------------------------------------


_SQRT_PAREN = re.compile(r"\\sqrt\s*\(")
# `1\,000`, `1\ 000`, `1{,}000`: thousands separators math-verify does not know (it does know `1,\!000`).
_THIN_SEPARATOR = re.compile(r"(?<=\d)(?:\\[,; ]|\{,\})(?=\d{3}(?!\d))")
_PLUS_MINUS = re.compile(r"\\(?:pm|mp)(?![a-zA-Z])")


def _sqrt_parens(s: str) -> str:
    """``\\sqrt(2)`` → ``\\sqrt{2}``: math-verify reads ``4\\sqrt(2)`` as 4 (Math-Verify #41)."""
    out: list[str] = []
    pos = 0
    for m in _SQRT_PAREN.finditer(s):
        if m.start() < pos:
            continue
        depth, j = 1, m.end()
        while j < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[j], 0)
            j += 1
        if depth:
            break  # unbalanced: leave the rest alone
        out.append(s[pos : m.start()] + "\\sqrt{" + s[m.end() : j - 1] + "}")
        pos = j
    return "".join(out) + s[pos:]


def _expand_plus_minus(s: str) -> str:
    """``a \\pm b`` → ``a + b, a - b`` when ``s`` is one expression with one ``\\pm``/``\\mp``:
    math-verify expands ``1 \\pm \\sqrt{19}`` itself but not ``\\frac{-1\\pm\\sqrt{17}}{2}``."""
    if "," in s or len(_PLUS_MINUS.findall(s)) != 1:
        return s
    plus = _PLUS_MINUS.sub(lambda m: "+" if m.group() == "\\pm" else "-", s)
    minus = _PLUS_MINUS.sub(lambda m: "-" if m.group() == "\\pm" else "+", s)
    return f"{plus}, {minus}"


def _as_math(s: str) -> str:
    """Wrap ``s`` in ``$...$`` unless it already carries math delimiters; math-verify's inline
    patterns stop at newlines, so those become spaces."""
    s = _THIN_SEPARATOR.sub("", _sqrt_parens(s.replace("\n", " ").strip()))
    if "$" in s.replace("\\$", "") or s.startswith(("\\(", "\\[")):
        return s
    return f"${s}$"


@lru_cache(maxsize=1)
def _mv() -> Any:
    """Import and set up math-verify once per process (lazily: sympy costs ~0.3 s to import)."""
    import math_verify
    import math_verify.grader as mv_grader
    import math_verify.parser as mv_parser

    # We disable math-verify's timeouts on purpose (we kill the worker instead); silence the
    # one-time warning that says so, and its per-failure log noise.
    mv_grader.TIMEOUT_WARNING_SHOWN = True
    mv_parser.TIMEOUT_WARNING_SHOWN = True
    _install_relative_guard(mv_grader)
    return math_verify


@lru_cache(maxsize=1)
def _verify_options() -> dict[str, Any]:
    import inspect

    options: dict[str, Any] = {"timeout_seconds": None, "raise_on_error": False}
    # MATH-500 golds are intervals, answers are often inequalities (`x \le 3` for `(-\infty, 3]`):
    # let math-verify compare a relation with a set both ways (older versions lack the option).
    if "allow_set_relation_comp" in inspect.signature(_mv().verify).parameters:
        options["allow_set_relation_comp"] = True
    return options


def _install_relative_guard(mv_grader: Any) -> None:
    original = getattr(mv_grader, "sympy_numeric_eq", None)
    if original is None:
        log.warning("math_verify.grader.sympy_numeric_eq not found: the 1/2004! vs 1/2006! guard is off")
        return
    if getattr(original, "_pdr_guard", False):
        return

    def sympy_numeric_eq(a: Any, b: Any, float_rounding: int, numeric_precision: int) -> bool:
        return bool(original(a, b, float_rounding, numeric_precision)) and _relatively_close(a, b, mv_grader)

    sympy_numeric_eq._pdr_guard = True  # type: ignore[attr-defined]
    mv_grader.sympy_numeric_eq = sympy_numeric_eq


def _relatively_close(a: Any, b: Any, mv_grader: Any) -> bool:
    """Second opinion on a numeric "equal": the relative difference must be small too.

    math-verify compares ``(a - b).evalf(chop=True)`` to 0 (or rounds both to 6 decimals), an
    absolute test that calls any two tiny numbers equal. Only closed-form numbers are re-checked;
    anything we cannot evaluate keeps math-verify's verdict.
    """
    from sympy import Expr, Float

    try:
        if not (isinstance(a, Expr) and isinstance(b, Expr)) or a.free_symbols or b.free_symbols:
            return True
        tol = 1e-4 if (a.has(Float) or b.has(Float)) else 1e-10
        pairs = [(a.doit(), b.doit())]
        get_pct_val = getattr(mv_grader, "get_pct_val", None)
        if get_pct_val is not None:  # math-verify also compares 9% with 9 by the bare values
            pairs.append((get_pct_val(a, a), get_pct_val(b, b)))
        for x, y in pairs:
            xv, yv = x.evalf(30), y.evalf(30)
            if not (xv.is_number and yv.is_number):
                return True
            diff = abs(xv - yv)
            if diff == 0 or bool(diff <= tol * max(abs(xv), abs(yv))):
                return True
        return False
    except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError):
        return True


@lru_cache(maxsize=4096)
def _parse(text: str) -> Any:
    """math-verify's parse of one answer (gold answers repeat across samples: cached)."""
    mv = _mv()
    return mv.parse(
        _as_math(text),
        extraction_config=[mv.LatexExtractionConfig(), mv.ExprExtractionConfig()],
        parsing_timeout=None,
    )


def _math_verify_check(gold: str, pred: str) -> tuple[bool, str | None]:
    """(equal, error) by math-verify. No timeout of its own: call it in a killable process."""
    mv = _mv()
    gold_parsed = _parse(gold)
    if not gold_parsed:
        return False, "gold_unparsable"
    pred_parsed = _parse(pred)
    if not pred_parsed:
        return False, None  # the prediction is not math we can read: wrong, not an internal failure
    if mv.verify(gold_parsed, pred_parsed, **_verify_options()):
        return True, None
    gold_pm, pred_pm = _expand_plus_minus(gold), _expand_plus_minus(pred)
    if (gold_pm, pred_pm) != (gold, pred):
        gold_parsed, pred_parsed = _parse(gold_pm), _parse(pred_pm)
        if gold_parsed and pred_parsed:
            return bool(mv.verify(gold_parsed, pred_parsed, **_verify_options())), None
    return False, None


def _check_in_process(gold: str, pred: str) -> tuple[bool, str | None]:
    try:
        return _math_verify_check(gold, pred)
    except Exception as exc:  # noqa: BLE001 - sympy raises anything; the verdict is "wrong", with why
        return False, f"exception: {type(exc).__name__}"


# --------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------


def _worker_main(conn: Connection, memory_limit_mb: int | None) -> None:
    """Entry point of a worker process: ``("ready", pid)``, then answer ``(job_id, gold, pred)``
    requests with ``(job_id, equal, error)`` until ``None`` or the parent goes away."""
    import signal

    # Ctrl-C reaches the whole process group; the parent decides what happens to its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_mb:
        with contextlib.suppress(ImportError, ValueError, OSError):
            import resource

            limit = memory_limit_mb * 1024 * 1024
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _watch_parent()
    try:
        # Import sympy and math-verify and build the LaTeX parser now, not during the first timed
        # check; a broken installation is reported to the parent instead of failing every check.
        _math_verify_check(r"\frac{1}{2}", r"x \le \sqrt{2}")
        conn.send(("ready", os.getpid()))
    except Exception as exc:  # noqa: BLE001 - report any start-up failure to the parent
        with contextlib.suppress(OSError, ValueError):
            conn.send(("failed", f"{type(exc).__name__}: {exc}"[:500]))
        os._exit(1)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        job_id, gold, pred = msg
        try:
            equal, error = _check_in_process(gold, pred)
        except MemoryError:
            equal, error = False, "exception: MemoryError"
        try:
            conn.send((job_id, equal, error))
        except (OSError, ValueError):
            break
    # Skip interpreter finalization: tearing down sympy's caches takes ~0.5 s and there is nothing
    # to flush or save here.
    os._exit(0)


def _watch_parent() -> None:
    """Exit when the parent dies without closing our pipe (e.g. SIGKILL) while we are busy."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="pdr-grader-watchdog", daemon=True).start()


class _WorkerDied(Exception):
    pass


class _PoolUnavailable(Exception):
    pass


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """Let a daemonic process (a ``multiprocessing.Pool`` worker) start our workers.

    multiprocessing refuses because a daemon's children would be orphaned when it is terminated.
    Ours do not outlive it: they exit when the pipe to the parent closes (or the parent pid
    changes), so the flag is lifted for the duration of ``start()``.
    """
    import multiprocessing

    current = multiprocessing.current_process()
    if not current.daemon:
        yield
        return
    config = current._config  # type: ignore[attr-defined]
    config["daemon"] = False
    try:
        yield
    finally:
        config["daemon"] = True


@contextlib.contextmanager
def _stdlib_start_method() -> Iterator[None]:
    """Make the global start method one the child can resolve while a worker starts.

    A spawned child re-applies its parent's *global* start method. Inside a joblib/loky worker
    (Hydra's joblib launcher) that is "loky", which a plain spawned child cannot find ("cannot
    find context for 'loky'"), so it is switched to "spawn" for the duration of start().
    """
    import multiprocessing

    current = multiprocessing.get_start_method(allow_none=True)
    if current in (None, "fork", "spawn", "forkserver"):
        yield
        return
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(current, force=True)


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: SpawnContext, name: str, memory_limit_mb: int | None):
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(child_conn, memory_limit_mb), name=name, daemon=True
        )
        try:
            with _START_LOCK, _children_allowed(), _stdlib_start_method():
                self.process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()  # the child holds its own copy now
        self.conn = parent_conn
        self.ready = False
        self.start_deadline = time.monotonic() + _START_TIMEOUT_S

    def poll_ready(self) -> bool:
        """Non-blocking: has the start-up handshake arrived? Raises _WorkerDied if start-up failed."""
        if not self.ready and self.conn.poll(0):
            try:
                msg = self.conn.recv()
            except (EOFError, OSError) as exc:
                raise _WorkerDied(f"exited during start-up (exit code {self.process.exitcode})") from exc
            if msg[0] != "ready":
                raise _WorkerDied(f"failed to start: {msg[1]}")
            self.ready = True
        return self.ready

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        """Ask to exit; the caller joins (see _Pool.close)."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)


class _Pool:
    """Up to ``size`` long-lived worker processes, leased to one batch (thread) at a time."""

    def __init__(self, size: int, memory_limit_mb: int | None):
        import multiprocessing
        import multiprocessing.connection  # registers multiprocessing's exit hook before ours (see _register_atexit)

        self._ctx = multiprocessing.get_context("spawn")
        self._size = size
        self._memory_limit_mb = memory_limit_mb
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self._started = 0
        self._start_failures = 0
        self._last_failure = 0.0
        self._failure_reason = ""

    # ---- bookkeeping ------------------------------------------------------------------------

    def resize(self, size: int) -> None:
        with self._cond:
            self._size = size
            surplus = self._idle[: max(0, len(self._all) - size)]
            for w in surplus:
                self._idle.remove(w)
                self._all.discard(w)
            self._cond.notify_all()
        for w in surplus:
            w.stop()
            w.kill()

    def _spawn_locked(self) -> _Worker:
        if self._start_failures >= _START_FAILURES_BEFORE_BACKOFF:
            if time.monotonic() - self._last_failure < _START_BACKOFF_S:
                raise _PoolUnavailable(self._failure_reason)
        self._started += 1
        try:
            worker = _Worker(self._ctx, f"pdr-grader-{self._started}", self._memory_limit_mb)
        except Exception as exc:  # noqa: BLE001 - e.g. OSError (process limit), RuntimeError (bootstrapping)
            reason = f"could not start: {type(exc).__name__}: {exc}"
            self._start_failures += 1
            self._last_failure, self._failure_reason = time.monotonic(), reason
            log.error("grading worker %s", reason)
            raise _PoolUnavailable(reason) from exc
        self._all.add(worker)
        return worker

    def lease(self, block: bool) -> _Worker | None:
        """An idle worker (ready ones first), a freshly started one if under ``size``, else None
        (or wait for one when ``block``). Raises _PoolUnavailable when workers keep failing to start."""
        with self._cond:
            while True:
                if self._closed:
                    raise _PoolUnavailable("the grader was shut down")
                if self._idle:
                    for i in range(len(self._idle) - 1, -1, -1):
                        if self._idle[i].ready:
                            return self._idle.pop(i)
                    return self._idle.pop()
                if len(self._all) < self._size:
                    return self._spawn_locked()
                if not block:
                    return None
                self._cond.wait()

    def release(self, worker: _Worker) -> None:
        with self._cond:
            if not self._closed and worker in self._all and len(self._all) <= self._size:
                self._idle.append(worker)
                self._cond.notify()
                return
            self._all.discard(worker)
            self._cond.notify()
        worker.stop()
        worker.process.join(timeout=1)
        if worker.process.is_alive():
            worker.kill()

    def discard(self, worker: _Worker, replace: bool) -> None:
        """Kill ``worker``; with ``replace``, start its successor now so it warms up in the background."""
        worker.kill()
        with self._cond:
            self._all.discard(worker)
            if replace and not self._closed and len(self._all) < self._size:
                with contextlib.suppress(_PoolUnavailable, OSError):
                    self._idle.append(self._spawn_locked())
            self._cond.notify()

    def note_start(self, ok: bool, reason: str = "") -> None:
        with self._cond:
            if ok:
                self._start_failures = 0
            else:
                self._start_failures += 1
                self._last_failure = time.monotonic()
                self._failure_reason = reason
        if not ok:
            log.error("grading worker %s", reason)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            w.stop()
        deadline = time.monotonic() + 2.0
        for w in workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.kill()
            else:
                w.conn.close()

    def warm_up(self) -> None:
        """Start every worker this pool may have and wait for their start-up handshakes."""
        leased: list[_Worker] = []
        try:
            while len(leased) < self._size:
                worker = self.lease(block=False)
                if worker is None:
                    break  # the rest are serving other threads, so they are up
                leased.append(worker)
            for worker in list(leased):
                try:
                    if not worker.ready:
                        worker.conn.poll(max(0.0, worker.start_deadline - time.monotonic()))
                    if not worker.poll_ready():
                        raise _WorkerDied(f"did not start within {_START_TIMEOUT_S:.0f}s")
                    self.note_start(True)
                except _WorkerDied as exc:
                    leased.remove(worker)
                    self.note_start(False, str(exc))
                    self.discard(worker, replace=False)
        finally:
            for worker in leased:
                self.release(worker)

    # ---- the scheduler --------------------------------------------------------------------------

    def run(self, jobs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str | None]]:
        """Check every (gold, pred) in ``jobs`` on the workers; same order and length.

        Each check gets ``timeout_s`` of wall-clock from the moment it is sent; time spent waiting
        for a free or starting worker does not count. Runs in the calling thread.
        """
        from multiprocessing.connection import wait

        results: list[tuple[bool, str | None] | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        free: list[_Worker] = []  # leased by this call, ready, not busy
        starting: list[_Worker] = []  # leased by this call, start-up handshake not yet received
        busy: dict[_Worker, tuple[int, float]] = {}  # worker -> (job index, deadline)

        def take(worker: _Worker) -> None:
            try:
                (free if worker.poll_ready() else starting).append(worker)
            except _WorkerDied as exc:
                self.note_start(False, str(exc))
                self.discard(worker, replace=False)

        try:
            while pending or busy:
                # 1. Lease a worker per pending job beyond those we hold (lazily growing the pool).
                try:
                    while len(pending) > len(free) + len(starting):
                        worker = self.lease(block=False)
                        if worker is None:
                            break
                        take(worker)
                    if pending and not (free or starting or busy):
                        take(self.lease(block=True))  # all workers serve other threads: wait for one
                        continue
                except _PoolUnavailable as exc:
                    if not (free or starting or busy):
                        while pending:
                            results[pending.popleft()] = (False, f"worker_unavailable: {exc}")
                        break
                # 2. Dispatch.
                while pending and free:
                    worker = free.pop()
                    # Died while idle (OOM killer, ...): not this job's fault, so it goes to another worker.
                    if not worker.process.is_alive():
                        self.discard(worker, replace=True)
                        continue
                    index = pending.popleft()
                    try:
                        worker.conn.send((index, *jobs[index]))
                    except (OSError, ValueError):
                        pending.appendleft(index)
                        self.discard(worker, replace=True)
                        continue
                    busy[worker] = (index, time.monotonic() + timeout_s)
                # 3. Hand back workers this call no longer needs, so other threads can use them.
                while len(free) > len(pending):
                    self.release(free.pop())
                if not (busy or starting):
                    continue
                # 4. Wait for a result, a start-up handshake, or the next deadline.
                deadlines = [d for _, d in busy.values()] + [w.start_deadline for w in starting]
                by_conn = {w.conn: w for w in (*busy, *starting)}
                ready = wait(list(by_conn), timeout=max(0.0, min(deadlines) - time.monotonic()))
                for conn in ready:
                    worker = by_conn[conn]  # type: ignore[index]
                    if worker in busy:
                        index, _ = busy.pop(worker)
                        try:
                            job_id, equal, error = worker.conn.recv()
                        except (EOFError, OSError):
                            log.warning("grading worker died on gold=%r pred=%.100r", *jobs[index])
                            results[index] = (False, "worker_died")
                            self.discard(worker, replace=True)
                            continue
                        if job_id != index:  # cannot happen with one job in flight per worker
                            results[index] = (False, "internal: out-of-order reply")
                            self.discard(worker, replace=True)
                            continue
                        results[index] = (bool(equal), error)
                        free.append(worker)
                    else:
                        starting.remove(worker)
                        try:
                            worker.poll_ready()
                        except _WorkerDied as exc:
                            self.note_start(False, str(exc))
                            self.discard(worker, replace=False)
                            continue
                        self.note_start(True)
                        free.append(worker)
                # 5. Expire.
                now = time.monotonic()
                for worker, (index, deadline) in list(busy.items()):
                    if now >= deadline:
                        del busy[worker]
                        log.warning(
                            "grading check timed out after %.1fs (worker killed): gold=%r pred=%.100r",
                            timeout_s,
                            *jobs[index],
                        )
                        results[index] = (False, "timeout")
                        self.discard(worker, replace=True)
                for worker in [w for w in starting if now >= w.start_deadline]:
                    starting.remove(worker)
                    self.note_start(False, f"did not start within {_START_TIMEOUT_S:.0f}s")
                    self.discard(worker, replace=False)
        finally:
            # On an abnormal exit (KeyboardInterrupt, ...) busy workers are mid-check: a late reply
            # would be read by the next batch, so they are killed, not returned.
            for worker in busy:
                self.discard(worker, replace=True)
            for worker in (*free, *starting):
                self.release(worker)
        return [r if r is not None else (False, "internal: no result") for r in results]


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
    max_answer_chars:  longer extracted answers are wrong with error "too_long" unless the string
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
        self._pool: _Pool | None = None
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
        """Change the pool size (grows lazily; idle surplus workers are stopped now)."""
        _check_workers(workers)
        with self._lock:
            self.workers = int(workers)
            pool = self._pool
            if self.workers == 0:
                self._pool = None
        if pool is not None:
            if self.workers == 0:
                pool.close()
            else:
                pool.resize(self.workers)

    def warm_up(self) -> None:
        """Start the worker processes now and wait until they are ready (with ``workers=0``: import
        math-verify), so that the first check does not pay the ~0.5 s start-up. Checks decided by the
        fast paths (``\\boxed{1}`` vs ``1``) never start a worker. Never raises."""
        try:
            if self.workers == 0:
                _mv()
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
                for i, extracted in todo[key]:
                    status: Status = "correct" if equal else "wrong"
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
        if self.fast_paths:
            decided = _fast_check(extracted, gold)
            if decided is not None:
                equal, method = decided
                return Grade(equal, "correct" if equal else "wrong", extracted, None, method), None
        if len(extracted) > self.max_answer_chars:
            return Grade(False, "wrong", extracted, "too_long", "limit"), None
        key = (gold, extracted)
        cached = self._recall(key)
        if cached is not None:
            return Grade(cached, "correct" if cached else "wrong", extracted, None, "math_verify"), None
        return None, key

    def _check(self, keys: list[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str | None]]:
        if self.workers == 0:
            return [_check_in_process(gold, pred) for gold, pred in keys]
        return self._ensure_pool().run(keys, timeout_s)

    def _ensure_pool(self) -> _Pool:
        with self._lock:
            if self._pool is not None and self._pool_pid != os.getpid():
                # We are a fork of the process that started these workers: they are not our
                # children and their pipes are shared with the parent. Start our own.
                self._pool = None
            if self._pool is None:
                self._pool = _Pool(self.workers, self.memory_limit_mb)
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
    # Registered after multiprocessing is imported, so it runs before multiprocessing's own exit
    # hook (atexit is LIFO) and the workers get a clean stop rather than SIGTERM.
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
