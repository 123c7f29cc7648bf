"""summary.json: the run's metrics from the rows on disk, the engine and cache counters, the errors
with what to do about them, the resume bookkeeping and the resolved config."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdr.evaluation.metrics import summarize
from pdr.results.files import ERRORS, JOURNAL, RESULTS, SUMMARY, TRACES, compact_jsonl, read_jsonl, write_json
from pdr.results.rundir import RunPlan, remove_journal

if TYPE_CHECKING:
    from pdr.config.schema import Config
    from pdr.engines.cache import CachedEngine

log = logging.getLogger(__name__)

# What to do about each kind of error, shown in summary.json and in the failure message.
ERROR_HINTS = {
    "EngineUnavailable": "the server was unreachable, overloaded or timed out after all retries; check it, "
    "raise engine.timeout_s / engine.max_retries if it is just slow, then resume=true",
    "ContextLengthError": "prompt + sampling.max_tokens exceed the model's context; lower sampling.max_tokens or "
    "strategy.workspace_tokens, or set engine.on_context_overflow=truncate",
    "AuthError": "the server rejected the API key; check the variable named by engine.api_key_env",
    "EngineRequestError": "the server refused the request (a 4xx or a malformed answer); see the message",
    "StallTimeout": "no call finished for the stall timeout; check the server, then resume=true",
    "GradingError": "the grader could not decide (its worker processes could not start or failed); see grade_error, "
    "then resume=true re-grades these rows (their engine calls come back from the journal)",
}


def resolve_cache_mode(mode: str, simulated: bool) -> str:
    """`cache.mode` with `auto` resolved: on for real engines, off for the simulated one."""
    if mode == "auto":
        return "off" if simulated else "on"
    return mode


def write_summary(
    plan: RunPlan,
    cfg: Config,
    engine: CachedEngine,
    engine_info: dict[str, Any],
    graph: str,
    wall_s: float,
    failure: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write summary.json from the rows on disk; return its content and those rows. On failure the
    metrics cover the finished rows only and `status`/`failure` say so. `graph`: the graph's
    description; `wall_s`: this attempt's execution time."""
    run_dir = plan.run_dir
    # One row (and trace) per problem-sample: a resume appended newer rows for re-run error rows.
    # Before anything reads the files, so that summary.json, results.jsonl and the MLflow
    # artifact (logged from the file next) agree. The writer is closed by now. A first attempt
    # writes each problem-sample once, so only a resumed run can hold superseded lines (and
    # traces.jsonl of a paper-scale run is gigabytes: not parsed for nothing).
    for name in (RESULTS, TRACES) if plan.attempt > 1 else ():
        dropped = compact_jsonl(run_dir / name)
        if dropped:
            log.info("%s: dropped %d superseded line(s) of earlier attempts", name, dropped)
    rows = plan.rows()
    metrics = summarize(rows, cfg.metrics.bootstrap_samples, cfg.metrics.ci_level, cfg.seed)
    metrics["wall_time_s"] = wall_s
    stats = engine.stats()
    # This attempt's calls: sent to the engine, and served from the journal / persistent cache.
    for name in (
        "engine_calls_sent",
        "engine_requests",
        "cache_hits",
        "cache_hits_journal",
        "cache_hits_persistent",
    ):
        metrics[name] = float(stats[name])
    logical = stats["engine_calls_sent"] + stats["cache_hits"]
    metrics["cache_hit_rate"] = stats["cache_hits"] / logical if logical else 0.0
    metrics["resumed_rows"] = float(len(plan.kept))
    errors = [r for r in rows if r["status"] == "error"]
    journal: str | None = str(run_dir / JOURNAL)
    if failure is None and not errors:
        # Finished with nothing left to redo: the journal's only use (resume) is gone, and every
        # output is in traces.jsonl. It can be as large as the traces, so it goes.
        remove_journal(run_dir)
        journal = None
    summary: dict[str, Any] = {
        "status": "FAILED" if failure else "FINISHED",
        **(
            {"failure": failure, "note": "metrics cover the finished problem-samples only"} if failure else {}
        ),
        "metrics": metrics,
        "run_key": plan.key,
        "simulated": engine.simulated,
        "oracle": any(bool(r.get("oracle")) for r in rows),  # workspaces chosen with the gold answers
        "engine_info": engine_info,
        "graph": graph,
        "errors": error_summary(errors, run_dir / ERRORS),
        "cache": {
            "mode": resolve_cache_mode(cfg.cache.mode, engine.simulated),
            "path": str(engine.persistent_path) if engine.persistent_path else None,
            "journal": journal,  # null: removed after a clean finish
            **stats,
        },
        "resume": {
            "attempt": plan.attempt,
            "kept_rows": len(plan.kept),
            "ran": len(plan.todo),
            "journal_calls_before": plan.journal_before,
        },
        "config": plan.config,
    }
    write_json(run_dir / SUMMARY, summary)
    return summary, rows


def error_summary(errors: list[dict[str, Any]], log_path: Path | None = None) -> dict[str, Any]:
    """The `errors` section of summary.json from the final error rows (and the errors.jsonl log of
    every error in every attempt, including those a resume later fixed)."""
    by_type = Counter(r.get("error_type") or "unknown" for r in errors)
    examples: list[dict[str, Any]] = []
    per_type: Counter[str] = Counter()
    for r in errors:  # up to 3 examples of each type
        t = r.get("error_type") or "unknown"
        if per_type[t] < 3:
            per_type[t] += 1
            examples.append(
                {"problem_id": r["problem_id"], "sample": r["sample"], "type": t, "error": r.get("error")}
            )
    out: dict[str, Any] = {
        "count": len(errors),
        "by_type": dict(by_type),
        "examples": examples,
        "hints": {t: ERROR_HINTS[t] for t in by_type if t in ERROR_HINTS},
    }
    if log_path is not None and log_path.exists():
        history = list(read_jsonl(log_path))
        out["log"] = log_path.name
        out["all_attempts"] = {
            "count": len(history),
            "by_type": dict(Counter(h.get("error_type") or "unknown" for h in history)),
        }
    if errors:
        out["resume"] = "error rows are re-run by resume=true"
    return out
