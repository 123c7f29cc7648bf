"""Reading a run directory's files in the export tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def traces(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "traces.jsonl").read_text().splitlines() if line.strip()]


def rows(run_dir: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[(r["problem_id"], r["sample"])] = r
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("calls.sqlite*", "*.lock"))
    return dst
