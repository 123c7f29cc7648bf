"""The limits of a run while its problem-samples execute: too many errors, an error that every call
would hit, and no progress at all (the stall guard). Each ends the run with a RunFailed whose
message says what happened and how to resume; the finished rows stay on disk."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pdr.config.engines import EngineConfig, OpenAIEngineConfig, SGLangEngineConfig
from pdr.results import ERROR_HINTS, ERRORS, RunFailed

# Error types that every remaining call would hit too: the run stops at the first one instead of
# failing every problem-sample (a wrong API key would otherwise burn through the whole dataset).
FATAL_ERROR_TYPES = frozenset({"AuthError", "ConfigError"})

# Environment override of the stall timeouts (seconds), e.g. for tests or very slow servers.
STALL_ENV = "PDR_STALL_TIMEOUT_S"


class Activity(Protocol):
    """What the stall guard reads of the engine (pdr.engines.cache.CachedEngine has both)."""

    in_flight: int  # engine calls outstanding
    last_activity: float  # time.monotonic() when the last call finished or failed


def stall_timeout_s(engine_cfg: EngineConfig) -> float:
    """Seconds without any finished call after which the run is failed as stalled.

    `$PDR_STALL_TIMEOUT_S` if set; else the longest a single call can legitimately take: every
    attempt timing out, or cut as stalled and then waiting out `engine.max_downtime_s` for the
    server to come back, plus the longest backoffs, plus a minute. Per-request timeouts are the
    first line; this is the guard that makes "never hang" hold even if something below them does
    not time out.
    """
    env = os.environ.get(STALL_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            raise RunFailed(f"{STALL_ENV}={env!r}: must be a number of seconds") from None
        if value > 0:
            return value
    # Only the HTTP engines back off between attempts and ride out a server's downtime.
    http = isinstance(engine_cfg, SGLangEngineConfig | OpenAIEngineConfig)
    per_attempt = engine_cfg.timeout_s
    if http:
        per_attempt += engine_cfg.retry_backoff_max_s + engine_cfg.max_downtime_s
    return (engine_cfg.max_retries + 1) * per_attempt + 60.0


class RunGuard:
    """Counts the rows of a run as they are handed over and watches for progress.

    `row(row)` after each finished problem-sample: RunFailed at the first fatal error (FATAL_ERROR_TYPES)
    or once errors exceed `engine.max_error_rate` of the problem-samples to run. `check_stall(engine)`
    whenever nothing finished for `poll_s`: RunFailed once neither an engine call nor a row finished
    for the stall timeout. While no engine call is outstanding only grading can be pending, whose
    every check has a hard timeout: the limit is then (answers per row, 25 allowed) x
    `grading.timeout_s` + a minute. Event-loop thread only; `clock` is for tests.
    """

    def __init__(
        self,
        engine_cfg: EngineConfig,
        grading_timeout_s: float,
        total: int,
        run_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_error_rate = engine_cfg.max_error_rate
        self.total = total
        self.run_dir = run_dir
        self.clock = clock
        self.allowed_errors = int(engine_cfg.max_error_rate * total)
        self.stall_s = stall_timeout_s(engine_cfg)
        self.grade_stall_s = float(os.environ.get(STALL_ENV) or 0) or 60.0 + 25 * grading_timeout_s
        self.poll_s = min(5.0, self.stall_s / 4, self.grade_stall_s / 4)
        self.done = 0
        self.correct = 0
        self.errors = 0
        self._last_row = clock()

    def restart_clock(self) -> None:
        """Count idle time from now (when the problem-samples have been started)."""
        self._last_row = self.clock()

    def row(self, row: dict[str, Any]) -> None:
        """Count a finished row; RunFailed if the run cannot go on."""
        self.done += 1
        self.correct += bool(row["correct"])
        self._last_row = self.clock()
        if row["status"] != "error":
            return
        self.errors += 1
        etype = row.get("error_type") or "unknown"
        if etype in FATAL_ERROR_TYPES:
            raise RunFailed(
                f"{etype}: {row.get('error')} ({ERROR_HINTS.get(etype, 'fix the cause')}). "
                f"Stopped at the first such error: every call would fail the same way. Finished rows "
                f"are kept in {self.run_dir}; fix it and rerun with resume=true."
            )
        if self.errors > self.allowed_errors:
            raise RunFailed(
                f"{self.errors} of {self.total} problem-samples failed (engine.max_error_rate={self.max_error_rate}); "
                f"last error: {etype}: {row.get('error')}. Finished rows are kept in {self.run_dir} "
                f"(errors in {ERRORS}); fix the cause and rerun with resume=true to continue."
            )

    def check_stall(self, engine: Activity) -> None:
        """RunFailed (StallTimeout) if neither an engine call nor a row finished for the limit."""
        idle = self.clock() - max(self._last_row, engine.last_activity)
        calls_out = engine.in_flight
        limit = self.stall_s if calls_out else self.grade_stall_s
        if idle <= limit:
            return
        what = (
            f"{calls_out} engine calls outstanding; check the server"
            if calls_out
            else "no engine call outstanding: grading is stuck (see the grading log lines above)"
        )
        raise RunFailed(
            f"StallTimeout: no engine call and no problem-sample finished for {idle:.0f} s "
            f"(limit {limit:g} s; {self.total - self.done} problem-samples unfinished, {what}). "
            f"Finished rows are kept in {self.run_dir}; rerun with resume=true."
        )
