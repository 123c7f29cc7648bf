"""The call cache (pdr.engines.cache): keys, hits, layering, read-only, concurrency, corruption."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pdr.engines.base import BaseEngine, Completion, GenRequest, Message, RequestTag, SamplingParams
from pdr.engines.cache import CachedEngine, CacheError, CallStore, count_entries, default_cache_path
from pdr.errors import EngineUnavailable


class CountingEngine(BaseEngine):
    """Deterministic outputs from the seed; counts what reaches it; can be told to fail."""

    name = "counting"

    def __init__(self, fail: bool = False):
        super().__init__(max_concurrency=8)
        self.fail = fail

    def identity(self) -> str:
        return "counting:v1"

    async def _generate(self, request: GenRequest) -> list[Completion]:
        if self.fail:
            raise EngineUnavailable("server down")
        return [
            Completion(
                text=f"out-{request.seed + i}",
                prompt_tokens=10,
                completion_tokens=5 + i,
                meta={"rid": f"r{i}"},
            )
            for i in range(request.n)
        ]


def req(seed: int = 1, n: int = 2, prompt: str = "What is 1+1?", max_tokens: int = 100) -> GenRequest:
    return GenRequest(
        messages=(Message("user", prompt),),
        sampling=SamplingParams(max_tokens=max_tokens),
        n=n,
        seed=seed,
        tag=RequestTag("p1", 0, 0, "draft"),
    )


def gen(engine: CachedEngine, *requests: GenRequest) -> list[list[Completion]]:
    async def go() -> list[list[Completion]]:
        return [await engine.generate(r) for r in requests]

    return asyncio.run(go())


def test_identical_request_is_served_from_cache_and_marked(tmp_path):
    inner = CountingEngine()
    eng = CachedEngine(inner, tmp_path / "c.sqlite")
    first, second = gen(eng, req(), req())
    assert inner.calls == 1 and eng.calls == 1 and eng.hits == 1
    assert [c.text for c in first] == [c.text for c in second] == ["out-1", "out-2"]
    assert [c.completion_tokens for c in second] == [5, 6]  # budgets still see the tokens
    assert all(c.meta["from_cache"] is True and c.meta["cache_store"] == "cache" for c in second)
    assert not any(c.meta.get("from_cache") for c in first)
    assert second[0].meta["rid"] == "r0"  # the rest of meta survives the round trip
    eng.close_stores()


@pytest.mark.parametrize(
    "change", [dict(seed=2), dict(n=3), dict(prompt="What is 2+2?"), dict(max_tokens=99)]
)
def test_any_input_change_is_a_miss(tmp_path, change):
    inner = CountingEngine()
    eng = CachedEngine(inner, tmp_path / "c.sqlite")
    gen(eng, req(), req(**change))
    assert inner.calls == 2 and eng.hits == 0
    eng.close_stores()


def test_engine_identity_is_part_of_the_key(tmp_path):
    a = CachedEngine(CountingEngine(), tmp_path / "c.sqlite")
    gen(a, req())
    a.close_stores()
    other = CountingEngine()
    other.identity = lambda: "counting:v2"  # type: ignore[method-assign]
    b = CachedEngine(other, tmp_path / "c.sqlite")
    gen(b, req())
    assert other.calls == 1 and b.hits == 0
    b.close_stores()


def test_cache_persists_across_processes_and_instances(tmp_path):
    path = tmp_path / "c.sqlite"
    a = CachedEngine(CountingEngine(), path)
    gen(a, req(seed=1), req(seed=2))
    a.close_stores()
    assert count_entries(path) == 2
    inner = CountingEngine()
    b = CachedEngine(inner, path)
    gen(b, req(seed=1), req(seed=2))
    assert inner.calls == 0 and b.hits == 2
    b.close_stores()


def test_failed_calls_are_counted_and_not_cached(tmp_path):
    inner = CountingEngine(fail=True)
    eng = CachedEngine(inner, tmp_path / "c.sqlite", journal=tmp_path / "j.sqlite")
    with pytest.raises(EngineUnavailable):
        gen(eng, req())
    assert (
        eng.calls == 1
        and count_entries(tmp_path / "c.sqlite") == 0
        and count_entries(tmp_path / "j.sqlite") == 0
    )
    eng.close_stores()


def test_read_only_reuses_but_never_writes(tmp_path):
    path = tmp_path / "c.sqlite"
    a = CachedEngine(CountingEngine(), path)
    gen(a, req(seed=1))
    a.close_stores()
    before = path.read_bytes()
    inner = CountingEngine()
    ro = CachedEngine(inner, path, read_only=True)
    gen(ro, req(seed=1), req(seed=2), req(seed=2))
    ro.close_stores()
    assert ro.hits == 1 and inner.calls == 2  # seed 2 was never stored, so asked twice
    assert count_entries(path) == 1
    assert path.read_bytes() == before


def test_read_only_with_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "nowhere" / "c.sqlite"
    inner = CountingEngine()
    ro = CachedEngine(inner, path, read_only=True)
    gen(ro, req())
    ro.close_stores()
    assert inner.calls == 1 and not path.parent.exists()


def test_journal_first_and_hits_written_back_to_the_journal(tmp_path):
    cache, journal = tmp_path / "c.sqlite", tmp_path / "run" / "calls.sqlite"
    warm = CachedEngine(CountingEngine(), cache)
    gen(warm, req(seed=1))
    warm.close_stores()
    inner = CountingEngine()
    eng = CachedEngine(inner, cache, journal=journal)
    gen(eng, req(seed=1), req(seed=2))
    eng.close_stores()
    assert eng.stats() == {
        "engine_calls_sent": 1,
        "engine_requests": 1,
        "cache_hits": 1,
        "cache_hits_journal": 0,
        "cache_hits_persistent": 1,
        "cache_write_failures": 0,
    }
    assert count_entries(journal) == 2  # the persistent hit and the new call: the run dir is self-contained
    # Journal alone (cache.mode=off): both calls come back from the journal.
    inner2 = CountingEngine()
    again = CachedEngine(inner2, None, journal=journal, persistent=False)
    out = gen(again, req(seed=1), req(seed=2))
    again.close_stores()
    assert inner2.calls == 0 and again.hits_by_store == {"journal": 2}
    assert out[0][0].meta["cache_store"] == "journal"


def test_default_path_honours_pdr_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PDR_CACHE_DIR", str(tmp_path / "cd"))
    assert default_cache_path() == tmp_path / "cd" / "calls.sqlite"
    eng = CachedEngine(CountingEngine(), None)
    gen(eng, req())
    eng.close_stores()
    assert count_entries(tmp_path / "cd" / "calls.sqlite") == 1
    monkeypatch.delenv("PDR_CACHE_DIR")
    assert default_cache_path() == Path.home() / ".cache" / "pdr" / "calls.sqlite"


def test_protocol_passthrough(tmp_path):
    from pdr.config.engines import SimEngineConfig
    from pdr.engines.base import Engine
    from pdr.engines.sim import SimEngine

    sim = SimEngine(SimEngineConfig())
    eng = CachedEngine(sim, tmp_path / "c.sqlite")
    assert isinstance(eng, Engine)
    assert eng.name == "sim" and eng.simulated is True and eng.identity() == sim.identity()
    assert eng.info() == sim.info() and eng.count_tokens("a b c") == 3
    asyncio.run(eng.start())
    asyncio.run(eng.close())
    asyncio.run(eng.close())  # idempotent


def test_sim_engine_outputs_round_trip_exactly(tmp_path):
    from pdr.config.engines import SimEngineConfig
    from pdr.data.loaders import Problem
    from pdr.engines.sim import SimEngine

    problem = Problem("p1", "Compute 6*7.", "42", "test", difficulty=0.3)
    sim = SimEngine(SimEngineConfig(), [problem])
    eng = CachedEngine(sim, tmp_path / "c.sqlite")
    r = GenRequest(
        (Message("user", problem.problem),),
        SamplingParams(max_tokens=4096),
        n=3,
        seed=7,
        tag=RequestTag("p1", 0, 0, "draft"),
    )
    fresh, cached = gen(eng, r, r)
    eng.close_stores()
    assert sim.calls == 1
    for a, b in zip(fresh, cached, strict=True):
        da, db = a.to_dict(), b.to_dict()
        da["meta"].pop("from_cache", None), db["meta"].pop("from_cache"), db["meta"].pop("cache_store")
        assert da == db


def test_not_a_cache_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CacheError, match=r"c\.sqlite.*(delete the file|cache\.mode=off)"):
        CachedEngine(CountingEngine(), bad)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError, match="not a pdr call cache"):
        CachedEngine(CountingEngine(), other)


def test_unreadable_entry_is_a_miss(tmp_path):
    path = tmp_path / "c.sqlite"
    a = CachedEngine(CountingEngine(), path)
    gen(a, req())
    a.close_stores()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE calls SET value = x'00ff'")
    conn.commit()
    conn.close()
    inner = CountingEngine()
    b = CachedEngine(inner, path)
    gen(b, req())
    b.close_stores()
    assert inner.calls == 1


def test_a_locked_database_does_not_block_the_event_loop(tmp_path):
    """Another process holding the write lock delays the write, not every other coroutine."""
    path = tmp_path / "c.sqlite"
    CallStore(path).close()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # holds the write lock
    eng = CachedEngine(CountingEngine(), path)
    ticks: list[float] = []
    released: list[float] = []

    async def main() -> list[Completion]:
        async def ticker() -> None:
            for _ in range(20):
                ticks.append(time.monotonic())
                await asyncio.sleep(0.025)

        async def release_later() -> None:
            await asyncio.sleep(0.4)
            released.append(time.monotonic())
            locker.execute("COMMIT")

        t = asyncio.create_task(ticker())
        r = asyncio.create_task(release_later())
        out = await eng.generate(req())
        await t
        await r
        return out

    started = time.monotonic()
    out = asyncio.run(main())
    eng.close_stores()
    locker.close()
    assert [c.text for c in out] == ["out-1", "out-2"]
    assert time.monotonic() - started >= 0.4  # the write waited for the lock ...
    # ... while the loop kept running: other coroutines ticked during the wait. (Counted, not timed:
    # a blocked loop would tick at most once before the release, whatever the machine's speed.)
    assert sum(t < released[0] for t in ticks) >= 3
    assert count_entries(path) == 1


_WRITER = textwrap.dedent("""
    import asyncio, time
    from tests.unit.test_cache import CountingEngine, req
    from pdr.engines.cache import CachedEngine
    eng = CachedEngine(CountingEngine(), {path!r})
    time.sleep(max(0.0, {start} - time.time()))  # both start writing at the same moment
    async def main():
        # Overlapping key ranges: both processes write the middle third.
        await asyncio.gather(*(eng.generate(req(seed=s, n=1)) for s in range({lo}, {hi})))
    asyncio.run(main())
    eng.close_stores()
    print(eng.calls, eng.hits, eng.write_failures)
