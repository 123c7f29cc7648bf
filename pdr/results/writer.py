"""results.jsonl, traces.jsonl and errors.jsonl, written incrementally and durably.

Rows are appended, flushed and fsync'ed by a writer thread as they finish (rows finishing together
share one fsync); a crash (even SIGKILL) loses only the rows not yet written (normally those of the
last few milliseconds), whose problem-samples a resume re-runs. The files: `pdr.results.files`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pdr.config.secrets import mask_secrets
from pdr.results.files import ERRORS, RESULTS, TRACES

log = logging.getLogger(__name__)

_STOP = object()  # the writer thread's last item


class ResultsWriter:
    """Appends rows and traces to a run directory, on one writer thread ("pdr-results").

    `write` only queues: serialising a trace and fsync'ing cost ~0.5-1 ms per row, which the event
    loop should not wait for. The thread writes the queued rows in order, each trace before its
    row, and makes each batch durable with one fsync of results.jsonl (group commit: rows that
    finish together share it). A row is durable once `on_durable` has been called for it, and every
    queued row is by the time `flush` or `close` returns; so a run that reports from the files after
    `close` (summary.json, MLflow) never reports a row that is not on disk. A SIGKILL can lose the
    rows queued in the last milliseconds (each line is whole or cut and repaired on reopening); a
    resume re-runs their problem-samples.

    `write`, `flush` and `close` are called from one thread (the runner's event loop, or after it
    stopped); `on_durable(count)` is called on the writer thread after each batch's fsync.
    """

    def __init__(self, run_dir: Path, on_durable: Callable[[int], None] | None = None):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self._repair(run_dir / RESULTS)
        self._repair(run_dir / TRACES)
        self._results: IO[str] = (run_dir / RESULTS).open("a", encoding="utf-8")
        self._traces: IO[str] = (run_dir / TRACES).open("a", encoding="utf-8")
        self._errors: IO[str] | None = None  # opened at the first error
        self.on_durable = on_durable  # may be set later, before the first write
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._failure: BaseException | None = None  # the writer thread's error, raised by write/close
        self._reported = False
        self._closed = False
        # Daemon: a caller that never closes must not keep the interpreter alive (run() always does).
        self._thread = threading.Thread(target=self._work, name="pdr-results", daemon=True)
        self._thread.start()

    @staticmethod
    def _repair(path: Path) -> None:
        """Cut a torn last line left by a killed writer, so appends start on a clean line."""
        if not path.exists() or path.stat().st_size == 0:
            return
        with path.open("rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)

    def write(
        self,
        row: dict[str, Any],
        trace: dict[str, Any] | None,
        attempt: int | None = None,
        before: Callable[[], object] | None = None,
    ) -> None:
        """Queue one finished row (and its trace); returns at once. An error row is also logged to
        errors.jsonl with `attempt` (the run's 1-based attempt number). `before()` is called on the
        writer thread before the row is written (the runner waits there for the row's calls to be
        journaled). Raises the writer thread's error (e.g. a full disk) if it has failed."""
        if self._closed:
            raise ValueError(f"{self.run_dir}: results writer is closed")
        self._raise_failure()
        self._queue.put((row, trace, attempt, before))

    def flush(self) -> None:
        """Return once every row queued so far is written and fsync'ed (or the writer has failed:
        `write`/`close` raise that). Never raises."""
        if not self._closed and self._thread.is_alive():
            done = threading.Event()
            self._queue.put(done)
            done.wait()

    def close(self) -> None:
        """Write and fsync everything queued, stop the thread, close the files (idempotent). Raises
        the writer thread's error if it failed and no `write`/`flush` has raised it yet."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
            self._results.close()
            self._traces.close()
            if self._errors is not None:
                self._errors.close()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None and not self._reported:
            self._reported = True
            raise self._failure

    # ---- the writer thread ---------------------------------------------------------------------

    def _work(self) -> None:
        stop = False
        while not stop:
            items = [self._queue.get()]
            while True:  # everything queued meanwhile goes into this batch
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [i for i in items if isinstance(i, tuple)]
            stop = any(i is _STOP for i in items)
            if rows and self._failure is None:
                try:
                    self._write_batch(rows)
                except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread
                    log.error("%s: writing results failed: %s: %s", self.run_dir, type(exc).__name__, exc)
                    self._failure = exc
            for i in items:
                if isinstance(i, threading.Event):
                    i.set()

    def _write_batch(self, rows: list[tuple[Any, ...]]) -> None:
        for row, trace, attempt, before in rows:
            if before is not None:
                before()
            if trace is not None:
                # Masked: an error message may quote the engine's URL with its credentials.
                self._traces.write(mask_secrets(json.dumps(trace, ensure_ascii=False)) + "\n")
            if row.get("status") == "error":
                if self._errors is None:
                    self._repair(self.run_dir / ERRORS)
                    self._errors = (self.run_dir / ERRORS).open("a", encoding="utf-8")
                entry = {
                    "problem_id": row.get("problem_id"),
                    "sample": row.get("sample"),
                    "error_type": row.get("error_type"),
                    "error": row.get("error"),
                    "attempt": attempt,
                    "time": round(time.time(), 3),
                }
                self._errors.write(mask_secrets(json.dumps(entry, ensure_ascii=False)) + "\n")
        # Traces and error entries reach the OS before the rows that refer to them.
        self._traces.flush()
        if self._errors is not None:
            self._errors.flush()
        for row, *_ in rows:
            self._results.write(mask_secrets(json.dumps(row, ensure_ascii=False)) + "\n")
        self._results.flush()
        os.fsync(self._results.fileno())
        if self.on_durable is not None:
            try:
                self.on_durable(len(rows))
            except Exception:  # noqa: BLE001 - a progress callback must not stop the writing
                log.exception("results writer: on_durable callback failed")
