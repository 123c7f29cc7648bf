"""Worker processes for the math-verify check: a ``pebble.ProcessPool`` with a hard per-check kill.

Why processes, and why pebble
-----------------------------
math-verify's own timeout is ``signal.alarm`` (fails outside the main thread), and sympy can spin
for ever inside one C call (``9^{9^{9^9}}``) that nothing in-process can interrupt. So each check
runs in a worker process and is scheduled with ``pebble.ProcessPool.schedule(..., timeout=)``: a
check still running after ``timeout_s`` (counted from when a worker picks it up, so queueing does
not eat into it) has its worker stopped (SIGTERM, SIGKILL 3 s later if stuck in C code) and
replaced by pebble; the check is ``(False, "timeout")``. A worker that dies mid-check gives
``(False, "worker_died")``.

Workers never import the caller's ``__main__``
----------------------------------------------
A "spawn" child normally re-runs the parent's main module (``runpy`` on its file, or by module
name). A script that grades at import time without an ``if __name__ == "__main__":`` guard, a
``python -c`` program or one read from stdin (``__file__ == "<stdin>"``) then makes every worker
fail at start-up. Our workers are started through ``_GraderContext``, a spawn context whose
processes are launched with ``sys.modules["__main__"]`` replaced by an empty module for the few
milliseconds of ``Process.start()`` (under a lock): multiprocessing then records no main module to
re-run, and the child imports only what unpickling the pebble worker needs (pebble and
``pdr.evaluation.pool``). Another thread that looks at ``sys.modules["__main__"]`` during exactly
that window sees the empty module; the window is one fork+exec, and only while a worker starts.

The same hook lets a daemonic process (a ``multiprocessing.Pool`` worker) start our workers,
resets a non-stdlib global start method (joblib's "loky", which a spawned child cannot resolve)
for the duration of the start, and makes the workers daemonic (pebble's are not): the end of every
multiprocessing or loky child joins its non-daemonic children, and idle grading workers never exit
on their own, so a sweep worker that graded would never finish.

Failure to start is not "wrong"
-------------------------------
If the workers cannot start (pebble reports a broken pool, or no worker answers within
``START_TIMEOUT_S`` plus the check's timeout), ``run`` raises ``PoolUnavailable``; the grader turns
that into status ``"error"``, never ``"wrong"``. After repeated failures, new pools are not tried
for ``_START_BACKOFF_S`` seconds so that a broken installation fails fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, TimeoutError, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

__all__ = ["START_TIMEOUT_S", "CheckPool", "PoolUnavailable"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # a fresh worker imports sympy; on a loaded machine that can take a while
_START_FAILURES_BEFORE_BACKOFF = 3
_START_BACKOFF_S = 30.0
_LAUNCH_LOCK = threading.Lock()


class PoolUnavailable(Exception):
    """The worker processes cannot be started (or never answered); the message says why."""


# --------------------------------------------------------------------------------------------------
# Starting workers: a spawn context that does not carry the caller's __main__
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """``sys.modules["__main__"]`` is an empty module inside the block (see module docstring)."""
    real = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if real is not None:
            sys.modules["__main__"] = real


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """Let a daemonic process (a ``multiprocessing.Pool`` worker) start our workers.

    multiprocessing refuses because a daemon's children would be orphaned when it is terminated.
    Ours do not outlive it: they exit when the pool's pipe closes, and a watchdog thread exits them
    when the parent pid changes.
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
    """A spawned child re-applies its parent's *global* start method; inside a joblib/loky worker
    (Hydra's joblib launcher) that is "loky", which a plain spawned child cannot find."""
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


class _GraderProcess(SpawnProcess):
    """A spawned process started without the caller's ``__main__`` (pebble calls ``start``)."""

    def start(self) -> None:
        # Daemonic, although pebble asks for non-daemonic workers: multiprocessing's exit function
        # (run by atexit, and directly at the end of every multiprocessing/loky child process) joins
        # non-daemonic children for ever, and an idle grading worker never exits on its own, so a
        # joblib/loky sweep worker that graded could never finish. Daemonic ones are terminated.
        self.daemon = True
        try:
            with _LAUNCH_LOCK, _children_allowed(), _stdlib_start_method(), _main_hidden():
                super().start()
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - pebble turns OSError into BrokenProcessPool; anything
            # else would kill its manager thread and leave every check waiting for ever.
            raise OSError(f"could not start a grading worker: {type(exc).__name__}: {exc}") from exc


class _GraderContext(SpawnContext):
    """The spawn context handed to pebble; remembers the processes it made (for ``worker_pids``)."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[SpawnProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> SpawnProcess:  # type: ignore[override]  # noqa: N802 - multiprocessing's name
        process = _GraderProcess(*args, **kwargs)
        self.started = [p for p in self.started if p.pid is None or p.is_alive()] + [process]
        return process


# --------------------------------------------------------------------------------------------------
# Inside a worker
# --------------------------------------------------------------------------------------------------


def _worker_init(memory_limit_mb: int | None) -> None:
    """pebble initializer: cap memory, silence math-verify's logs, watch the parent, warm up."""
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
    from pdr.evaluation.equivalence import math_verify_check

    # Import sympy and math-verify and build the LaTeX parser now, not during the first timed check.
    math_verify_check(r"\frac{1}{2}", r"x \le \sqrt{2}")


