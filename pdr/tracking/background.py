"""The MLflow run started beside the run's first calls, never in front of them (issue 14, start-up).

`import mlflow` (~1.5 s) and a store's start (a new SQLite store's tables: ~1-2 s more) used to
precede the first engine call. Here they run on the "pdr-tracking-start" daemon thread:

    bg = BackgroundStart(prewarm)       # at once: `import mlflow` while data and engine load
    ...                                  # run.json written, the engine started
    bg.start(create, on_ready)          # the MLflow run is created (on the thread) while calls go out
    ...                                  # rows are written; they NEVER wait for MLflow
    tracker = bg.result()               # at the end: the run (waits for it), or raises its error
    bg.cancel()                         # on a failure before start(): nothing is created

`on_ready(tracker)` runs on the thread once the MLflow run exists (the runner records its id in
run.json there). A run killed before that point has no id in run.json: its MLflow run (if it was
created) carries the tag `pdr.run_uid` of run.json, by which a resume finds it instead of creating a
second one (`pdr.tracking.mlflow_run.start_tracking`). Live metrics logged before the MLflow run
exists are kept and logged once it does (`log_metrics`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def prewarm_mlflow() -> None:
    """The import part of an MLflow start: no store is opened, no file written (a run that fails
    before its MLflow run is created leaves no store behind)."""
    import mlflow  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401


class BackgroundStart:
    """A tracker created on a daemon thread (module docstring). Thread-safe."""

    def __init__(self, prewarm: Callable[[], None] | None = None) -> None:
        self._prewarm = prewarm
        self._create: Callable[[], Any] | None = None
        self._on_ready: Callable[[Any], None] | None = None
        self._go = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._tracker: Any = None
        self._error: BaseException | None = None
        self._early: list[tuple[dict[str, float], int]] = []  # live points from before the run existed
        self._thread = threading.Thread(target=self._work, name="pdr-tracking-start", daemon=True)
        self._thread.start()

    def start(self, create: Callable[[], Any], on_ready: Callable[[Any], None] | None = None) -> None:
        """Create the tracker (`create()`) on the thread, once the prewarm is done."""
        self._create, self._on_ready = create, on_ready
        self._go.set()

    def cancel(self) -> None:
        """Create nothing (a failure before `start`); a no-op after it."""
        self._go.set()

    @property
    def started(self) -> bool:
        """Whether `start` was called (the MLflow run is, or is being, created)."""
        return self._create is not None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _work(self) -> None:
        try:
            if self._prewarm is not None:
                self._prewarm()
        except Exception as exc:  # noqa: BLE001 - the creation below meets (and reports) the same error
            log.debug("MLflow prewarm failed: %s: %s", type(exc).__name__, exc)
        self._go.wait()
        create = self._create
        if create is None:
            self._done.set()
            return
        tracker = None
        try:
            tracker = create()
            if tracker is not None and self._on_ready is not None:
                self._on_ready(tracker)
        except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread by result()
            log.error("MLflow tracking could not start: %s: %s (the run goes on; its results are kept on disk)",
                      type(exc).__name__, exc)
            with self._lock:
                self._error, self._early = exc, []
            self._done.set()
            return
        while True:  # points that arrive while the early ones are logged are logged in turn
            with self._lock:
                early, self._early = self._early, []
                if not early:
                    self._tracker = tracker
                    break
            for metrics, step in early:
                try:
                    tracker.log_metrics(metrics, step)
                except Exception as exc:  # noqa: BLE001 - live metrics are a view; the run goes on
                    log.warning("early live metrics not logged: %s: %s", type(exc).__name__, exc)
                    break
        self._done.set()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """The tracker's `log_metrics`; points logged before it exists are logged once it does
        (and dropped if it never does)."""
        with self._lock:
            tracker = self._tracker
            if tracker is None:
                if self._error is None:
                    self._early.append((metrics, step))
                return
        tracker.log_metrics(metrics, step)

    def result(self, timeout: float | None = None) -> Any:
        """The tracker once it exists (None: `create` returned None, or it was cancelled); raises
        the creation's error, or TimeoutError if it is not done within `timeout` seconds."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the MLflow run was not started within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._tracker

    def settled(self, timeout: float) -> Any:
        """The tracker of a failing or interrupted run, to mark it FAILED/KILLED: waited for at most
        `timeout` s (a second Ctrl-C stops waiting); None if it was never started, failed, or is not
        there in time. A run left RUNNING this way is continued by resume=true (its pdr.run_uid)."""
        if not self.started:
            return None
        try:
            return self.result(timeout)
        except KeyboardInterrupt:
            log.warning("not waiting for the MLflow run to start; resume=true continues it")
        except TimeoutError as exc:
            log.warning("%s; it stays RUNNING in MLflow until resume=true continues it", exc)
        except Exception as exc:  # noqa: BLE001 - its failure was reported when it happened
            log.debug("MLflow tracking had failed: %s", exc)
        return None
