"""The engines' one retry policy: what is retried, how long to wait, when to give up.

* What: `pdr.errors.RETRYABLE_ERRORS` (an `EngineUnavailable`: 408/429/502/503/504, resets,
  timeouts). Anything else fails at once. Only engines retry (the executor and strategies never).
* How long: `Backoff` — exponential from `engine.retry_backoff_s`, doubling per retry, capped at
  `engine.retry_backoff_max_s`, with equal jitter (so a fleet of requests cut by one server
  restart does not come back in lock-step), and at least the server's `Retry-After` (capped).
* Waiting for something to come up (a server's readiness, a model listing, a launched process):
  `poll_until`, on tenacity, a growing interval that never sleeps past the deadline.

The request loop in `HttpClient.request_json` applies `Backoff` and `RETRYABLE_ERRORS` by hand
instead of through tenacity: on the success path (nearly every call) the same policy through
tenacity costs ~30 us of client CPU per call against ~0.4 us for the plain loop, and the engine's
whole client CPU per call goes from 0.23 to 0.32 ms (experiments/benchmarks/
bench_client_overhead.py, "request retry loop: plain vs tenacity"; 2000 calls behind 64 slots).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, wait_exponential

from pdr.errors import RETRYABLE_ERRORS

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["RETRYABLE_ERRORS", "Backoff", "poll_until"]

# How often a long wait says that it is still waiting.
PROGRESS_EVERY_S = 30.0


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts of one request. Units: seconds."""

    base_s: float
    max_s: float

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Delay before retry number `retry` (1-based): base·2^(retry−1), capped, with equal
        jitter (half fixed, half uniform); at least `retry_after` (itself capped at `max_s`)."""
        cap = min(self.max_s, self.base_s * (2 ** (retry - 1)))
        delay = cap / 2 + random.uniform(0, cap / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_s))
        return delay


async def poll_until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float,
    first_s: float,
    max_s: float,
    factor: float = 1.5,
    on_timeout: Callable[[], BaseException],
    progress: Callable[[], None] | None = None,
) -> T:
    """Await `probe()` until it returns something other than None, and return that.

    Between probes it sleeps `first_s`, then `factor` times longer each time up to `max_s`,
    never past the deadline (so the last probe is at `timeout_s`). After the deadline it raises
    `on_timeout()`. An exception from `probe` ends the wait at once (the probe decides what
    "not yet" is). `progress()`, if given, is called about every 30 s of waiting (a log line).
    """
    deadline = time.monotonic() + timeout_s
    growing = wait_exponential(multiplier=first_s, exp_base=factor, max=max_s)
    next_progress = time.monotonic() + PROGRESS_EVERY_S

    def wait(state: RetryCallState) -> float:
        return min(growing(state), max(0.0, deadline - time.monotonic()))

    def before_sleep(state: RetryCallState) -> None:
        nonlocal next_progress
        if progress is not None and time.monotonic() >= next_progress:
            progress()
            next_progress = time.monotonic() + PROGRESS_EVERY_S

    def give_up(state: RetryCallState) -> Any:
        raise on_timeout()

    retrying = AsyncRetrying(
        retry=retry_if_result(lambda result: result is None),
        stop=lambda state: time.monotonic() >= deadline,
        wait=wait,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
    return await retrying(probe)
