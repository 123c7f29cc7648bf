"""The run directory's files, written incrementally and durably.

- results.jsonl: one row per finished (problem, sample), appended, flushed and fsync'ed as each
  one finishes, so a crash (even SIGKILL) loses nothing that finished.
- traces.jsonl: the full trace of each problem-sample (prompts, drafts, workspaces, outputs).
- errors.jsonl: every error row of every attempt (a resume re-runs error rows, so results.jsonl's
  final rows may no longer show an error that happened): problem, sample, type, message, attempt.
- calls.sqlite: the call journal (pdr.engines.cache), for resume without re-sending calls.
- summary.json: metrics and the resolved config, written at the end.
- run.json: the run's identity (run key, MLflow run id), for resume.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
TRACES = "traces.jsonl"
SUMMARY = "summary.json"
ERRORS = "errors.jsonl"
JOURNAL = "calls.sqlite"  # the run's call journal (pdr.engines.cache)
RUN_INFO = "run.json"


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a torn last line (a crash mid-write) is skipped with a warning."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                log.warning("%s: ignoring a torn last line (an interrupted write)", path)
            else:
                raise


class ResultsWriter:
    """Appends rows and traces to a run directory; each row is fsync'ed before `write` returns.

    Not thread-safe: call from one thread (the runner's event loop)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self._repair(run_dir / RESULTS)
        self._repair(run_dir / TRACES)
        self._results: IO[str] = (run_dir / RESULTS).open("a", encoding="utf-8")
        self._traces: IO[str] = (run_dir / TRACES).open("a", encoding="utf-8")
        self._errors: IO[str] | None = None  # opened at the first error

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

    def existing_rows(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.run_dir / RESULTS))

    def write(self, row: dict[str, Any], trace: dict[str, Any] | None, attempt: int | None = None) -> None:
        """Append one finished row (and its trace). The row is durable when this returns; an error
        row is also logged to errors.jsonl with `attempt` (the run's 1-based attempt number)."""
        if trace is not None:
            self._traces.write(json.dumps(trace, ensure_ascii=False) + "\n")
            self._traces.flush()
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
            self._errors.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._errors.flush()
        self._results.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._results.flush()
        os.fsync(self._results.fileno())

    def close(self) -> None:
        """Close the files (idempotent)."""
        self._results.close()
        self._traces.close()
        if self._errors is not None:
            self._errors.close()


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def final_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, sample): the last written wins (a resumed run may retry errors)."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        latest[(str(r["problem_id"]), int(r["sample"]))] = r
    return list(latest.values())
