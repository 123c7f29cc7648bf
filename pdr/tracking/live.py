"""Live progress of a running job: the console bar counts engine calls (with an ETA), and MLflow
gets metrics with a step every few seconds, so its UI draws curves while a long run goes.

One `RunProgress` per run, created by the runner:

    progress = RunProgress(tracker, total_samples=len(todo), calls_per_sample=len(graph.ops), ...)
    executor = Executor(progress.watch(engine), ...)   # counts calls and tokens as they return
    progress.row(row)                                  # each finished problem-sample (event loop)
    progress.close()                                   # last point, bar closed (idempotent)

Counting is a few integer additions on the event loop; everything slow (MLflow's HTTP/SQLite
writes, drawing the bar) happens on the "pdr-live" daemon thread, which never blocks the loop: a
failing MLflow write is logged once and the thread goes on. Metrics, step = seconds since start:
`live/problem_samples_done`, `live/accuracy` (running, over finished problem-samples),
`live/calls` (requests answered, cache hits included), `live/tokens` (input + output so far),
`live/tokens_per_s` (over the last interval), `live/errors`, `live/fraction_done` (calls / estimate).

The call estimate starts at `calls_per_sample` per problem-sample (the graph's step count) and is
refined by the finished rows' `engine_calls`, so the ETA settles once rows finish.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _Watched:
    """The engine as the executor uses it (`generate`, `count_tokens`, `name`, `simulated`), with
    `generate` counting the completions' calls and tokens (same contract). Explicit members, no
    attribute pass-through: what the executor needs from an engine is the Engine protocol."""

    def __init__(self, engine: Any, progress: RunProgress):
        self._engine = engine
        self._progress = progress
        self.name = engine.name
        self.simulated = engine.simulated
        self.count_tokens = engine.count_tokens

    async def generate(self, request: Any) -> Any:
        out = await self._engine.generate(request)
        p = self._progress
        p.calls += 1
        p.tokens += sum(c.prompt_tokens + c.completion_tokens for c in out)
        return out


class RunProgress:
    """A run's live counters, its console bar and its live MLflow metrics (module docstring).

    `log_metrics(metrics, step)` is the MLflow run's (None: console only); `interval_s` the seconds
    between MLflow points (0: none); `show_bar` draws the tqdm bar on stderr."""

    def __init__(self, log_metrics: Callable[[dict[str, float], int], None] | None, total_samples: int,
                 calls_per_sample: int, interval_s: float = 5.0, show_bar: bool = False, desc: str = "") -> None:
        self.total_samples = total_samples
        self.calls_per_sample = max(1, calls_per_sample)
        self.calls = 0
        self.tokens = 0
        self.done = 0
        self.correct = 0
        self.errors = 0
        self._row_calls = 0  # engine_calls of the finished rows (refines the estimate)
        self._log_metrics = log_metrics
        self._interval = interval_s
        self._started = time.monotonic()
        self._last: tuple[float, int] = (self._started, 0)
        self._step = 0
        self._stop = threading.Event()
        self._failed = False
        self._bar = None
        if show_bar and total_samples:
            from tqdm import tqdm  # only when a bar is shown (~25 ms of import)

            self._bar = tqdm(total=self.estimated_calls(), desc=desc, unit="call", file=sys.stderr,
                             dynamic_ncols=True, leave=True)
        self._thread: threading.Thread | None = None
        if self._bar is not None or (log_metrics is not None and interval_s > 0):
            self._thread = threading.Thread(target=self._work, name="pdr-live", daemon=True)
            self._thread.start()

    def watch(self, engine: Any) -> Any:
        """`engine` with its calls and tokens counted (pass this to the executor)."""
        return _Watched(engine, self)

    def row(self, row: dict[str, Any]) -> None:
        """Count one finished problem-sample (event loop thread)."""
        self.done += 1
        self.correct += bool(row.get("correct"))
        self.errors += row.get("status") == "error"
        self._row_calls += int(row.get("engine_calls") or 0)

    def estimated_calls(self) -> int:
        per = self._row_calls / self.done if self.done and self._row_calls else self.calls_per_sample
        left = self.total_samples - self.done
        # The calls of unfinished problem-samples already sent count towards their own estimate.
        return max(self.calls, int(round(self._row_calls + per * left)) if self.done else int(per * left))

    def snapshot(self) -> dict[str, float]:
        now = time.monotonic()
        t_last, tok_last = self._last
        tokens = self.tokens
        self._last = (now, tokens)
        est = self.estimated_calls()
        m = {
            "live/problem_samples_done": float(self.done),
            "live/calls": float(self.calls),
            "live/tokens": float(tokens),
            "live/tokens_per_s": (tokens - tok_last) / max(now - t_last, 1e-6),
            "live/errors": float(self.errors),
            "live/fraction_done": self.calls / est if est else 0.0,
        }
        if self.done:
            m["live/accuracy"] = self.correct / self.done
        return m

    def _emit(self) -> None:
        if self._log_metrics is None or self._failed:
            return
        try:
            self._log_metrics(self.snapshot(), self._step)
            self._step += 1
        except Exception as exc:  # noqa: BLE001 - live metrics are a view; the run goes on
            self._failed = True
            log.warning("live metrics stopped: %s: %s", type(exc).__name__, exc)

    def _draw(self) -> None:
        bar = self._bar
        if bar is None:
            return
        bar.total = self.estimated_calls()
        bar.n = self.calls
        post = f"rows {self.done}/{self.total_samples}"
        if self.done:
            post += f", acc {self.correct / self.done:.2f}"
        if self.errors:
            post += f", err {self.errors}"
        bar.set_postfix_str(post, refresh=False)
        bar.refresh()

    def _work(self) -> None:
        next_log = time.monotonic() + self._interval
        tick = min(0.5, self._interval) if self._interval > 0 else 0.5
        while not self._stop.wait(tick):
            self._draw()
            if self._interval > 0 and time.monotonic() >= next_log:
                next_log += self._interval
                self._emit()

    def close(self) -> None:
        """Stop the thread, log a last point, close the bar (idempotent; any thread)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._interval > 0:
            self._emit()
        if self._bar is not None:
            self._draw()
            self._bar.close()
