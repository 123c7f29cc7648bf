"""Benchmark 2 — client overhead: engine calls per second and client CPU per call, zero server latency.

    python experiments/benchmarks/bench_client_overhead.py
    python experiments/benchmarks/bench_client_overhead.py --tiny

The fake SGLang server runs in its own process with zero latency, so the client's CPU time
(`time.process_time()` of this process: every thread, not the server) is all pdr's. Two levels:

- engine: `SGLangEngine.generate` (native API) with every call submitted at once: 2000 single
  calls queued behind the default `engine.max_concurrency=64`, 2000 single calls all in flight
  (`max_concurrency=4096`: a new connection each), and 500 forks of n=8;
- pipeline: a whole PDR [8,4] run (30 AIME problems x 4 samples) through `pdr.runner.run`:
  executor, strategy ops, limiter, HTTP client, call journal, grading, results files. CPU per
  engine request (a fork of n is one request), at the margin (the slope from a 1-problem run to
  the full run: the cost of one more call) and on average (the run's fixed costs included).

Target: <= 0.5 ms of client CPU per call at both levels (the pipeline's marginal cost). Calls/s is bounded by the fake server
(one Python process): its CPU per call is reported alongside.

Also (no server): the concurrency limiter alone, 2000 calls queued behind 64 slots, against the
condition-variable limiter it replaced (kept here as `_ConditionLimiter` for the comparison).

And the request retry loop (`HttpClient.request_json`: a plain loop over `pdr.engines.retry.Backoff`)
against the same policy written with tenacity (`_request_json_tenacity`): alone (the success path,
the transport stubbed out) and in the engine workload (2000 calls, 64 slots, A/B alternated).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from benchlib import (
    FakeServer,
    Result,
    Stopwatch,
    bench_cli,
    compose,
    emit,
    fmt,
    print_details,
    run_config,
    run_pdr,
    sglang_overrides,
)

TARGET_MS = 0.5


async def _engine_workload(
    url: str, calls: int, n: int, max_concurrency: int, server: FakeServer
) -> dict[str, Any]:
    from pdr.engines.base import GenRequest, Message, RequestTag, SamplingParams
    from pdr.engines.sglang import SGLangEngine

    cfg = compose(sglang_overrides(url, max_concurrency=max_concurrency))
    engine = SGLangEngine(cfg.engine)
    await engine.start()
    try:
        body = "Find the number of ordered pairs (a, b) of integers such that a^2 + b^2 = 2025. " * 8

        def request(i: int) -> GenRequest:
            return GenRequest(
                (Message("user", f"Problem {i}. {body}"),),
                SamplingParams(max_tokens=4096),
                n=n,
                seed=i,
                tag=RequestTag(f"p{i}", 0, 0, "draft"),
            )

        await asyncio.gather(*(engine.generate(request(-1 - i)) for i in range(min(64, calls))))  # warm-up
        requests = [request(i) for i in range(calls)]
        server_cpu = server.cpu_s()
        with Stopwatch() as sw:
            out = await asyncio.gather(*(engine.generate(r) for r in requests))
        server_cpu = server.cpu_s() - server_cpu
    finally:
        await engine.close()
    assert all(len(o) == n for o in out)
    return {
        "calls": calls,
        "n": n,
        "max_concurrency": max_concurrency,
        "calls_per_s": calls / sw.wall,
        "samples_per_s": calls * n / sw.wall,
        "client_cpu_ms_per_call": sw.cpu / calls * 1000,
        "server_cpu_ms_per_call": server_cpu / calls * 1000,
        "wall_s": sw.wall,
    }


class _ConditionLimiter:
    """The limiter before the fix (pdr/engines/base.py at 151c3be): a Condition whose release
    wakes every waiter (`notify_all`), each re-checking its predicate: quadratic in the waiters."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, weight: int) -> int:
        weight = min(max(weight, 1), self.capacity)
        async with self._cond:
            await self._cond.wait_for(lambda: self._used + weight <= self.capacity)
            self._used += weight
        return weight

    async def release(self, weight: int) -> None:
        async with self._cond:
            self._used -= weight
            self._cond.notify_all()


async def _limiter_workload(limiter: Any, calls: int) -> float:
    """Client CPU ms per acquire/release pair with `calls` callers queued, each holding its slot
    for a short, varying time (as a call holds it across its HTTP round trip), so that releases
    come one at a time."""

    async def one(i: int) -> None:
        w = await limiter.acquire(8 if i % 10 == 0 else 1)
        await asyncio.sleep((i * 7919 % 1000) / 1e6)  # 0-1 ms
        await limiter.release(w)

    with Stopwatch() as sw:
        await asyncio.gather(*(one(i) for i in range(calls)))
    return sw.cpu / calls * 1000