""")


def test_two_processes_writing_concurrently_neither_corrupt_nor_lock_up(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    repo = Path(__file__).resolve().parents[2]
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER.format(path=path, lo=lo, hi=hi, start=start)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lo, hi in ((0, 600), (300, 900))
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        calls, hits, failures = map(int, out.split())
        assert calls + hits == 600 and failures == 0
    assert count_entries(path) == 900
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    inner = CountingEngine()
    eng = CachedEngine(inner, path)
    out = gen(eng, *(req(seed=s, n=1) for s in range(900)))
    eng.close_stores()
    assert inner.calls == 0 and [o[0].text for o in out] == [f"out-{s}" for s in range(900)]


def test_requests_carry_no_secrets_into_the_cache(tmp_path, monkeypatch):
    secret = "sk-planted-cache-0123456789"
    monkeypatch.setenv("PDR_TEST_KEY", secret)
    r = req()
    assert secret not in repr(r)
    eng = CachedEngine(CountingEngine(), tmp_path / "c.sqlite", journal=tmp_path / "j.sqlite")
    gen(eng, r, req(seed=5))
    eng.close_stores()
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes(), f


def test_runs_with_the_persistent_cache_on_the_sim_engine(tmp_path):
    """Second identical run: zero engine calls, same rows. A later-round change reuses the
    earlier rounds. read_only reuses and never writes."""
    import json

    from pdr.runner import run
    from tests.conftest import compose_object

    cache = tmp_path / "cache.sqlite"
    base = [
        "+experiment=quickstart",
        "tracking.enabled=false",
        "progress=false",
        "cache.mode=on",
        f"cache.path={cache}",
    ]

    def rows(run_dir: Path) -> list[dict]:
        out = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
        for r in out:
            r.pop("wall_s")
        return sorted(out, key=lambda r: (r["problem_id"], r["sample"]))

    first = run(compose_object(base), tmp_path / "a").summary
    assert first["engine_calls_sent"] == 240 and first["cache_hits"] == 0
    assert count_entries(cache) == 240
    second = run(compose_object(base), tmp_path / "b").summary
    assert second["engine_calls_sent"] == 0 and second["cache_hits_persistent"] == 240
    assert second["cache_hit_rate"] == 1.0
    assert rows(tmp_path / "b") == rows(tmp_path / "a")
    # Budgets still count cached tokens (they describe the strategy, not the cache).
    assert second["total_tokens"] == first["total_tokens"] and second["seq_tokens"] == first["seq_tokens"]

    # widths [4,2] -> [4,3]: round 1's fork of 4 and its summary (2 of the 5 calls) are reused.
    third = run(compose_object([*base, "strategy.widths=[4,3]"]), tmp_path / "c").summary
    assert third["cache_hits"] == 48 * 2 and third["engine_calls_sent"] == 48 * 3

    size = count_entries(cache)
    ro = run(compose_object([*base, "cache.mode=read_only", "strategy.widths=[4,4]"]), tmp_path / "d").summary
    assert ro["cache_hits"] == 48 * 2 and ro["engine_calls_sent"] == 48 * 3
    assert count_entries(cache) == size


# ---- the journal's fast paths: in-memory keys, group commit, writes off the critical path ----------


def test_a_key_the_journal_cannot_hold_costs_no_worker_round_trip(tmp_path, monkeypatch):
    """Journal only (a fresh run, cache.mode=off, the sim): a miss is known from the in-memory key
    set; reopened, the journal's keys are loaded and its entries served."""
    reads: list[str] = []
    real = CallStore.get_raw
    monkeypatch.setattr(CallStore, "get_raw", lambda self, key: reads.append(key) or real(self, key))
    journal = tmp_path / "run" / "calls.sqlite"
    inner = CountingEngine()
    eng = CachedEngine(inner, None, journal=journal, persistent=False)
    gen(eng, req(seed=1), req(seed=2), req(seed=3))
    eng.close_stores()
    assert inner.calls == 3 and reads == []
    inner2 = CountingEngine()
    again = CachedEngine(inner2, None, journal=journal, persistent=False)
    out = gen(again, req(seed=1), req(seed=2), req(seed=4))
    again.close_stores()
    assert inner2.calls == 1 and again.hits_by_store == {"journal": 2} and len(reads) == 2
    assert [c.text for c in out[0]] == ["out-1", "out-2"]
    # A call made in this process is known at once, before its write is committed.
    third = CachedEngine(CountingEngine(), None, journal=journal, persistent=False)
    first, second = gen(third, req(seed=9), req(seed=9))
    third.close_stores()
    assert third.calls == 1 and third.hits == 1 and [c.text for c in second] == [c.text for c in first]


