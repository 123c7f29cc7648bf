"""The run directory's lock: one process at a time works in a run directory.

`<run_dir>/run.lock` is locked with `fcntl.flock` (an OS lock: it dies with the process, SIGKILL
included, so there is never a stale lock to clean up) and holds the holder's pid, host and start
time, which a refused second process names. Two `resume=true` of one run started together would
otherwise both run every unfinished problem-sample (issue 12: 50 rows for 30, twice the calls).

On a shared filesystem, flock works across nodes on NFSv4 and Lustre (with `-o flock`); where it
does not, it degrades to a per-node lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from pdr.results.rundir import RunFailed

LOCK = "run.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks here; runs are not guarded
    fcntl = None  # type: ignore[assignment]


class RunDirBusy(RunFailed):
    """Another process holds the run directory's lock. The message names it (pid, host, start)."""


class RunDirLock:
    """`with RunDirLock(run_dir):` holds the directory's lock, or raises RunDirBusy at once."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunDirBusy(
                    f"{self.path.parent} is in use by {describe_holder(self.path)}; two processes in one run "
                    "directory would run the same problem-samples twice. Wait for it to finish (or stop it), "
                    "then resume=true again"
                ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the file stays: unlinking a lock file races with the next locker)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> RunDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def describe_holder(path: Path) -> str:
    """'pid 123 on host h, started 2026-01-01 10:00:00 UTC' from a lock file (what is known)."""
    info: dict[str, Any] = {}
    for _ in range(20):  # the holder writes its details just after it locks: a moment's grace
        try:
            info = json.loads(path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if info:
            break
        time.sleep(0.05)
    if not info:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info.get("started", 0))))
    return f"another process (pid {info.get('pid')} on host {info.get('host')}, started {started})"