def limiter_comparison(calls: int) -> dict[str, float]:
    from pdr.engines.base import WeightedLimiter

    return {
        "calls": calls,
        "capacity": 64,
        "fifo_ms_per_call": asyncio.run(_limiter_workload(WeightedLimiter(64), calls)),
        "condition_ms_per_call": asyncio.run(_limiter_workload(_ConditionLimiter(64), calls)),
    }


async def _request_json_tenacity(
    self: Any, method: str, path: str, body: Any = None, *, retry: bool = True, body_factory: Any = None, on_timeout: Any = None
) -> Any:
    """`HttpClient.request_json` with the same policy (attempts, `Backoff`, `RETRYABLE_ERRORS`,
    retry count, final message) through tenacity: the alternative the plain loop is measured against."""
    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

    from pdr.engines.retry import RETRYABLE_ERRORS
    from pdr.errors import EngineUnavailable

    attempts = self.max_retries + 1 if retry else 1

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.backoff.delay(state.attempt_number, getattr(exc, "retry_after", None))

    def before_sleep(state: RetryCallState) -> None:
        self.retries += 1

    def give_up(state: RetryCallState) -> Any:
        exc = state.outcome.exception() if state.outcome else None
        if attempts == 1 or exc is None:
            raise exc or EngineUnavailable(f"{self.name}: {method} {path} failed")
        raise EngineUnavailable(f"{exc} (gave up after {attempts} attempts)") from exc

    async def attempt() -> Any:
        return await self._attempt(method, path, body_factory() if body_factory else body)

    return await AsyncRetrying(
        retry=retry_if_exception_type(RETRYABLE_ERRORS),
        stop=stop_after_attempt(attempts),
        wait=wait,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )(attempt)


async def _retry_loop_alone(calls: int, tenacity: bool) -> float:
    """Client CPU us per `request_json` on the success path, the transport stubbed out."""
    from pdr.engines.http import HttpClient

    http = HttpClient("http://127.0.0.1:9", name="bench", timeout_s=5, max_retries=3, max_connections=4)

    async def instant(method: str, path: str, body: Any) -> Any:
        return {}

    http._attempt = instant  # type: ignore[method-assign]
    call = (
        (lambda: _request_json_tenacity(http, "POST", "/generate", {}))
        if tenacity
        else (lambda: http.request_json("POST", "/generate", {}))
    )
    with Stopwatch() as sw:
        for _ in range(calls):
            await call()
    return sw.cpu / calls * 1e6


