"""Benchmark 3 — prefix sharing: prompt tokens the server must prefill vs prompt tokens sent.

    python experiments/benchmarks/bench_prefix_sharing.py
    python experiments/benchmarks/bench_prefix_sharing.py --tiny

The same PDR [8,4] run (30 AIME problems x 4 samples, pdr's real SGLang client, native API) twice
against the accounting fake server (`accounting_server.py`, its radix cache flushed in between):
with `engine.fork=n` (a round's drafts are one request with n: one prefill of the shared prompt,
then n samples) and with `engine.fork=fanout` (n concurrent single requests, each prefilling the
prompt because none has finished when the others arrive). The server's latency model (50 ms +
0.5 ms per generated token) keeps the fan-out requests of one fork in flight together, as on a
real server.

Reported per mode, from the server's counters: prompt tokens sent (on the wire), logical prompt
tokens (one copy per sample: what the budgets' total_tokens counts), prompt tokens prefilled, and
cached tokens reported in `meta_info`; and from pdr's own results (the ledger): the sum of
`cached_tokens`, which is what users see in results.jsonl/summary.json.

Target: with fork=n, a fork costs one prefill of its shared prompt: prefilled <= sent + one token
per sample (the last prompt token each sample recomputes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchlib import (
    FakeServer,
    Result,
    bench_cli,
    emit,
    fmt,
    print_details,
    read_jsonl,
    run_pdr,
    sglang_overrides,
)


def measure(server: FakeServer, fork: str, problems: int, samples: int) -> dict[str, Any]:
    """One PDR [8,4] run with `engine.fork=fork`; the server's prompt accounting."""
    server.reset()
    with tempfile.TemporaryDirectory(prefix="pdr-bench-prefix-") as tmp:
        run_dir = Path(tmp) / "run"
        run_pdr(
            [
                *sglang_overrides(server.url, fork=fork),
                "dataset=aime2025",
                f"dataset.limit={problems}",
                f"samples={samples}",
                "strategy=pdr",
                "strategy.widths=[8,4]",
            ],
            run_dir,
        )
        rows = read_jsonl(run_dir / "results.jsonl")
    s = server.stats()
    return {
        "fork": fork,
        "requests": s["requests"],
        "samples": s["samples"],
        "prompt_tokens_sent": s["prompt_tokens_sent"],
        "prompt_tokens_logical": s["prompt_tokens_logical"],
        "prefill_tokens": s["prefill_tokens"],
        "cached_tokens_reported": s["cached_tokens_reported"],
        "prefill_per_logical": s["prefill_tokens"] / s["prompt_tokens_logical"],
        "ledger_prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "ledger_cached_tokens": sum(r["cached_tokens"] for r in rows),
        "errors": sum(r["status"] == "error" for r in rows),
    }


def run(tiny: bool = False) -> list[Result]:
    """fork=n (the target) and fork=fanout (the comparison)."""
    problems, samples = (3, 2) if tiny else (30, 4)
    with FakeServer(latency_base_ms=50, latency_per_token_ms=0.5, think_words=(20, 60)) as server:
        by_fork = {fork: measure(server, fork, problems, samples) for fork in ("n", "fanout")}
    n, fan = by_fork["n"], by_fork["fanout"]
    one_prefill = n["prefill_tokens"] <= n["prompt_tokens_sent"] + n["samples"] and n["errors"] == 0
    saving = fan["prefill_tokens"] / n["prefill_tokens"] if n["prefill_tokens"] else float("nan")
    return [
        Result(
            name="3. prefix sharing: fork=n",
            target="prefilled <= sent + 1/sample",
            measured=f"prefilled {n['prefill_tokens']:,} / sent {n['prompt_tokens_sent']:,} / logical "
            f"{n['prompt_tokens_logical']:,} ({n['prefill_per_logical']:.1%} of logical)",
            passed=one_prefill,
            details=n,
        ),
        Result(
            name="3. prefix sharing: fork=fanout",
            target="(comparison)",
            measured=f"prefilled {fan['prefill_tokens']:,} ({fan['prefill_per_logical']:.1%} of logical): "
            f"{fmt(saving, 2)}x fork=n's",
            passed=None,
            details=fan,
        ),
    ]


def main() -> None:
    args = bench_cli(__doc__, "a few problems (smoke test)")
    results = run(tiny=args.tiny)
    emit(results, args.json)
    print_details(results)


if __name__ == "__main__":
    main()
