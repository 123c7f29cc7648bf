"""The engines' retry policy (pdr.engines.retry): backoff delays and the readiness poll."""

from __future__ import annotations

import asyncio
import time

import pytest

from pdr.engines.retry import RETRYABLE_ERRORS, Backoff, poll_until
from pdr.errors import EngineRequestError, EngineUnavailable


def test_backoff_doubles_with_equal_jitter_up_to_the_cap() -> None:
    b = Backoff(0.5, 3.0)
    for retry, cap in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        delays = [b.delay(retry) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > cap / 10  # jittered, not lock-step


def test_backoff_honours_retry_after_within_the_cap() -> None:
    b = Backoff(0.1, 5.0)
    assert b.delay(1, retry_after=2.0) == 2.0
    assert b.delay(1, retry_after=60.0) == 5.0  # a server cannot park a client for long


def test_only_unavailable_is_retryable() -> None:
    assert issubclass(EngineUnavailable, RETRYABLE_ERRORS)
    assert not issubclass(EngineRequestError, RETRYABLE_ERRORS)


def test_poll_until_returns_the_first_answer() -> None:
    answers = iter([None, None, "ready"])
    calls = []

    async def probe() -> str | None:
        calls.append(time.monotonic())
        return next(answers)

    assert (
        asyncio.run(poll_until(probe, timeout_s=5, first_s=0.01, max_s=0.02, on_timeout=RuntimeError))
        == "ready"
    )
    assert len(calls) == 3


def test_poll_until_times_out_at_the_deadline_with_its_error() -> None:
    probes = 0

    async def probe() -> None:
        nonlocal probes
        probes += 1
        return None

    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="not ready"):
        asyncio.run(
            poll_until(
                probe,
                timeout_s=0.3,
                first_s=0.05,
                max_s=10.0,
                on_timeout=lambda: EngineUnavailable("not ready"),
            )
        )
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.0  # never sleeps far past the deadline, however long the interval
    assert probes >= 3


def test_poll_until_stops_at_an_exception_from_the_probe() -> None:
    async def probe() -> None:
        raise EngineRequestError("401: key rejected", 401)

    with pytest.raises(EngineRequestError, match="key rejected"):
        asyncio.run(poll_until(probe, timeout_s=5, first_s=0.01, max_s=0.01, on_timeout=RuntimeError))


def test_poll_until_reports_progress_on_long_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    import pdr.engines.retry as retry

    monkeypatch.setattr(retry, "PROGRESS_EVERY_S", 0.05)
    seen: list[float] = []
    answers = iter([None] * 8 + [True])

    async def probe() -> bool | None:
        return next(answers)

    asyncio.run(
        poll_until(
            probe,
            timeout_s=5,
            first_s=0.03,
            max_s=0.03,
            on_timeout=RuntimeError,
            progress=lambda: seen.append(1),
        )
    )
    assert 1 <= len(seen) <= 5