def _watch_parent() -> None:
    """Exit when the parent dies (e.g. SIGKILL) while we are busy in a long check."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="pdr-grader-watchdog", daemon=True).start()


def _check_task(gold: str, pred: str) -> tuple[bool, str | None]:
    from pdr.evaluation.equivalence import check

    try:
        return check(gold, pred)
    except MemoryError:
        return False, "exception: MemoryError"


def _ready() -> int:
    time.sleep(0.05)  # long enough that every worker, not one, answers a warm-up batch
    return os.getpid()


# --------------------------------------------------------------------------------------------------
# The pool
# --------------------------------------------------------------------------------------------------


class CheckPool:
    """``size`` worker processes running ``equivalence.check``; thread-safe, restarted on demand."""

    def __init__(self, size: int, memory_limit_mb: int | None):
        self.size = size
        self.memory_limit_mb = memory_limit_mb
        self._lock = threading.Lock()
        self._pool: Any = None
        self._context: _GraderContext | None = None
        self._failures = 0
        self._last_failure = 0.0
        self._failure_reason = ""

    def _ensure(self) -> Any:
        import pebble

        with self._lock:
            if self._pool is not None and self._pool.active:
                return self._pool
            if self._pool is not None:  # broken: pebble gave up on it
                self._stop_locked()
            if self._failures >= _START_FAILURES_BEFORE_BACKOFF:
                if time.monotonic() - self._last_failure < _START_BACKOFF_S:
                    raise PoolUnavailable(self._failure_reason)
            self._context = _GraderContext()
            self._pool = pebble.ProcessPool(
                max_workers=self.size,
                initializer=_worker_init,
                initargs=(self.memory_limit_mb,),
                context=self._context,
            )
            return self._pool

    def _failed(self, reason: str) -> None:
        log.error("grading workers unavailable: %s", reason)
        with self._lock:
            self._failures += 1
            self._last_failure, self._failure_reason = time.monotonic(), reason
            self._stop_locked()

    def _stop_locked(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            with contextlib.suppress(Exception):
                pool.join(timeout=10)

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    def worker_pids(self) -> set[int]:
        """Pids of this pool's live worker processes (for tests and diagnostics)."""
        with self._lock:
            started = list(self._context.started) if self._context is not None else []
        return {p.pid for p in started if p.pid is not None and p.is_alive()}

    def warm_up(self) -> None:
        """Start the workers and wait until each has imported math-verify. Raises PoolUnavailable."""
        self._wait([self._schedule(_ready, (), None) for _ in range(self.size)], START_TIMEOUT_S)

    def run(self, keys: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str | None]]:
        """``(equal, error)`` per ``(gold, pred)`` key, same order. Raises PoolUnavailable when the
        workers cannot start; a stuck check is ``(False, "timeout")``, a crash ``"worker_died"``."""
        import pebble

        futures = [self._schedule(_check_task, key, timeout_s) for key in keys]
        self._wait(futures, START_TIMEOUT_S + timeout_s)
        out: list[tuple[bool, str | None]] = []
        for (gold, pred), fut in zip(keys, futures, strict=True):
            try:
                out.append(fut.result())
            except TimeoutError:
                log.warning(
                    "grading check timed out after %.1fs (worker killed): gold=%r pred=%.100r", timeout_s, gold, pred
                )
                out.append((False, "timeout"))
            except pebble.ProcessExpired:
                out.append((False, "worker_died"))
            except Exception as exc:  # noqa: BLE001 - e.g. a pickling error: wrong, with why
                out.append((False, f"exception: {type(exc).__name__}"))
        return out

    def _schedule(self, fn: Any, args: tuple[Any, ...], timeout_s: float | None) -> Any:
        try:
            return self._ensure().schedule(fn, args=args, timeout=timeout_s)
        except RuntimeError as exc:  # "the pool is not running": it broke between _ensure and here
            self._failed(f"{type(exc).__name__}: {exc}")
            raise PoolUnavailable(str(exc)) from exc

    def _wait(self, futures: list[Any], stall_s: float) -> None:
        """Wait for every future; give up (PoolUnavailable) if none finishes for ``stall_s`` seconds
        or the pool breaks (its workers exit during start-up)."""
        from concurrent.futures.process import BrokenProcessPool

        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=stall_s, return_when="FIRST_COMPLETED")
            if not done:
                for fut in pending:
                    fut.cancel()
                reason = f"no grading worker answered within {stall_s:.0f}s"
                self._failed(reason)
                raise PoolUnavailable(reason)
            for fut in done:
                with contextlib.suppress(CancelledError):
                    error = fut.exception()
                    if isinstance(error, BrokenProcessPool):
                        reason = f"worker processes exited during start-up ({error})"
                        self._failed(reason)
                        raise PoolUnavailable(reason)
        with self._lock:
            self._failures = 0
