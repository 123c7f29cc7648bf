"""One SQLite file of finished engine calls (`CallStore`): the format shared by the run's journal
and the persistent cache, which `CachedEngine` (pdr.engines.cache) layers.

Table `calls`: key -> the call's completions as JSON (zlib-compressed or plain; either reads).
Concurrency: the jobs of a multirun may share the persistent file. SQLite in WAL mode (readers
never block, one writer at a time), `busy_timeout`, a retry on "database is locked" (`LOCK_WAIT_S`
in all, the engines' backoff shape through tenacity), `INSERT OR IGNORE` (two jobs computing the
same call keep the first; both are the same call), and short transactions.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from pdr.engines.base import Completion
from pdr.errors import PdrError

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_FILENAME = "calls.sqlite"
SCHEMA_VERSION = 1
# How long a write may wait for other processes' locks in total before it is given up (the call
# is then simply not cached: the cache is an optimisation, never a reason to fail a run).
LOCK_WAIT_S = 60.0
_BUSY_TIMEOUT_MS = 10_000  # SQLite's own wait per statement, inside each retry
_COMPLETION_FIELDS = frozenset(f.name for f in fields(Completion))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,       -- GenRequest.cache_key(engine identity)
    engine TEXT NOT NULL,       -- engine kind (sim, sglang, openai): for inspection only
    n INTEGER NOT NULL,         -- completions in value
    created REAL NOT NULL,      -- unix time
    value BLOB NOT NULL         -- JSON list of Completion dicts, zlib-compressed or plain
) WITHOUT ROWID
"""


class CacheError(PdrError):
    """A cache file cannot be opened or is not a pdr cache. The message names the file and the fix."""


def default_cache_path() -> Path:
    """`$PDR_CACHE_DIR/calls.sqlite` if that variable is set, else `~/.cache/pdr/calls.sqlite`."""
    root = os.environ.get("PDR_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "pdr"
    return base / CACHE_FILENAME


def resolve_cache_path(path: str | os.PathLike[str] | None) -> Path:
    """`cache.path` as a file path (None = `default_cache_path()`; `~` expanded)."""
    return default_cache_path() if path is None else Path(path).expanduser()


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def _with_lock_retry(fn: Callable[[], T], what: str, deadline_s: float = LOCK_WAIT_S) -> T:
    """Run `fn`, retrying while another process holds the lock (SQLITE_BUSY): 20 ms apart at
    first, doubling up to 1 s, for up to `deadline_s` in all; other errors raise at once.

    busy_timeout already waits inside SQLite; this covers the cases where SQLite returns BUSY at
    once (e.g. a WAL-mode switch or a read-to-write upgrade that would deadlock). The first
    attempt runs outside tenacity: nearly every statement succeeds at once, and a retrier's set-up
    (tens of microseconds) would cost about as much as the cached read itself.
    """
    try:
        return fn()
    except sqlite3.OperationalError as exc:
        if not _is_lock_error(exc):
            raise
        log.debug("%s: %s; retrying", what, exc)
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and _is_lock_error(e)),
        stop=stop_after_delay(deadline_s),
        wait=wait_exponential(multiplier=0.02, max=1.0),
        before_sleep=lambda state: log.debug(
            "%s: %s; retrying in %.2f s",
            what,
            state.outcome and state.outcome.exception(),
            state.next_action.sleep if state.next_action else 0.0,
        ),
        reraise=True,
    )
    return retrying(fn)


def encode_completions(completions: list[Completion], compress: bool = True) -> bytes:
    """JSON of the completions, zlib-compressed unless `compress=False`. Level 1: about twice as fast
    as the default on reasoning text and still ~5x smaller than the JSON."""
    return _encode_dicts([c.to_dict() for c in completions], compress)


def _encode_dicts(dicts: list[dict[str, Any]], compress: bool) -> bytes:
    data = json.dumps(dicts, default=str, ensure_ascii=False).encode("utf-8")
    return zlib.compress(data, 1) if compress else data


def decode_completions(blob: bytes) -> list[Completion]:
    """Completions from a stored value, compressed or plain (plain JSON starts with `[`, a zlib
    stream never does); fields unknown to this version of `Completion` are dropped (a cache written
    by a newer pdr still reads)."""
    raw = blob if blob[:1] == b"[" else zlib.decompress(blob)
    data = json.loads(raw)
    return [Completion.from_dict({k: v for k, v in d.items() if k in _COMPLETION_FIELDS}) for d in data]


