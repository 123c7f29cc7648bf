"""The call cache: finished engine calls stored in SQLite, so nothing finished is ever sent twice.

Two stores, one format (`CallStore`), layered by `CachedEngine`:

- the **journal** `<run_dir>/calls.sqlite`: always on for a run, whatever `cache.mode` says. Every
  call that finishes is queued for the journal before `generate` returns, and committed by the
  worker thread shortly after (see "Writes" below), so a killed run (SIGKILL included) started
  again with `resume=true` re-sends none of its journaled calls: the problem-samples that were in
  flight are re-run, and their finished calls come back from here. The journal is deleted after a
  clean run, so it is stored uncompressed (zlib would cost CPU on every call for nothing).
- the **persistent cache** (`cache.path`, default `~/.cache/pdr/calls.sqlite` or
  `$PDR_CACHE_DIR/calls.sqlite`): shared by every run on the machine (`cache.mode=on`; `auto` turns
  it on for real engines, off for the simulated one). Re-running an identical experiment makes no
  engine call; changing only a later round (widths [4,2] -> [4,3]) reuses the earlier rounds.

Key: `GenRequest.cache_key(engine.identity())` = sha256 of (engine identity, rendered messages,
sampling params, n, seed). The seed is derived from (run seed, problem, sample, step, kind, branch),
so "sample 3 of problem 7, round 2" is a different key from sample 4, and the same key in every
run that asks the same question: a cached call is exactly the call the run would have made.

Value: the call's `Completion`s as JSON (zlib-compressed in the persistent cache, plain in the
journal; either is read from either store), served back marked
`meta["from_cache"] = True`. Budgets still count their tokens (the paper's budgets measure the
strategy, not the cache); the run reports how many calls were served from which store.

Nothing else is stored: no prompt text, no engine URL, no headers. Requests carry no secrets (the
API key lives only in the HTTP client), so none can reach a cache file.

Concurrency: the jobs of a multirun may share the persistent file (see `pdr.engines.call_store`,
the SQLite side). All SQLite work runs on one worker thread per `CachedEngine`, so a writer
waiting for another process's lock never blocks the event loop.

Writes are not awaited: `generate` queues the finished call and returns; the worker commits every
write queued meanwhile in one transaction per store (group commit), the journal first. A write
reaches the disk (as far as a process kill is concerned: WAL, `synchronous=NORMAL`) normally within
~10 ms of the call finishing (longer while a CPU-bound event loop, such as the simulated engine's,
outruns the worker); a SIGKILL loses only what is not committed yet, whose calls a resume sends again.
Whoever must know that calls are journaled (the runner, before it writes the row of the
problem-sample that made them) takes `journal_mark()` and, on any thread, `wait_journal(mark)`.
Lookups skip the worker entirely for a key the journal cannot hold (its keys are kept in memory,
loaded at open) when there is no persistent cache: a fresh run costs no round trip per call.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pdr.engines.base import Completion, Engine, EngineWrapper, GenRequest
from pdr.engines.call_store import (
    CacheError,
    CallStore,
    _encode_dicts,
    count_entries,
    decode_completions,
    default_cache_path,
    encode_completions,
    resolve_cache_path,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Group commit: the worker lets writes gather this long (or up to _MAX_BATCH of them) before it
# commits them, unless a read or a `wait_journal` is waiting. A transaction costs ~0.15 ms besides
# its rows; calls finishing one by one would otherwise each pay it. Also the most a SIGKILL can
# lose of the journal (those calls are sent again by the resume).
_LINGER_S = 0.01
_MAX_BATCH = 256
_CHUNK_BYTES = 4 << 20  # encoded values per transaction, at most (plus one call)


@dataclass(slots=True)
class _Put:
    """A finished call queued for the stores that lack it: the completions as dicts (snapshotted
    on the event loop, encoded by the worker), or an already-encoded value (a hit written back)."""

    key: str
    n: int
    engine: str
    stores: tuple[CallStore, ...]
    dicts: list[dict[str, Any]] | None = None
    blob: bytes | None = None


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class CachedEngine(EngineWrapper):
    """Any engine behind the journal and (optionally) the persistent cache; an `Engine` itself
    (every protocol member passes through to the wrapped engine, except `calls`: calls it sent on).

    What the runner uses besides the protocol: `journal_mark()` / `wait_journal(mark)`
    (durability), `in_flight` and `last_activity` (stall detection), `stats()`, `close_stores()`,
    `persistent_path`.

    Lookup order: journal, then persistent cache. A hit is written back to the writable stores that
    missed it (so a run directory's journal alone is enough to resume it). A miss goes to the
    engine; its completions are queued for every writable store before `generate` returns and
    committed by the worker thread (module docstring, "Writes"); `close_stores` commits the rest.

    Counters (read them after the run): `calls` = requests sent to the wrapped engine (failed ones
    included); `hits` = calls served from a store, by store in `hits_by_store`; `write_failures`.

    `path`: the persistent cache file (None = `default_cache_path()`); `persistent=False`: none.
    `read_only`: the persistent cache is only read (the journal, being the run's own, is written).
    `journal`: the run's journal file, or None for none.

    Threads: `generate`, `journal_mark` and `close_stores` are called from the event loop's thread;
    `wait_journal` from any thread. One worker thread ("pdr-cache") does every SQLite operation.
    """

    def __init__(
        self,
        engine: Engine,
        path: str | os.PathLike[str] | None,
        read_only: bool = False,
        *,
        journal: str | os.PathLike[str] | None = None,
        persistent: bool = True,
    ):
        super().__init__(engine)
        self.stores: list[CallStore] = []
        self._journal: CallStore | None = None
        self._persistent: CallStore | None = None
        if journal is not None:
            self._journal = CallStore(journal, read_only=False, label="journal")
            self.stores.append(self._journal)
        self.persistent_path = resolve_cache_path(path) if persistent else None
        if self.persistent_path is not None:
            try:
                self._persistent = CallStore(self.persistent_path, read_only=read_only, label="cache")
            except CacheError:
                for s in self.stores:
                    s.close()
                raise
            self.stores.append(self._persistent)
        self.read_only = read_only
        # The journal's keys, so that a lookup it cannot answer costs no round trip to the worker.
        # Loaded once: a journal belongs to one run, written by this process only.
        self._journal_keys: set[str] = self._journal.keys() if self._journal is not None else set()
        self._writable = tuple(s for s in self.stores if not s.read_only)
        self.calls = 0
        self.hits = 0
        self.hits_by_store: dict[str, int] = {s.label: 0 for s in self.stores}
        self._write_failures = 0  # written by the worker only
        self.last_activity = time.monotonic()  # last time a call finished (or failed): stall detection
        self.in_flight = 0  # calls inside generate() now (the runner's stall guard reads it)
        # The worker's queues (guarded by _cv): writes are committed before the reads queued with
        # them, so a read always sees every write queued before it.
        self._cv = threading.Condition(threading.Lock())
        self._puts: list[_Put] = []
        self._reads: deque[tuple[Callable[[], Any], asyncio.AbstractEventLoop, asyncio.Future[Any]]] = deque()
        self._queued = 0  # puts queued so far (event loop thread)
        self._journaled = 0  # puts past their journal transaction, done or failed (under _cv)
        self._stopping = False
        self._stopped = False
        self._waiters = 0  # threads in wait_journal (under _cv): commit at once for them
        self._idle = False  # the worker waits for work (not lingering): a put must wake it
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.stores:
            # A daemon thread plus an atexit hook (not a plain thread): an engine nobody closes
            # must neither keep the interpreter alive nor lose its queued writes.
            self._thread = threading.Thread(target=self._work, name="pdr-cache", daemon=True)
            self._thread.start()
            atexit.register(self.close_stores)

    @property
    def write_failures(self) -> int:
        """Store writes that failed (one per call and store); final once `close_stores` returned."""
        return self._write_failures

    async def close(self) -> None:
        """Close the wrapped engine, then the stores. Safe to call twice."""
        try:
            await self.engine.close()
        finally:
            self.close_stores()

    def close_stores(self) -> None:
        """Commit every queued write, stop the worker, close the stores. Safe to call twice.
        Blocks for the last transaction (milliseconds; longer only behind another process's lock)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._thread.join()
            atexit.unregister(self.close_stores)
        for s in self.stores:
            s.close()

    # ---- durability ----------------------------------------------------------------------------

    def journal_mark(self) -> int:
        """A mark covering every call finished so far (event loop thread); see `wait_journal`."""
        return self._queued

    def wait_journal(self, mark: int, timeout: float | None = None) -> bool:
        """Block until every call covered by `mark` has been through its journal transaction
        (committed, or failed and logged), or the worker has stopped. Any thread. False on timeout."""
        if self._thread is None:
            return True
        with self._cv:
            if self._journaled >= mark or self._stopped:
                return True
            self._waiters += 1
            self._cv.notify_all()  # the worker stops lingering
            try:
                return self._cv.wait_for(lambda: self._journaled >= mark or self._stopped, timeout)
            finally:
                self._waiters -= 1

    # ---- the worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                with self._cv:
                    while not (self._puts or self._reads or self._stopping):
                        self._idle = True
                        self._cv.wait()
                    self._idle = False
                    if self._puts and not self._reads:  # let writes gather (group commit)
                        deadline = time.monotonic() + _LINGER_S
                        while (
                            not (self._reads or self._stopping or self._waiters)
                            and len(self._puts) < _MAX_BATCH
                        ):
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._cv.wait(left)
                    if not (self._puts or self._reads):
                        return  # stopping, and nothing left
                    puts, self._puts = self._puts, []
                    reads, self._reads = self._reads, deque()
                if puts:
                    self._write(puts)
                for fn, loop, fut in reads:
                    try:
                        result, exc = fn(), None
                    except Exception as e:  # noqa: BLE001 - handed to the awaiting coroutine
                        result, exc = None, e
                    try:
                        loop.call_soon_threadsafe(_settle, fut, result, exc)
                    except RuntimeError:  # the loop is closed: nobody is waiting any more
                        pass
        finally:
            with self._cv:
                self._stopped = True
                self._cv.notify_all()

    def _write(self, puts: list[_Put]) -> None:
        """Commit `puts` in order, one transaction per store and chunk (group commit), the journal
        first. Chunks of about _CHUNK_BYTES of encoded values: a backlog (a CPU-bound loop can
        outrun the worker) is never held in memory encoded all at once."""
        failures = 0
        advanced = 0
        try:
            start = 0
            while start < len(puts):
                chunk: list[tuple[_Put, bytes]] = []
                size = 0
                for p in itertools.islice(puts, start, None):
                    value = p.blob if p.blob is not None else _encode_dicts(p.dicts or [], compress=False)
                    p.dicts = None  # encoded: the snapshot can go
                    chunk.append((p, value))
                    size += len(value)
                    if size >= _CHUNK_BYTES:
                        break
                start += len(chunk)
                for store in self._writable:  # the journal, if any, comes first
                    plain = store is self._journal
                    entries = [
                        (p.key, p.engine, p.n, v if plain or p.blob is not None else zlib.compress(v, 1))
                        for p, v in chunk
                        if store in p.stores
                    ]
                    if entries and not store.put_many(entries):
                        failures += len(entries)
                    if plain:
                        self._advance(len(chunk))
                        advanced += len(chunk)
                if self._journal is None:
                    self._advance(len(chunk))
                    advanced += len(chunk)
        except Exception:  # noqa: BLE001 - the cache must never fail a run
            log.exception("call cache: writing %d calls failed; they are not cached", len(puts) - advanced)
            failures += len(puts) - advanced
        finally:
            if advanced < len(puts):
                self._advance(len(puts) - advanced)
            self._write_failures += failures

    def _advance(self, count: int) -> None:
        with self._cv:
            self._journaled += count
            self._cv.notify_all()

    # ---- the cache -----------------------------------------------------------------------------

    def _queue_put(self, put: _Put) -> None:
        self._queued += 1
        if self._journal is not None and self._journal in put.stores:
            self._journal_keys.add(put.key)
        with self._cv:
            self._puts.append(put)
            if self._idle or len(self._puts) >= _MAX_BATCH:  # a lingering worker needs no wake-up
                self._cv.notify()

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._cv:
            self._reads.append((fn, asyncio.get_running_loop(), fut))
            self._cv.notify()
        return await fut

    def _lookup(
        self, key: str, stores: tuple[CallStore, ...]
    ) -> tuple[CallStore, bytes, list[Completion]] | None:
        for store in stores:
            blob = store.get_raw(key)
            if blob is not None:
                found = store.decode(key, blob)
                if found is not None:
                    return store, blob, found
        return None

    async def generate(self, request: GenRequest) -> list[Completion]:
        """`request.n` completions in branch order: from a store if any has this call, else from
        the engine (then queued for the stores). Cached completions carry `meta["from_cache"] = True`
        and `meta["cache_store"]` ("journal" or "cache")."""
        self.in_flight += 1
        try:
            return await self._generate(request)
        finally:
            self.in_flight -= 1

    async def _generate(self, request: GenRequest) -> list[Completion]:
        key = request.cache_key(self.engine.identity())
        engine_name = self.engine.name
        if self._closed:
            candidates: tuple[CallStore, ...] = ()
        elif key in self._journal_keys:
            candidates = tuple(self.stores)
        else:  # the journal cannot have it: ask the persistent cache only, if there is one to ask
            p = self._persistent
            candidates = (p,) if p is not None and p.available else ()
        found = await self._in_worker(lambda: self._lookup(key, candidates)) if candidates else None
        if found is not None and len(found[2]) == request.n:
            store, blob, completions = found
            self.hits += 1
            self.hits_by_store[store.label] += 1
            self.last_activity = time.monotonic()
            missed = tuple(s for s in self.stores[: self.stores.index(store)] if not s.read_only)
            if missed and not self._closed:  # e.g. a persistent-cache hit goes into the journal too
                self._queue_put(_Put(key, request.n, engine_name, missed, blob=blob))
            for c in completions:
                c.meta["from_cache"] = True
                c.meta["cache_store"] = store.label
            return completions
        self.calls += 1
        try:
            out = await self.engine.generate(request)
        finally:
            self.last_activity = time.monotonic()
        if self._writable and not self._closed:
            # Snapshot now (to_dict copies meta): the caller owns `out` once this returns, and the
            # worker encodes later.
            self._queue_put(
                _Put(key, request.n, engine_name, self._writable, dicts=[c.to_dict() for c in out])
            )
        return out

    def stats(self) -> dict[str, Any]:
        """What the cache did in this process: calls sent (and the engine requests they took), hits
        by store, write failures."""
        return {
            "engine_calls_sent": self.calls,
            # The requests behind them (a fanned-out fork is n requests).
            "engine_requests": self.engine.calls,
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
    "decode_completions",
    "default_cache_path",
    "encode_completions",
    "resolve_cache_path",
]
