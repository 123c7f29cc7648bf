"""The run's limits (pdr.execution_guard): error accounting and the stall guard, on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pdr.config.engines import SGLangEngineConfig, SimEngineConfig
from pdr.execution_guard import STALL_ENV, RunGuard, stall_timeout_s
from pdr.results import RunFailed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Engine:
    in_flight: int = 0
    last_activity: float = 1000.0


def _guard(clock: Clock, total: int = 10, rate: float = 0.2, grading_timeout_s: float = 2.0) -> RunGuard:
    return RunGuard(
        SimEngineConfig(max_error_rate=rate), grading_timeout_s, total, Path("/runs/x"), clock=clock
    )


def _row(status: str = "correct", error_type: str | None = None) -> dict:
    return {"correct": status == "correct", "status": status, "error_type": error_type, "error": "boom"}


def test_errors_up_to_the_rate_are_tolerated_then_the_run_fails(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    guard = _guard(Clock())
    guard.row(_row())
    guard.row(_row("error", "EngineUnavailable"))
    guard.row(_row("error", "EngineUnavailable"))  # 2 of 10 allowed at 0.2
    assert (guard.done, guard.correct, guard.errors) == (3, 1, 2)
    with pytest.raises(
        RunFailed, match=r"3 of 10 .*max_error_rate=0.2.*EngineUnavailable.*/runs/x.*resume=true"
    ):
        guard.row(_row("error", "EngineUnavailable"))


def test_an_error_every_call_would_hit_stops_at_once(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    guard = _guard(Clock(), rate=1.0)
    with pytest.raises(RunFailed, match=r"AuthError: boom .*api_key_env.*first such error"):
        guard.row(_row("error", "AuthError"))


def test_stall_limits_depend_on_whether_engine_calls_are_outstanding(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    clock = Clock()
    guard = _guard(clock, grading_timeout_s=2.0)
    assert guard.grade_stall_s == 60 + 25 * 2.0
    engine = Engine(in_flight=3, last_activity=clock.now)
    clock.now += guard.stall_s  # at the limit: still fine
    guard.check_stall(engine)
    clock.now += 1
    with pytest.raises(RunFailed, match=r"StallTimeout.*3 engine calls outstanding.*resume=true"):
        guard.check_stall(engine)
    # No call outstanding: only grading can be pending, with its own (shorter) limit.
    idle = Engine(in_flight=0, last_activity=clock.now)
    guard.restart_clock()
    clock.now += guard.grade_stall_s - 1
    guard.check_stall(idle)
    guard.row(_row())  # a finished row is progress too
    clock.now += guard.grade_stall_s - 1
    guard.check_stall(idle)
    clock.now += 2
    with pytest.raises(RunFailed, match="grading is stuck"):
        guard.check_stall(idle)


def test_stall_timeout_covers_every_retry_or_the_environment(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    cfg = SGLangEngineConfig(timeout_s=10.0, max_retries=2, retry_backoff_max_s=5.0, max_downtime_s=100.0)
    # each attempt may time out, or be cut as stalled and wait out the server's downtime
    assert stall_timeout_s(cfg) == 3 * (10.0 + 5.0 + 100.0) + 60.0
    assert stall_timeout_s(SimEngineConfig(timeout_s=10.0, max_retries=0)) == 10.0 + 60.0
    monkeypatch.setenv(STALL_ENV, "2.5")
    assert stall_timeout_s(cfg) == 2.5
    assert _guard(Clock()).grade_stall_s == 2.5
    monkeypatch.setenv(STALL_ENV, "soon")
    with pytest.raises(RunFailed, match="PDR_STALL_TIMEOUT_S='soon'"):
        stall_timeout_s(cfg)