def test_journal_writes_are_group_committed_and_not_awaited(tmp_path, monkeypatch):
    """While the worker is busy, finished calls queue up and `generate` returns at once; they are
    then committed together, in one transaction. `wait_journal` tells when calls are journaled."""
    import threading

    entered, gate = threading.Event(), threading.Event()
    batches: list[int] = []
    real = CallStore.put_many

    def put_many(self, entries):  # noqa: ANN001
        batches.append(len(entries))
        if len(batches) == 1:
            entered.set()
            gate.wait(120)
        return real(self, entries)

    monkeypatch.setattr(CallStore, "put_many", put_many)
    journal = tmp_path / "calls.sqlite"
    eng = CachedEngine(CountingEngine(), None, journal=journal, persistent=False)

    async def main() -> None:
        await eng.generate(req(seed=0, n=1))
        assert await asyncio.to_thread(entered.wait, 10)  # the worker is stuck in its first write
        for s in range(1, 51):
            await eng.generate(req(seed=s, n=1))
        # None of them waited for the write: all 50 returned while the worker is still stuck in its
        # first write (the gate is open only below; waiting calls would hang here until it opened).
        assert batches == [1] and not gate.is_set()
        mark = eng.journal_mark()
        assert not eng.wait_journal(mark, timeout=0.05)
        assert count_entries(journal) == 0
        gate.set()
        assert await asyncio.to_thread(eng.wait_journal, mark, 10)
        assert count_entries(journal) == 51  # committed, visible to another connection

    asyncio.run(main())
    eng.close_stores()
    assert batches == [1, 50] and eng.write_failures == 0