def retry_loop_comparison(
    calls: int, server: FakeServer, engine_calls: int, rounds: int = 3
) -> dict[str, Any]:
    """The plain request loop against tenacity: alone, and in the engine workload (median of
    `rounds` alternated A/B runs, `engine_calls` single calls behind 64 slots)."""
    from pdr.engines.http import HttpClient

    plain = HttpClient.request_json
    out: dict[str, Any] = {
        "calls_alone": calls,
        "plain_us_per_call": asyncio.run(_retry_loop_alone(calls, tenacity=False)),
        "tenacity_us_per_call": asyncio.run(_retry_loop_alone(calls, tenacity=True)),
        "engine_calls": engine_calls,
    }
    engine: dict[str, list[float]] = {"plain": [], "tenacity": []}
    try:
        for _ in range(rounds):
            for kind in ("plain", "tenacity"):
                HttpClient.request_json = plain if kind == "plain" else _request_json_tenacity  # type: ignore[method-assign]
                m = asyncio.run(_engine_workload(server.url, engine_calls, 1, 64, server))
                engine[kind].append(m["client_cpu_ms_per_call"])
    finally:
        HttpClient.request_json = plain  # type: ignore[method-assign]
    for kind, values in engine.items():
        out[f"engine_{kind}_ms_per_call"] = sorted(values)[len(values) // 2]
        out[f"engine_{kind}_runs"] = [round(v, 4) for v in values]
    return out


def _pipeline_once(server: FakeServer, problems: int, samples: int) -> dict[str, Any]:
    server.reset()
    with tempfile.TemporaryDirectory(prefix="pdr-bench-overhead-") as tmp:
        run_dir = Path(tmp) / "run"
        cfg = run_config(
            [
                *sglang_overrides(server.url),
                "dataset=aime2025",
                f"dataset.limit={problems}",
                f"samples={samples}",
                "strategy=pdr",
                "strategy.widths=[8,4]",
            ],
            run_dir,
        )
        server_cpu = server.cpu_s()
        with Stopwatch() as sw:
            result = run_pdr([], run_dir, cfg=cfg)
        server_cpu = server.cpu_s() - server_cpu
    stats = server.stats()
    return {
        "rows": len(result.rows),
        "requests": stats["requests"],
        "samples": stats["samples"],
        "cpu_s": sw.cpu,
        "wall_s": sw.wall,
        "server_cpu_s": server_cpu,
    }


def _pipeline(server: FakeServer, problems: int, samples: int, repeat: int = 3) -> dict[str, Any]:
    """A whole run's client CPU per engine request: on average (the run's fixed costs included:
    engine start, summary, bootstrap CIs) and at the margin (the slope between a 1-problem run and
    this one: what each further call costs). Median of `repeat` runs of each size."""

    def median_run(p: int, s: int) -> dict[str, Any]:
        runs = sorted((_pipeline_once(server, p, s) for _ in range(repeat)), key=lambda r: r["cpu_s"])
        return runs[len(runs) // 2]

    small = median_run(1, 1)
    big = median_run(problems, samples)
    requests = big["requests"]
    marginal = (big["cpu_s"] - small["cpu_s"]) / max(1, requests - small["requests"])
    return {
        "problem_samples": big["rows"],
        "engine_requests": requests,
        "samples": big["samples"],
        "calls_per_s": requests / big["wall_s"],
        "client_cpu_ms_per_call": big["cpu_s"] / requests * 1000,
        "client_cpu_ms_per_call_marginal": marginal * 1000,
        "client_cpu_ms_fixed_per_run": small["cpu_s"] * 1000,
        "client_cpu_ms_per_sample": big["cpu_s"] / big["samples"] * 1000,
        "server_cpu_ms_per_call": big["server_cpu_s"] / requests * 1000,
        "wall_s": big["wall_s"],
        "client_cpu_s": big["cpu_s"],
        "repeat": repeat,
    }


def run(tiny: bool = False) -> list[Result]:
    """The engine-level workloads and the pipeline run, each against the target."""
    scale = 10 if tiny else 1
    workloads = [(2000 // scale, 1, 64), (2000 // scale, 1, 4096), (500 // scale, 8, 4096)]
    lim = limiter_comparison(2000 // scale)
    results = [
        Result(
            name=f"2. limiter alone: {lim['calls']} calls, 64 slots",
            target="(report; was quadratic)",
            measured=f"{fmt(lim['fifo_ms_per_call'], 4)} ms/call (condition variable: {fmt(lim['condition_ms_per_call'], 3)})",
            passed=None,
            details=lim,
        )
    ]
    with FakeServer(think_words=(20, 60)) as server:
        rl = retry_loop_comparison(20000 // scale, server, 2000 // scale)
        results.append(
            Result(
                name="2. request retry loop: plain vs tenacity",
                target="(report; keep the plain loop only if measurably faster)",
                measured=f"alone {fmt(rl['plain_us_per_call'], 1)} vs {fmt(rl['tenacity_us_per_call'], 1)} us/call; "
                f"engine {fmt(rl['engine_plain_ms_per_call'], 3)} vs {fmt(rl['engine_tenacity_ms_per_call'], 3)} ms/call",
                passed=None,
                details=rl,
            )
        )
        for calls, n, conc in workloads:
            m = asyncio.run(_engine_workload(server.url, calls, n, conc, server))
            results.append(
                Result(
                    name=f"2. client CPU/call: engine, {calls} calls n={n} conc={conc}",
                    target=f"<= {TARGET_MS} ms/call",
                    measured=f"{fmt(m['client_cpu_ms_per_call'], 3)} ms/call, {fmt(m['calls_per_s'], 0)} calls/s",
                    passed=m["client_cpu_ms_per_call"] <= TARGET_MS,
                    details=m,
                )
            )
        problems, samples = (3, 2) if tiny else (30, 4)
        m = _pipeline(server, problems, samples, repeat=1 if tiny else 3)
        results.append(
            Result(
                name=f"2. client CPU/call: pipeline, PDR [8,4] {problems}x{samples}",
                target=f"<= {TARGET_MS} ms/call (marginal)",
                measured=f"{fmt(m['client_cpu_ms_per_call_marginal'], 3)} ms/call marginal, "
                f"{fmt(m['client_cpu_ms_per_call'], 3)} average; {fmt(m['calls_per_s'], 0)} calls/s",
                passed=m["client_cpu_ms_per_call_marginal"] <= TARGET_MS,
                details=m,
            )
        )
    return results


def main() -> None:
    args = bench_cli(__doc__, "a tenth of the calls (smoke test)")
    results = run(tiny=args.tiny)
    emit(results, args.json)
    print_details(results)


if __name__ == "__main__":
    main()
