"""The files of a run directory, and how they are read and replaced.

- results.jsonl: one row per finished (problem, sample), appended and fsync'ed as rows finish
  (`pdr.results.writer`); a resumed run may append a newer row for a (problem, sample): the last
  wins, and at the end of the attempt the file is rewritten (atomically) to exactly one row per
  problem-sample (`compact_jsonl`); errors.jsonl keeps the history.
- traces.jsonl: the full trace of each problem-sample (prompts, drafts, workspaces, outputs);
  compacted like results.jsonl.
- errors.jsonl: every error row of every attempt (a resume re-runs error rows, so results.jsonl's
  final rows may no longer show an error that happened): problem, sample, type, message, attempt.
- calls.sqlite: the call journal (pdr.engines.cache), for resume without re-sending calls.
- summary.json: metrics and the resolved config, written at the end (`pdr.results.summary`).
- run.json: the run's identity (run key, MLflow run id), for resume (`pdr.results.rundir`).
- config.json: the resolved config.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pdr.config.secrets import mask_secrets
from pdr.jsonl import read_jsonl

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
TRACES = "traces.jsonl"
SUMMARY = "summary.json"
ERRORS = "errors.jsonl"
JOURNAL = "calls.sqlite"  # the run's call journal (pdr.engines.cache)
RUN_INFO = "run.json"
CONFIG = "config.json"
# What a run logs as MLflow artifacts (besides Hydra's files and the trace viewer).
ARTIFACTS = (RESULTS, SUMMARY, CONFIG, TRACES, ERRORS)


def write_json(path: Path, data: Any) -> None:
    """Replace `path` atomically (write a temporary file, then rename); credentials in URLs masked
    (`pdr.config.secrets.mask_secrets`): these files are shown, copied and logged to MLflow."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = mask_secrets(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def final_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, sample): the last written wins (a resumed run may retry errors)."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        latest[(str(r["problem_id"]), int(r["sample"]))] = r
    return list(latest.values())


def compact_jsonl(path: Path) -> int:
    """Rewrite `path` (results.jsonl or traces.jsonl) to one line per (problem_id, sample): the
    last one written, in file order. Atomic (a temporary file, fsync'ed, then renamed over it);
    untouched when there is nothing to drop. Streams the file twice rather than holding it (traces
    can be large). Returns the number of lines dropped."""
    if not path.exists():
        return 0
    last: dict[tuple[str, int], int] = {}
    count = 0
    for i, row in enumerate(read_jsonl(path)):
        last[(str(row["problem_id"]), int(row["sample"]))] = i
        count = i + 1
    if count == len(last):
        return 0
    wanted = set(last.values())
    tmp = path.with_suffix(path.suffix + ".tmp")
    with path.open(encoding="utf-8") as f, tmp.open("w", encoding="utf-8") as out:
        i = -1
        for line in f:
            if not line.strip():
                continue
            i += 1
            if i in wanted:
                out.write(line if line.endswith("\n") else line + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return count - len(last)
