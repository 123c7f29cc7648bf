"""One run, end to end: data -> graph -> executor on the engine -> grading -> results -> metrics -> MLflow.

`run(cfg, run_dir)` takes a validated `Config` object (from `OmegaConf.to_object`) and returns the
summary. Everything finished is on disk before anything else can fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pdr.errors import PdrError
from pdr.results import RUN_INFO, SUMMARY, ResultsWriter, final_rows, read_jsonl, write_json

log = logging.getLogger(__name__)

# Config keys that do not change what a run computes (left out of the run key).
_NON_SEMANTIC = ("resume", "output_dir", "progress", "tracking", "notes", "cache", "grading")


class RunFailed(PdrError):
    """The run could not complete (too many errors, the engine could not start ...)."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    resumed_rows: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def config_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def run_key(config: dict[str, Any]) -> str:
    """A hash of what determines a run's results (not where or how it is logged)."""
    semantic = {k: v for k, v in config.items() if k not in _NON_SEMANTIC}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_resumable(outputs_root: Path, key: str) -> Path | None:
    """The newest earlier run directory under `outputs_root` with the same run key."""
    best: tuple[float, Path] | None = None
    if not outputs_root.exists():
        return None
    for info in outputs_root.glob(f"**/{RUN_INFO}"):
        try:
            data = json.loads(info.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("run_key") == key:
            mtime = info.stat().st_mtime
            if best is None or mtime > best[0]:
                best = (mtime, info.parent)
    return best[1] if best else None


def run(cfg: Any, run_dir: Path, launch_dir: Path | None = None, extra_tags: dict[str, str] | None = None) -> RunResult:
    from pdr.data import load_problems
    from pdr.strategies.graph import compile_graph

    launch_dir = launch_dir or Path.cwd()
    config = config_dict(cfg)
    key = run_key(config)
    graph = compile_graph(cfg.strategy)
    problems = load_problems(cfg.dataset)  # bad data fails here, before any engine call
    by_id = {p.id: p for p in problems}

    run_dir.mkdir(parents=True, exist_ok=True)
    info_path = run_dir / RUN_INFO
    prior = json.loads(info_path.read_text()) if info_path.exists() else {}
    if prior and prior.get("run_key") != key and not cfg.resume:
        raise RunFailed(f"{run_dir} holds a different run (run key {prior.get('run_key')}); choose another output_dir")
    writer = ResultsWriter(run_dir)
    done_rows = [r for r in final_rows(writer.existing_rows()) if r.get("status") != "error"] if cfg.resume else []
    if not cfg.resume and writer.existing_rows():
        writer.close()
        raise RunFailed(f"{run_dir} already has results; pass resume=true to continue it, or choose another output_dir")
    done = {(str(r["problem_id"]), int(r["sample"])) for r in done_rows}
    todo = [(p, s) for p in problems for s in range(cfg.samples) if (p.id, s) not in done]

    from pdr.engines import make_engine

    engine = make_engine(cfg.engine, problems, run_dir)
    engine = _with_cache(engine, cfg)

    tracker = None
    tracking_uri = None
    if cfg.tracking.enabled:
        from pdr.tracking.mlflow_run import MlflowRun, default_tracking_uri, git_commit, loggable_params

        tracking_uri = cfg.tracking.uri or default_tracking_uri(launch_dir)
        tags = {
            "engine": cfg.engine.name,
            "model": cfg.engine.model,
            "dataset": cfg.dataset.name,
            "strategy": cfg.strategy.name,
            "graph": graph.describe()[:5000],
            "git_commit": git_commit(),
            "run_key": key,
            "simulated": "true" if getattr(engine, "simulated", False) else "false",
            "run_dir": str(run_dir.resolve()),
        }
        if cfg.notes:
            tags["notes"] = cfg.notes
        tags.update(extra_tags or {})
        artifact_root = launch_dir / "mlartifacts" if tracking_uri.startswith("sqlite:") else None
        tracker = MlflowRun(
            tracking_uri,
            cfg.tracking.experiment,
            cfg.tracking.run_name,
            loggable_params(config),
            tags,
            parent_run_id=cfg.tracking.parent_run_id,
            resume_run_id=prior.get("mlflow_run_id") if cfg.resume and prior.get("mlflow_run_id") else None,
            artifact_root=artifact_root,
        )
    write_json(info_path, {"run_key": key, "mlflow_run_id": tracker.run_id if tracker else None,
                           "tracking_uri": tracking_uri, "started": time.time()})
    write_json(run_dir / "config.json", config)

    started = time.perf_counter()
    status = "FAILED"
    try:
        new_rows, engine_info = asyncio.run(_execute(cfg, engine, graph, todo, by_id, writer))
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        writer.close()
        if tracker is not None and status != "FINISHED":
            tracker.end("KILLED" if status == "KILLED" else "FAILED")
    wall = time.perf_counter() - started

    rows = final_rows(list(read_jsonl(run_dir / "results.jsonl")))
    rows = [r for r in rows if r["problem_id"] in by_id]
    from pdr.evaluation.metrics import summarize

    summary = summarize(rows, cfg.metrics.bootstrap_samples, cfg.metrics.ci_level, cfg.seed)
    summary["wall_time_s"] = wall
    summary["engine_calls_sent"] = float(getattr(engine, "calls", 0))
    errors = [r for r in rows if r["status"] == "error"]
    write_json(run_dir / SUMMARY, {
        "metrics": summary,
        "run_key": key,
        "simulated": bool(getattr(engine, "simulated", False)),
        "engine_info": engine_info,
        "graph": graph.describe(),
        "errors": _error_summary(errors),
        "config": config,
    })
    if tracker is not None:
        tracker.log_metrics(summary)
        tracker.set_tags({f"engine_info.{k}": str(v)[:500] for k, v in engine_info.items()})
        tracker.log_artifacts([run_dir / n for n in ("results.jsonl", "summary.json", "config.json", "traces.jsonl")])
        hydra_dir = run_dir / ".hydra"
        if hydra_dir.is_dir():
            tracker.log_artifacts([hydra_dir], artifact_path="hydra")
        try:
            from pdr.tracking.trace_view import write_trace_html

            html = write_trace_html(run_dir)
            if html is not None:
                tracker.log_artifacts([html])
        except ImportError:
            pass
        tracker.end("FINISHED")
    return RunResult(run_dir, summary, rows, tracking_uri, tracker.run_id if tracker else None, len(done_rows), engine_info)


def _with_cache(engine: Any, cfg: Any) -> Any:
    mode = cfg.cache.mode
    if mode == "auto":
        mode = "off" if getattr(engine, "simulated", False) else "on"
    if mode == "off":
        return engine
    try:
        from pdr.engines.cache import CachedEngine
    except ImportError:  # the call cache is optional until it lands
        return engine
    return CachedEngine(engine, cfg.cache.path, read_only=(mode == "read_only"))


def _error_summary(errors: list[dict[str, Any]]) -> dict[str, Any]:
    by_type: dict[str, int] = {}
    for r in errors:
        by_type[r.get("error_type") or "unknown"] = by_type.get(r.get("error_type") or "unknown", 0) + 1
    return {"count": len(errors), "by_type": by_type, "examples": [
        {"problem_id": r["problem_id"], "sample": r["sample"], "error": r.get("error")} for r in errors[:10]]}


async def _execute(cfg: Any, engine: Any, graph: Any, todo: list[tuple[Any, int]], by_id: dict[str, Any],
                   writer: ResultsWriter) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from pdr.evaluation import extract_answer, grade_many
    from pdr.executor import Executor, outcome_row

    executor = Executor(engine, graph, cfg.prompts, cfg.sampling, cfg.seed, extract=extract_answer)
    try:
        await engine.start()
    except Exception as exc:
        raise RunFailed(f"engine {cfg.engine.name} could not start: {exc}") from exc
    rows: list[dict[str, Any]] = []
    total = len(todo)
    allowed_errors = int(cfg.engine.max_error_rate * total)
    errors = 0
    bar = None
    if cfg.progress and total:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"{cfg.strategy.name} on {cfg.dataset.name}", unit="run", file=sys.stderr,
                   dynamic_ncols=True, leave=True)

    async def one(problem: Any, sample: int) -> tuple[dict[str, Any], dict[str, Any]]:
        outcome = await executor.run_one(problem, sample)
        grades: dict[str, Any] = {}
        final_grade = None
        if outcome.state is not None:
            answers = {a for rd in outcome.state.rounds for a in rd.answers if a is not None}
            if outcome.state.final is not None and outcome.state.final.answer is not None:
                answers.add(outcome.state.final.answer)
            ordered = sorted(answers)
            results = await asyncio.to_thread(
                grade_many, [(f"\\boxed{{{a}}}", problem.answer) for a in ordered],
                timeout_s=cfg.grading.timeout_s, workers=cfg.grading.workers)
            grades = dict(zip(ordered, results, strict=True))
            if outcome.state.final.answer is not None:
                final_grade = grades[outcome.state.final.answer]
        row = outcome_row(outcome, problem, grades, final_grade, cfg.metrics.seq_branch)
        trace = {"problem_id": problem.id, "sample": sample, "problem": problem.problem, "gold": problem.answer,
                 "status": row["status"], "answer": row.get("answer"), "calls": outcome.trace,
                 "workspaces": outcome.state.workspaces_log if outcome.state else []}
        return row, trace

    tasks = [asyncio.create_task(one(p, s)) for p, s in todo]
    try:
        for fut in asyncio.as_completed(tasks):
            row, trace = await fut
            writer.write(row, trace)
            rows.append(row)
            if row["status"] == "error":
                errors += 1
                if errors > allowed_errors:
                    raise RunFailed(
                        f"{errors} of {total} problem-samples failed (engine.max_error_rate={cfg.engine.max_error_rate}); "
                        f"last error: {row.get('error')}. Finished rows are kept in {writer.run_dir}; fix the cause "
                        "and rerun with resume=true to continue."
                    )
            if bar is not None:
                bar.update(1)
                correct = sum(1 for r in rows if r["correct"])
                bar.set_postfix(acc=f"{correct / len(rows):.2f}", err=errors, refresh=False)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if bar is not None:
            bar.close()
        info = engine.info() if hasattr(engine, "info") else {}
        await engine.close()
    return rows, info
