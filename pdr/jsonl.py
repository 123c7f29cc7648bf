"""The one JSONL reader: results.jsonl, traces.jsonl (plain or gzip-compressed), errors.jsonl.

Streamed with one line of look-ahead, so a multi-GB traces.jsonl is never held whole. Only the
last line may be torn (a crash mid-append): it is skipped with a warning. A bad line anywhere else
is corruption, not an interrupted write, and raises (json.JSONDecodeError) instead of silently
dropping a problem-sample.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file (`.gz`: gzip-compressed); nothing when it does not exist."""
    if not path.exists():
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        prev: str | None = None
        for line in f:
            if prev is not None and prev.strip():
                yield json.loads(prev)  # not the last line: corruption here is an error
            prev = line
    if prev is not None and prev.strip():
        try:
            yield json.loads(prev)
        except json.JSONDecodeError:
            log.warning("%s: ignoring a torn last line (an interrupted write)", path)
