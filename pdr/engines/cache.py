"""The call cache: finished engine calls stored in SQLite, so nothing finished is ever sent twice.

Two stores, one format (`CallStore`), layered by `CachedEngine`:

- the **journal** `<run_dir>/calls.sqlite`: always on for a run, whatever `cache.mode` says. Every
  call that finishes is recorded there before its problem-sample moves on, so a killed run
  (SIGKILL included) started again with `resume=true` re-sends none of its finished calls: the
  problem-samples that were in flight are re-run, and their finished calls come back from here.
- the **persistent cache** (`cache.path`, default `~/.cache/pdr/calls.sqlite` or
  `$PDR_CACHE_DIR/calls.sqlite`): shared by every run on the machine (`cache.mode=on`; `auto` turns
  it on for real engines, off for the simulated one). Re-running an identical experiment makes no
  engine call; changing only a later round (widths [4,2] -> [4,3]) reuses the earlier rounds.

Key: `GenRequest.cache_key(engine.identity())` = sha256 of (engine identity, rendered messages,
sampling params, n, seed). The seed is derived from (run seed, problem, sample, step, kind, branch),
so "sample 3 of problem 7, round 2" is a different key from sample 4, and the same key in every
run that asks the same question: a cached call is exactly the call the run would have made.

Value: the call's `Completion`s (zlib-compressed JSON), served back marked
`meta["from_cache"] = True`. Budgets still count their tokens (the paper's budgets measure the
strategy, not the cache); the run reports how many calls were served from which store.

Nothing else is stored: no prompt text, no engine URL, no headers. Requests carry no secrets (the
API key lives only in the HTTP client), so none can reach a cache file.

Concurrency: the jobs of a multirun may share the persistent file. SQLite in WAL mode (readers
never block, one writer at a time), `busy_timeout`, a retry loop on "database is locked",
`INSERT OR IGNORE` (two jobs computing the same call keep the first; both are the same call), and
one short transaction per write. All SQLite work runs on one worker thread per `CachedEngine`, so
a writer waiting for another process's lock never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from pdr.engines.base import Completion, GenRequest
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
    value BLOB NOT NULL         -- zlib(JSON list of Completion dicts)
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
    """Run `fn`, retrying while another process holds the lock (SQLITE_BUSY), up to `deadline_s`.

    busy_timeout already waits inside SQLite; this loop covers the cases where SQLite returns BUSY
    at once (e.g. a WAL-mode switch or a read-to-write upgrade that would deadlock).
    """
    start = time.monotonic()
    delay = 0.02
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_lock_error(exc) or time.monotonic() - start > deadline_s:
                raise
            log.debug("%s: %s; retrying in %.2f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def encode_completions(completions: list[Completion]) -> bytes:
    """zlib(JSON) of the completions. Level 1: about twice as fast as the default on reasoning
    text and still ~5x smaller than the JSON; the cost here is per call, the disk is cheap."""
    data = json.dumps([c.to_dict() for c in completions], default=str, ensure_ascii=False)
    return zlib.compress(data.encode("utf-8"), 1)


def decode_completions(blob: bytes) -> list[Completion]:
    """Completions from a stored value; fields unknown to this version of `Completion` are dropped
    (a cache written by a newer pdr still reads)."""
    data = json.loads(zlib.decompress(blob).decode("utf-8"))
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

    def get(self, key: str) -> list[Completion] | None:
        """The completions stored under `key`, or None. An unreadable entry is a miss (logged)."""
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
        if row is None:
            return None
        try:
            return decode_completions(row[0])
        except (zlib.error, ValueError, TypeError) as exc:
            log.warning(
                "%s %s: unreadable entry %s… (%s); treating as a miss", self.label, self.path, key[:12], exc
            )
            return None

    def put(self, key: str, value: bytes, n: int, engine: str) -> bool:
        """Store an encoded entry (first writer wins). False if it could not be written (logged)."""
        if self.read_only:
            return False
        with self._lock:
            if self._conn is None:
                return False
            conn = self._conn
            try:
                _with_lock_retry(
                    lambda: conn.execute(
                        "INSERT OR IGNORE INTO calls (key, engine, n, created, value) VALUES (?, ?, ?, ?, ?)",
                        (key, engine, n, time.time(), value),
                    ),
                    f"{self.label}: write",
                )
                return True
            except sqlite3.Error as exc:
                log.warning("%s %s: write failed (%s); this call is not cached", self.label, self.path, exc)
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


class CachedEngine:
    """Any engine behind the journal and (optionally) the persistent cache. Same protocol as the
    engine it wraps: start/generate/close/identity/info and every other attribute pass through.

    Lookup order: journal, then persistent cache. A hit is written back to the writable stores that
    missed it (so a run directory's journal alone is enough to resume it). A miss goes to the
    engine; its completions are stored in every writable store before `generate` returns.

    Counters (read them after the run): `calls` = requests sent to the wrapped engine (failed ones
    included); `hits` = calls served from a store, by store in `hits_by_store`; `write_failures`.

    `path`: the persistent cache file (None = `default_cache_path()`); `persistent=False`: none.
    `read_only`: the persistent cache is only read (the journal, being the run's own, is written).
    `journal`: the run's journal file, or None for none.
    """

    def __init__(
        self,
        engine: Any,
        path: str | os.PathLike[str] | None,
        read_only: bool = False,
        *,
        journal: str | os.PathLike[str] | None = None,
        persistent: bool = True,
    ):
        self.engine = engine
        self.stores: list[CallStore] = []
        if journal is not None:
            self.stores.append(CallStore(journal, read_only=False, label="journal"))
        self.persistent_path = resolve_cache_path(path) if persistent else None
        if self.persistent_path is not None:
            try:
                self.stores.append(CallStore(self.persistent_path, read_only=read_only, label="cache"))
            except CacheError:
                for s in self.stores:
                    s.close()
                raise
        self.read_only = read_only
        self.calls = 0
        self.hits = 0
        self.hits_by_store: dict[str, int] = {s.label: 0 for s in self.stores}
        self.write_failures = 0
        self.last_activity = time.monotonic()  # last time a call finished (or failed): stall detection
        self.in_flight = 0  # calls inside generate() now (the runner's stall guard reads it)
        # One worker thread owns every SQLite operation: serialised, and off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdr-cache")
        self._closed = False

    # ---- protocol passthrough ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def simulated(self) -> bool:
        return bool(getattr(self.engine, "simulated", False))

    def identity(self) -> str:
        return self.engine.identity()

    def info(self) -> dict[str, Any]:
        return self.engine.info() if hasattr(self.engine, "info") else {}

    def __getattr__(self, item: str) -> Any:
        # Only reached for attributes not defined here (count_tokens, limiter, cfg ...).
        if item == "engine":  # not yet set (during __init__ failure): avoid recursion
            raise AttributeError(item)
        return getattr(self.engine, item)

    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        """Close the wrapped engine, then the stores. Safe to call twice."""
        try:
            await self.engine.close()
        finally:
            self.close_stores()

    def close_stores(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in self.stores:
            s.close()
        self._pool.shutdown(wait=True)

    # ---- the cache -----------------------------------------------------------------------------

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _lookup(self, key: str) -> tuple[int, list[Completion]] | None:
        for i, store in enumerate(self.stores):
            found = store.get(key)
            if found is not None:
                return i, found
        return None

    def _store(self, key: str, value: bytes, n: int, engine: str, stores: list[CallStore]) -> int:
        return sum(0 if s.put(key, value, n, engine) else 1 for s in stores if not s.read_only)

    async def generate(self, request: GenRequest) -> list[Completion]:
        """`request.n` completions in branch order: from a store if any has this call, else from
        the engine (then stored). Cached completions carry `meta["from_cache"] = True` and
        `meta["cache_store"]` ("journal" or "cache")."""
        self.in_flight += 1
        try:
            return await self._generate(request)
        finally:
            self.in_flight -= 1

    async def _generate(self, request: GenRequest) -> list[Completion]:
        key = request.cache_key(self.engine.identity())
        engine_name = str(getattr(self.engine, "name", "engine"))
        found = await self._in_worker(lambda: self._lookup(key)) if self.stores and not self._closed else None
        if found is not None and len(found[1]) == request.n:
            index, completions = found
            store = self.stores[index]
            self.hits += 1
            self.hits_by_store[store.label] += 1
            self.last_activity = time.monotonic()
            missed = self.stores[:index]
            if missed:  # e.g. a persistent-cache hit goes into the journal too
                value = encode_completions(completions)
                self.write_failures += await self._in_worker(
                    lambda: self._store(key, value, request.n, engine_name, missed)
                )
            for c in completions:
                c.meta["from_cache"] = True
                c.meta["cache_store"] = store.label
            return completions
        self.calls += 1
        try:
            out = await self.engine.generate(request)
        finally:
            self.last_activity = time.monotonic()
        if self.stores and not self._closed:
            # Encoded on the worker (compressing long reasoning is CPU work the event loop should
            # not do); safe because nobody else holds `out` until this returns.
            self.write_failures += await self._in_worker(
                lambda: self._store(key, encode_completions(out), request.n, engine_name, self.stores)
            )
        return out

    def stats(self) -> dict[str, Any]:
        """What the cache did in this process: calls sent (and the engine requests they took), hits
        by store, write failures."""
        inner = getattr(self.engine, "calls", None)
        return {
            "engine_calls_sent": self.calls,
            # HTTP requests behind them, when the engine counts (a fan-out fork is n requests).
            "engine_requests": inner if isinstance(inner, int) else self.calls,
            "cache_hits": self.hits,
            "cache_hits_journal": self.hits_by_store.get("journal", 0),
            "cache_hits_persistent": self.hits_by_store.get("cache", 0),
            "cache_write_failures": self.write_failures,
        }


__all__ = [
    "CacheError",
    "CachedEngine",
    "CallStore",
    "count_entries",
    "default_cache_path",
    "resolve_cache_path",
]