class CallStore:
    """One SQLite file of finished calls: key -> the call's completions.

    Thread contract: the methods block; call them from one thread at a time (`CachedEngine` uses
    its single worker thread). `read_only=True` opens the file read-only and never writes; a
    missing file is then an empty store (it is not created).
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False, label: str = "cache"):
        self.path = Path(path)
        self.read_only = read_only
        self.label = label
        self._lock = threading.Lock()  # guards close() against a late call from the worker
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            raise CacheError(
                f"{label} {self.path}: cannot use it as a call cache ({exc}); delete the file "
                "(it only holds cached engine calls) or run with cache.mode=off"
            ) from exc
        except OSError as exc:
            raise CacheError(
                f"{label} {self.path}: {exc} (set cache.path or PDR_CACHE_DIR to a writable place)"
            ) from exc

    def _open(self) -> sqlite3.Connection | None:
        if self.read_only:
            if not self.path.exists():
                log.info(
                    "%s %s does not exist: nothing to reuse (read-only, not creating it)",
                    self.label,
                    self.path,
                )
                return None
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
            )
            self._check_version(conn)
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The first creation (WAL switch, table, version) is serialized across processes by a file
        # lock beside the store: jobs of a sweep started together open one new file at once.
        from filelock import FileLock

        with FileLock(str(self.path) + ".lock", timeout=LOCK_WAIT_S):
            return self._create()

    def _create(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit; each write is its own short transaction.
        conn = sqlite3.connect(
            str(self.path), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        _with_lock_retry(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), f"{self.label}: WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in the OS page
        # cache); only a power cut can lose the last commits, and then only cached calls.
        conn.execute("PRAGMA synchronous=NORMAL")
        self._check_version(conn)  # before creating the table: refuse someone else's database
        _with_lock_retry(lambda: conn.execute(_SCHEMA), f"{self.label}: schema")
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            _with_lock_retry(
                lambda: conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}"), f"{self.label}: version"
            )
        return conn

    def _check_version(self, conn: sqlite3.Connection) -> None:
        """CacheError unless `conn` is empty or a pdr call cache of a schema this pdr reads."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CacheError(
                f"{self.label} {self.path} was written by a newer pdr (schema {version} > {SCHEMA_VERSION}); "
                "upgrade pdr, or point cache.path elsewhere"
            )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "calls" not in tables and tables:
            raise CacheError(
                f"{self.label} {self.path} is an SQLite file but not a pdr call cache; point cache.path elsewhere"
            )

    @property
    def available(self) -> bool:
        """False for a read-only store whose file does not exist (and after `close`)."""
        return self._conn is not None

    def keys(self) -> set[str]:
        """Every key in the store (an unreadable store: none, logged)."""
        with self._lock:
            if self._conn is None:
                return set()
            try:
                return {r[0] for r in self._conn.execute("SELECT key FROM calls")}
            except sqlite3.OperationalError as exc:
                log.warning(
                    "%s %s: cannot list its keys (%s); treating it as empty", self.label, self.path, exc
                )
                return set()

    def get_raw(self, key: str) -> bytes | None:
        """The encoded value stored under `key`, or None. A failed read is a miss (logged)."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                row = _with_lock_retry(
                    lambda: self._conn.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone(),  # type: ignore[union-attr]
                    f"{self.label}: read",
                )
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # a read-only open of a file still being created
                    return None
                log.warning("%s %s: read failed (%s); treating as a miss", self.label, self.path, exc)
                return None
        return None if row is None else row[0]

    def decode(self, key: str, blob: bytes) -> list[Completion] | None:
        """`decode_completions(blob)`, or None (logged) if the entry under `key` is unreadable."""
        try:
            return decode_completions(blob)
        except (zlib.error, ValueError, TypeError) as exc:
            log.warning(
                "%s %s: unreadable entry %s… (%s); treating as a miss", self.label, self.path, key[:12], exc
            )
            return None

    def put(self, key: str, value: bytes, n: int, engine: str) -> bool:
        """Store an encoded entry (first writer wins). False if it could not be written (logged)."""
        return self.put_many([(key, engine, n, value)])

    def put_many(self, entries: list[tuple[str, str, int, bytes]]) -> bool:
        """Store (key, engine, n, value) entries in one transaction (first writer of a key wins).
        False if they could not be written (logged): then none of them is stored."""
        if self.read_only or not entries:
            return not entries
        now = time.time()
        rows = [(key, engine, n, now, value) for key, engine, n, value in entries]
        with self._lock:
            if self._conn is None:
                return False
            conn = self._conn

            def transaction() -> None:
                # IMMEDIATE: take the write lock up front, so that waiting for another process
                # happens here (busy_timeout, then the retry loop) and never half-way through.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        "INSERT OR IGNORE INTO calls (key, engine, n, created, value) VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

            try:
                _with_lock_retry(transaction, f"{self.label}: write")
                return True
            except sqlite3.Error as exc:
                log.warning(
                    "%s %s: write failed (%s); %d call(s) not cached", self.label, self.path, exc, len(rows)
                )
                return False

    def count(self) -> int:
        """Entries in the store (0 for a missing read-only file)."""
        with self._lock:
            if self._conn is None:
                return 0
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def count_entries(path: str | os.PathLike[str]) -> int:
    """Entries in a cache or journal file (0 if it does not exist). Opens it read-only."""
    p = Path(path)
    if not p.exists():
        return 0
    store = CallStore(p, read_only=True, label="cache")
    try:
        return store.count()
    finally:
        store.close()