def test_close_commits_every_queued_write(tmp_path):
    journal, cache = tmp_path / "j.sqlite", tmp_path / "c.sqlite"
    eng = CachedEngine(CountingEngine(), cache, journal=journal)

    async def main() -> None:
        await asyncio.gather(*(eng.generate(req(seed=s)) for s in range(300)))

    asyncio.run(main())
    eng.close_stores()
    assert count_entries(journal) == 300 and count_entries(cache) == 300
    assert eng.wait_journal(eng.journal_mark(), timeout=0)  # nothing left to wait for


def test_journal_is_stored_plain_and_the_persistent_cache_compressed(tmp_path):
    import json
    import zlib

    journal, cache = tmp_path / "j.sqlite", tmp_path / "c.sqlite"
    eng = CachedEngine(CountingEngine(), cache, journal=journal)
    gen(eng, req())
    eng.close_stores()

    def blob(path: Path) -> bytes:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("SELECT value FROM calls").fetchone()[0]
        finally:
            conn.close()

    plain, packed = blob(journal), blob(cache)
    assert json.loads(plain)[0]["text"] == "out-1"
    assert zlib.decompress(packed) == plain


def test_a_journal_with_compressed_entries_still_reads(tmp_path):
    """Journals written before the journal was stored plain (zlib, like the cache) resume as before."""
    from pdr.engines.cache import encode_completions

    journal = tmp_path / "calls.sqlite"
    key = req(seed=5).cache_key(CountingEngine().identity())
    store = CallStore(journal, label="journal")
    assert store.put(key, encode_completions([Completion("old-a"), Completion("old-b")]), 2, "counting")
    store.close()
    inner = CountingEngine()
    eng = CachedEngine(inner, None, journal=journal, persistent=False)
    (out,) = gen(eng, req(seed=5))
    eng.close_stores()
    assert inner.calls == 0 and [c.text for c in out] == ["old-a", "old-b"]


def test_a_persistent_hit_is_written_back_to_the_journal_as_stored(tmp_path):
    """The write-back copies the cache's value (compressed) without decoding and re-encoding it."""
    cache, journal = tmp_path / "c.sqlite", tmp_path / "j.sqlite"
    warm = CachedEngine(CountingEngine(), cache)
    gen(warm, req(seed=3))
    warm.close_stores()
    eng = CachedEngine(CountingEngine(), cache, journal=journal)
    gen(eng, req(seed=3))
    eng.close_stores()
    conn = sqlite3.connect(cache)
    (cached,) = conn.execute("SELECT value FROM calls").fetchone()
    conn.close()
    conn = sqlite3.connect(journal)
    (journaled,) = conn.execute("SELECT value FROM calls").fetchone()
    conn.close()
    assert journaled == cached
    again = CachedEngine(CountingEngine(), None, journal=journal, persistent=False)
    (out,) = gen(again, req(seed=3))
    again.close_stores()
    assert again.hits_by_store == {"journal": 1} and [c.text for c in out] == ["out-3", "out-4"]
