"""One run, end to end: data -> graph -> executor on the engine -> grading -> results -> metrics -> MLflow.

`run(cfg, run_dir)` takes a validated `Config` object (from `OmegaConf.to_object`) and returns the
summary. Everything finished is on disk before anything else can fail.

Order, so that bad input fails as early and as cheaply as possible:
1. config (validated by the caller), strategy graph, dataset: a bad key or a bad row fails here,
   before any engine call, MLflow run or file;
2. the run directory: a different run's directory is refused; `resume=true` keeps its finished rows;
3. the engine, wrapped in the call journal (+ the persistent cache, `cache.mode`), is started:
   an unreachable server or a missing API key fails here, before an MLflow run is created;
4. the MLflow run (a resumed run continues its earlier MLflow run);
5. every unfinished (problem, sample) runs concurrently; rows are fsync'ed as they finish (by the
   results writer's thread, never ahead of the journal entries of their calls).

Resume (`resume=true`): finished rows (status != error) are kept; every other (problem, sample) is
run again. Calls that had finished before the interruption are served from the run's journal
(`<run_dir>/calls.sqlite`, always on; a SIGKILL loses the entries not yet committed, normally the last
~10 ms', whose calls are sent again), and since every call's seed is derived from its position, the re-run is the same
computation: the final results equal those of an uninterrupted run.

Faults: an engine error fails only its problem-sample (status "error", kept in errors.jsonl); the
run fails above `engine.max_error_rate`, at the first error the run cannot outlive (a rejected API
key), on SIGTERM/Ctrl-C, or when nothing progresses for the stall timeout. In every case the
finished rows stay on disk and the message says how to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pdr.config.secrets import is_secret_key
from pdr.errors import PdrError
from pdr.results import (
    ERRORS,
    JOURNAL,
    RESULTS,
    RUN_INFO,
    SUMMARY,
    TRACES,
    ResultsWriter,
    final_rows,
    read_jsonl,
    write_json,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Config keys that do not change what a run computes (left out of the run key).
_NON_SEMANTIC = ("resume", "output_dir", "progress", "tracking", "notes", "cache", "grading")

# Error types that every remaining call would hit too: the run stops at the first one instead of
# failing every problem-sample (a wrong API key would otherwise burn through the whole dataset).
FATAL_ERROR_TYPES = frozenset({"AuthError", "ConfigError"})

# What to do about each kind of error, shown in summary.json and in the failure message.
ERROR_HINTS = {
    "EngineUnavailable": "the server was unreachable, overloaded or timed out after all retries; check it, "
    "raise engine.timeout_s / engine.max_retries if it is just slow, then resume=true",
    "ContextLengthError": "prompt + sampling.max_tokens exceed the model's context; lower sampling.max_tokens or "
    "strategy.workspace_tokens, or set engine.on_context_overflow=truncate",
    "AuthError": "the server rejected the API key; check the variable named by engine.api_key_env",
    "EngineRequestError": "the server refused the request (a 4xx or a malformed answer); see the message",
    "StallTimeout": "no call finished for the stall timeout; check the server, then resume=true",
}
# Environment override of the stall timeout (seconds), e.g. for tests or very slow servers.
STALL_ENV = "PDR_STALL_TIMEOUT_S"


class RunFailed(PdrError):
    """The run could not complete (too many errors, the engine could not start ...)."""


class RunInterrupted(RunFailed):
    """The run was stopped by SIGINT/SIGTERM; finished rows are kept and it can be resumed."""


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


def find_resumable(roots: list[Path], key: str) -> Path | None:
    """The newest earlier run directory under any of `roots` (e.g. outputs/ and multirun/) with
    the same run key."""
    best: tuple[float, Path] | None = None
    for root in roots:
        if not root.exists():
            continue
        for info in root.glob(f"**/{RUN_INFO}"):
            try:
                data = json.loads(info.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("run_key") == key:
                mtime = info.stat().st_mtime
                if best is None or mtime > best[0]:
                    best = (mtime, info.parent)
    return best[1] if best else None


def check_no_secrets(cfg: Any) -> None:
    """RunFailed if any config key that names a credential (api_key, *_secret, password, token ...)
    holds a value, including keys added with `+` that the schema does not know. The message names
    the key, never the value. Runs before anything is written or logged."""
    for key, value in _walk_config(cfg):
        if is_secret_key(key) and value not in (None, "", {}, []):
            raise RunFailed(
                f"{key}: looks like a credential, and pdr never takes credentials from the config (it is recorded in "
                "config.json, MLflow and Hydra's output). Remove it; export the key in an environment variable and "
                "name that variable instead, e.g. engine.api_key_env=MY_KEY_VAR"
            )


def _walk_config(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) for every leaf of a config object: dataclass fields, attributes
    added beyond the schema (Hydra's `+key=value` on a structured node), and dict entries."""
    import dataclasses

    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        known = [f.name for f in dataclasses.fields(node)]
        extras = [k for k in getattr(node, "__dict__", {}) if k not in known and not k.startswith("_")]
        for name in (*known, *extras):
            yield from _walk_config(getattr(node, name), f"{prefix}{name}.")
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_config(v, f"{prefix}{k}.")
    elif prefix:
        yield prefix[:-1], node


def resolve_cache_mode(mode: str, engine: Any) -> str:
    """`cache.mode` with `auto` resolved: on for real engines, off for the simulated one."""
    if mode == "auto":
        return "off" if getattr(engine, "simulated", False) else "on"
    return mode


def stall_timeout_s(engine_cfg: Any) -> float:
    """Seconds without any finished call after which the run is failed as stalled.

    `$PDR_STALL_TIMEOUT_S` if set; else `engine.stall_timeout_s` if the schema has it; else the
    longest a single call can legitimately take: every attempt timing out plus the longest
    backoffs, plus a minute. Per-request timeouts are the first line; this is the guard that makes
    "never hang" hold even if something below them does not time out.
    """
    env = os.environ.get(STALL_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            raise RunFailed(f"{STALL_ENV}={env!r}: must be a number of seconds") from None
        if value > 0:
            return value
    explicit = getattr(engine_cfg, "stall_timeout_s", None)
    if explicit:
        return float(explicit)
    attempts = int(getattr(engine_cfg, "max_retries", 0)) + 1
    per_attempt = float(getattr(engine_cfg, "timeout_s", 600.0)) + float(
        getattr(engine_cfg, "retry_backoff_max_s", 0.0)
    )
    return attempts * per_attempt + 60.0


def _with_cache(engine: Any, cfg: Any, run_dir: Path) -> Any:
    """The engine behind the run's journal (always) and the persistent cache (per cache.mode)."""
    from pdr.engines.cache import CachedEngine

    mode = resolve_cache_mode(cfg.cache.mode, engine)
    return CachedEngine(
        engine,
        cfg.cache.path,
        read_only=(mode == "read_only"),
        journal=run_dir / JOURNAL,
        persistent=(mode != "off"),
    )


def run(
    cfg: Any, run_dir: Path, launch_dir: Path | None = None, extra_tags: dict[str, str] | None = None
) -> RunResult:
    """Run `cfg` into `run_dir` (created if needed) and return its summary.

    Raises a PdrError subclass for everything a user can fix (bad config or data, engine start
    failure, too many errors, interruption); the message names the cause and, when rows are kept,
    how to resume. Every finished row is on disk before this raises.
    """
    from pdr.data import load_problems
    from pdr.strategies.graph import compile_graph

    launch_dir = launch_dir or Path.cwd()
    check_no_secrets(cfg)  # before anything is written or logged
    config = config_dict(cfg)
    key = run_key(config)
    graph = compile_graph(cfg.strategy)
    problems = load_problems(cfg.dataset)  # bad data fails here, before any engine call
    by_id = {p.id: p for p in problems}

    run_dir.mkdir(parents=True, exist_ok=True)
    info_path = run_dir / RUN_INFO
    prior = _read_run_info(info_path)
    if prior and prior.get("run_key") != key:
        raise RunFailed(
            f"{run_dir} holds a run with a different configuration (run key {prior.get('run_key')}, this one {key}); "
            "choose another output_dir"
            + (" (resume=true continues only the same configuration)" if cfg.resume else "")
        )
    existing = list(read_jsonl(run_dir / RESULTS))
    if not cfg.resume and existing:
        raise RunFailed(
            f"{run_dir} already has results; pass resume=true to continue it, or choose another output_dir"
        )
    done_rows = [r for r in final_rows(existing) if r.get("status") != "error"] if cfg.resume else []
    done = {(str(r["problem_id"]), int(r["sample"])) for r in done_rows}
    todo = [(p, s) for p in problems for s in range(cfg.samples) if (p.id, s) not in done]
    attempt = int(prior.get("attempts", 1 if prior else 0)) + 1
    if cfg.resume:
        log.info(
            "resume: %d finished problem-samples kept, %d to run (attempt %d) in %s",
            len(done_rows),
            len(todo),
            attempt,
            run_dir,
        )

    from pdr.engines import make_engine
    from pdr.engines.cache import count_entries

    journal_before = count_entries(run_dir / JOURNAL) if cfg.resume else 0
    engine = _with_cache(make_engine(cfg.engine, problems, run_dir), cfg, run_dir)
    run_info = {
        "run_key": key,
        "mlflow_run_id": prior.get("mlflow_run_id"),
        "tracking_uri": prior.get("tracking_uri"),
        "started": prior.get("started", time.time()),
        "last_started": time.time(),
        "attempts": attempt,
    }

    writer: ResultsWriter | None = None
    tracker = None
    status = "FAILED"
    executing = False
    started = time.perf_counter()
    engine_info: dict[str, Any] = {}

    def finish(failure: str | None) -> dict[str, Any]:
        """summary.json (and MLflow metrics + artifacts) from the rows on disk; on failure the
        metrics cover the finished rows only and `status`/`failure` say so."""
        summary = _write_summary(
            run_dir,
            cfg,
            config,
            key,
            graph,
            engine,
            engine_info,
            by_id,
            done_rows,
            todo,
            attempt,
            journal_before,
            time.perf_counter() - started,
            failure,
        )
        if tracker is not None:
            tracker.log_metrics(summary["metrics"])
            tracker.set_tags({f"engine_info.{k}": str(v)[:500] for k, v in engine_info.items()})
            tracker.set_tags({"attempts": str(attempt)})
            tracker.log_artifacts([run_dir / n for n in (RESULTS, SUMMARY, "config.json", TRACES, ERRORS)])
        return summary

    try:
        with asyncio.Runner() as loop, _sigterm_as_interrupt():
            if todo:  # a finished run resumed again needs no engine (its server may be gone)
                loop.run(_start(engine, cfg))
            # run.json before anything is written, so that resume=true finds this directory; not
            # earlier, so that a run that could not even start leaves nothing to resume.
            write_json(info_path, run_info)
            write_json(run_dir / "config.json", config)
            try:
                tracker = _start_tracking(
                    cfg, config, key, graph, engine, run_dir, launch_dir, extra_tags, prior, attempt
                )
            except BaseException:
                if todo:
                    loop.run(_close_quietly(engine))
                raise
            run_info.update(
                mlflow_run_id=tracker.run_id if tracker else None,
                tracking_uri=tracker.uri if tracker else None,
            )
            write_json(info_path, run_info)
            writer = ResultsWriter(run_dir)
            executing = True
            started = time.perf_counter()
            engine_info = loop.run(
                _execute(cfg, engine, graph, todo, writer, attempt, started_engine=bool(todo))
            )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        engine.close_stores()  # the journal first: queued rows wait for their calls' entries
        if writer is not None:
            writer.close()  # every finished row on disk before they are counted
        raise RunInterrupted(
            f"interrupted; {_kept(run_dir, by_id)} finished problem-samples are kept in {run_dir}. "
            f"Continue with the same command plus resume=true (or resume=true output_dir={run_dir})"
        ) from None
    except RunFailed as exc:
        if executing:  # the errors so far, in summary.json and MLflow, before the run is marked FAILED
            engine_info = _safe_info(engine)
            if writer is not None:
                writer.close()
            try:
                finish(str(exc))
            except Exception as inner:  # noqa: BLE001 - never mask the run's own failure
                log.warning("could not write the failure summary: %s", inner)
        raise
    finally:
        engine.close_stores()
        if writer is not None:
            writer.close()
        if tracker is not None and status != "FINISHED":
            tracker.end("KILLED" if status == "KILLED" else "FAILED")

    summary = finish(None)
    rows = summary.pop("_rows")
    if tracker is not None:
        hydra_dir = run_dir / ".hydra"
        if hydra_dir.is_dir():
            tracker.log_artifacts([hydra_dir], artifact_path="hydra")
        try:
            from pdr.review.trace_view import write_trace_html

            html = write_trace_html(run_dir)
            if html is not None:
                tracker.log_artifacts([html])
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001 - a viewer is optional; the results are already safe
            log.warning("could not write the trace viewer: %s: %s", type(exc).__name__, exc)
        tracker.end("FINISHED")
    return RunResult(
        run_dir,
        summary["metrics"],
        rows,
        tracker.uri if tracker else None,
        tracker.run_id if tracker else None,
        len(done_rows),
        engine_info,
    )


def _remove_journal(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the call journal %s: %s", p, exc)


def _safe_info(engine: Any) -> dict[str, Any]:
    try:
        return engine.info()
    except Exception as exc:  # noqa: BLE001 - facts for the record; the run is failing anyway
        log.debug("engine.info() failed: %s", exc)
        return {}


def _write_summary(
    run_dir: Path,
    cfg: Any,
    config: dict[str, Any],
    key: str,
    graph: Any,
    engine: Any,
    engine_info: dict[str, Any],
    by_id: dict[str, Any],
    done_rows: list[dict[str, Any]],
    todo: list[Any],
    attempt: int,
    journal_before: int,
    wall: float,
    failure: str | None,
) -> dict[str, Any]:
    """Write summary.json from the rows on disk; return its content plus the rows under "_rows"."""
    from pdr.evaluation.metrics import summarize

    rows = final_rows(list(read_jsonl(run_dir / RESULTS)))
    rows = [r for r in rows if r["problem_id"] in by_id]
    metrics = summarize(rows, cfg.metrics.bootstrap_samples, cfg.metrics.ci_level, cfg.seed)
    metrics["wall_time_s"] = wall
    stats = engine.stats()
    # This attempt's calls: sent to the engine, and served from the journal / persistent cache.
    metrics["engine_calls_sent"] = float(stats["engine_calls_sent"])
    metrics["engine_requests"] = float(stats["engine_requests"])
    metrics["cache_hits"] = float(stats["cache_hits"])
    metrics["cache_hits_journal"] = float(stats["cache_hits_journal"])
    metrics["cache_hits_persistent"] = float(stats["cache_hits_persistent"])
    logical = stats["engine_calls_sent"] + stats["cache_hits"]
    metrics["cache_hit_rate"] = stats["cache_hits"] / logical if logical else 0.0
    metrics["resumed_rows"] = float(len(done_rows))
    errors = [r for r in rows if r["status"] == "error"]
    journal: str | None = str(run_dir / JOURNAL)
    if failure is None and not errors:
        # Finished with nothing left to redo: the journal's only use (resume) is gone, and every
        # output is in traces.jsonl. It can be as large as the traces, so it goes.
        _remove_journal(run_dir / JOURNAL)
        journal = None
    summary: dict[str, Any] = {
        "status": "FAILED" if failure else "FINISHED",
        **(
            {"failure": failure, "note": "metrics cover the finished problem-samples only"} if failure else {}
        ),
        "metrics": metrics,
        "run_key": key,
        "simulated": bool(getattr(engine, "simulated", False)),
        "engine_info": engine_info,
        "graph": graph.describe(),
        "errors": error_summary(errors, run_dir / ERRORS),
        "cache": {
            "mode": resolve_cache_mode(cfg.cache.mode, engine),
            "path": str(engine.persistent_path) if engine.persistent_path else None,
            "journal": journal,  # null: removed after a clean finish
            **stats,
        },
        "resume": {
            "attempt": attempt,
            "kept_rows": len(done_rows),
            "ran": len(todo),
            "journal_calls_before": journal_before,
        },
        "config": config,
    }
    write_json(run_dir / SUMMARY, summary)
    summary["_rows"] = rows
    return summary


def _read_run_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFailed(
            f"{path}: unreadable ({exc}); it identifies the run in this directory: choose another output_dir"
        ) from exc
    return data if isinstance(data, dict) else {}


def _kept(run_dir: Path, by_id: dict[str, Any]) -> int:
    rows = final_rows(list(read_jsonl(run_dir / RESULTS)))
    return sum(1 for r in rows if r["problem_id"] in by_id and r.get("status") != "error")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (SLURM preemption, `kill`) like Ctrl-C: the run stops cleanly (MLflow run
    KILLED, journal and results closed) and can be resumed. Main thread only (signal API rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _start(engine: Any, cfg: Any) -> None:
    """Start the engine (readiness check); a failure is a RunFailed naming the engine and cause."""
    try:
        await engine.start()
    except PdrError as exc:
        await _close_quietly(engine)
        raise RunFailed(f"engine {cfg.engine.name} could not start: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any start failure is reported the same way
        await _close_quietly(engine)
        raise RunFailed(f"engine {cfg.engine.name} could not start: {type(exc).__name__}: {exc}") from exc


async def _close_quietly(engine: Any) -> None:
    try:
        await engine.close()
    except Exception as exc:  # noqa: BLE001 - already failing; the first error is the one to report
        log.debug("engine close after a failed start: %s", exc)


def _start_tracking(
    cfg: Any,
    config: dict[str, Any],
    key: str,
    graph: Any,
    engine: Any,
    run_dir: Path,
    launch_dir: Path,
    extra_tags: dict[str, str] | None,
    prior: dict[str, Any],
    attempt: int,
) -> Any:
    """The MLflow run of this job, or None (tracking disabled). A resumed run continues the MLflow
    run recorded in run.json if it is in the same store; else a new run is created."""
    if not cfg.tracking.enabled:
        return None
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
    resume_id = (
        prior.get("mlflow_run_id") if cfg.resume and prior.get("tracking_uri") == tracking_uri else None
    )

    def make(resume_run_id: str | None) -> Any:
        return MlflowRun(
            tracking_uri,
            cfg.tracking.experiment,
            cfg.tracking.run_name,
            loggable_params(config),
            tags,
            parent_run_id=cfg.tracking.parent_run_id,
            resume_run_id=resume_run_id,
            artifact_root=artifact_root,
        )

    if resume_id:
        try:
            tracker = make(resume_id)
            log.info("resume: continuing MLflow run %s (attempt %d)", resume_id, attempt)
            return tracker
        except Exception as exc:  # noqa: BLE001 - mlflow's exception types stay inside pdr.tracking
            log.warning("MLflow run %s could not be resumed (%s); starting a new MLflow run", resume_id, exc)
    return make(None)


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


class _GradingThreads:
    """Long-lived daemon threads for the math-verify part of grading, one per job in flight
    (started when none is idle, then reused).

    Daemon threads, not `asyncio.to_thread`: a check that never returns (a stuck grader) must not
    block the loop's shutdown (the default executor is joined) or the interpreter's exit, so that
    the stall guard can fail the run cleanly instead of hanging at the very end; and a stuck job
    holds only its own thread, never another problem-sample's grading.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def run(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """`fn()` on a grading thread, as an awaitable (call from the event loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._threads += 1
            else:
                self._idle -= 1
        self._jobs.put((fn, loop, fut))
        if spawn:
            threading.Thread(target=self._work, name="pdr-grade", daemon=True).start()
        return fut

    def close(self) -> None:
        """Let the idle threads exit (a stuck one stays until its job returns, harmlessly)."""
        with self._lock:
            threads, self._threads = self._threads, 0
        for _ in range(threads):
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, loop, fut = job
            try:
                result, exc = fn(), None
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, exc = None, e
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            with self._lock:
                self._idle += 1


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # cancelled meanwhile (the run is ending)
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _may_need_math_verify(problems: list[Any]) -> bool:
    """Whether a run on `problems` is likely to need math-verify (and so its worker processes):
    yes unless every gold answer is an integer (AIME-style), where the inline fast paths decide any
    numeric answer and a worker, ~0.5 s of a core to start, would most likely never be used."""
    return any(not _INTEGER.fullmatch(str(p.answer)) for p in problems)


class _Grading:
    """The grading of one run, on its event loop: never raises (a grading failure grades the
    answers it concerns wrong with the error recorded), never blocks the loop.

    What the inline fast paths decide (no answer, string or number equality, a verdict already
    known: microseconds) is graded on the loop; only the rest goes to math-verify, on a grading
    thread, and each distinct (answer, gold) check only once at a time: the samples of a problem
    that reach the same answer together share one check (one in three MATH-500 checks otherwise).
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.threads = _GradingThreads()
        self._checking: dict[tuple[str, str], asyncio.Future[Any]] = {}  # (response, gold) -> its Grade

    async def grade(self, problem: Any, answers: list[str]) -> dict[str, Any]:
        """Grades of the distinct `answers` against `problem`'s gold answer."""
        from pdr.evaluation import grade_many  # at call time: tests replace it
        from pdr.evaluation.grading import fast_grade

        gold = str(problem.answer)
        grades: dict[str, Any] = {}
        waiting: dict[str, asyncio.Future[Any]] = {}
        new: list[tuple[str, str]] = []
        for a in answers:
            response = f"\\boxed{{{a}}}"
            g = fast_grade(response, gold)
            if g is not None:
                grades[a] = g
                continue
            key = (response, gold)
            fut = self._checking.get(key)
            if fut is None:
                fut = self._checking[key] = asyncio.get_running_loop().create_future()
                new.append(key)
            waiting[a] = fut
        if new:
            cfg = self.cfg.grading
            job = self.threads.run(lambda: grade_many(new, timeout_s=cfg.timeout_s, workers=cfg.workers))
            job.add_done_callback(partial(self._checked, new, problem.id))
        for a, fut in waiting.items():
            grades[a] = await asyncio.shield(fut)  # one waiter's cancellation is not the others'
        return grades

    def _checked(self, keys: list[tuple[str, str]], problem_id: str, job: asyncio.Future[Any]) -> None:
        """Hand a finished `grade_many` job's Grades to everyone waiting for them (loop thread)."""
        try:
            results = list(job.result())
            if len(results) != len(keys):
                raise RuntimeError(f"grade_many returned {len(results)} grades for {len(keys)} answers")
        except BaseException as exc:  # noqa: BLE001 - grading must never crash a run (design §6)
            log.warning("grading failed for problem %s: %s: %s", problem_id, type(exc).__name__, exc)
            from pdr.evaluation import Grade

            # Counted wrong, with the reason recorded (what the grader itself does on a failure).
            results = [Grade(False, "wrong", None, error=f"{type(exc).__name__}: {exc}"[:500])] * len(keys)
        for key, grade in zip(keys, results, strict=True):
            fut = self._checking.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(grade)

    def close(self) -> None:
        self.threads.close()


async def _execute(
    cfg: Any,
    engine: Any,
    graph: Any,
    todo: list[tuple[Any, int]],
    writer: ResultsWriter,
    attempt: int,
    started_engine: bool = True,
) -> dict[str, Any]:
    """Run every (problem, sample) in `todo` concurrently, handing each row to `writer` as it
    finishes (after the row's calls are journaled). Returns the engine's info. Raises RunFailed
    (rows finished so far are kept) on too many errors, a fatal error, or a stall; closes the
    engine in every case."""
    from pdr.evaluation import extract_answer, warm_up
    from pdr.executor import Executor, outcome_row

    if todo and _may_need_math_verify([p for p, _ in todo]):
        # Start the grading workers (~0.5 s: sympy) while the first calls are in flight, so that
        # the first math-verify check does not pay for it at the end of a problem-sample.
        threading.Thread(
            target=warm_up, args=(cfg.grading.workers,), name="pdr-grade-warm-up", daemon=True
        ).start()
    grading = _Grading(cfg)

    executor = Executor(engine, graph, cfg.prompts, cfg.sampling, cfg.seed, extract=extract_answer)
    total = len(todo)
    allowed_errors = int(cfg.engine.max_error_rate * total)
    errors = 0
    done = 0
    correct = 0
    unexpected_logged: set[str] = set()
    stall_s = stall_timeout_s(cfg.engine)
    # While no engine call is in flight, only grading can be pending: every check has a hard
    # timeout, so a row is due within (answers per row) x grading.timeout_s; allow 25 + a minute.
    grade_stall_s = float(os.environ.get(STALL_ENV) or 0) or 60.0 + 25 * cfg.grading.timeout_s
    bar = None
    if cfg.progress and total:
        from tqdm import tqdm

        bar = tqdm(
            total=total,
            desc=f"{cfg.strategy.name} on {cfg.dataset.name}",
            unit="run",
            file=sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )
        # The bar counts durable rows: updated on the writer thread after each fsync (tqdm locks).
        writer.on_durable = bar.update
    # A row waits on the writer thread (not here) until its problem-sample's calls are journaled,
    # so that no row on disk ever refers to a call a resume would have to send again.
    journal_mark = getattr(engine, "journal_mark", None)
    wait_journal = getattr(engine, "wait_journal", None)

    async def one(problem: Any, sample: int) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            outcome = await executor.run_one(problem, sample)
        except Exception as exc:  # noqa: BLE001 - per-problem isolation also for non-engine failures
            # The executor isolates EngineErrors; anything else (a strategy bug on odd model
            # output, an engine raising outside the hierarchy) fails this problem-sample only.
            kind = type(exc).__name__
            if kind not in unexpected_logged:
                unexpected_logged.add(kind)
                log.exception("problem %s sample %d failed unexpectedly", problem.id, sample)
            from pdr.executor import Outcome

            outcome = Outcome(
                problem.id, sample, None, [], 0.0, error=f"{kind}: {exc}"[:2000], error_type=kind
            )
        grades: dict[str, Any] = {}
        final_grade = None
        if outcome.state is not None:
            answers = {a for rd in outcome.state.rounds for a in rd.answers if a is not None}
            if outcome.state.final is not None and outcome.state.final.answer is not None:
                answers.add(outcome.state.final.answer)
            grades = await grading.grade(problem, sorted(answers))
            if outcome.state.final is not None and outcome.state.final.answer is not None:
                final_grade = grades[outcome.state.final.answer]
        row = outcome_row(outcome, problem, grades, final_grade, cfg.metrics.seq_branch)
        trace = {
            "problem_id": problem.id,
            "sample": sample,
            "problem": problem.problem,
            "gold": problem.answer,
            "status": row["status"],
            "answer": row.get("answer"),
            "calls": outcome.trace,
            "workspaces": outcome.state.workspaces_log if outcome.state else [],
        }
        return row, trace

    # A set, each task discarded once its row is handed over: only what is in flight (and its
    # trace) stays in memory, not every finished problem-sample until the end of the run.
    tasks = {asyncio.create_task(one(p, s)) for p, s in todo}
    # Finished tasks arrive through a queue (O(1) each; asyncio.wait over thousands of pending
    # tasks would be quadratic), polled so that a stall is noticed even when nothing finishes.
    finished: asyncio.Queue[asyncio.Task[Any]] = asyncio.Queue()
    for t in tasks:
        t.add_done_callback(finished.put_nowait)
    poll_s = min(5.0, stall_s / 4, grade_stall_s / 4)
    last_row = time.monotonic()
    try:
        while done < total:
            try:
                fut = await asyncio.wait_for(finished.get(), timeout=poll_s)
            except TimeoutError:
                idle = time.monotonic() - max(last_row, getattr(engine, "last_activity", last_row))
                calls_out = getattr(engine, "in_flight", 1)
                limit = stall_s if calls_out else grade_stall_s
                if idle > limit:
                    what = (
                        f"{calls_out} engine calls outstanding; check the server"
                        if calls_out
                        else "no engine call outstanding: grading is stuck (see the grading log lines above)"
                    )
                    raise RunFailed(
                        f"StallTimeout: no engine call and no problem-sample finished for {idle:.0f} s "
                        f"(limit {limit:g} s; {total - done} problem-samples unfinished, {what}). "
                        f"Finished rows are kept in {writer.run_dir}; rerun with resume=true."
                    ) from None
                continue
            tasks.discard(fut)
            row, trace = fut.result()
            before = partial(wait_journal, journal_mark()) if journal_mark and wait_journal else None
            writer.write(row, trace, attempt=attempt, before=before)
            done += 1
            correct += bool(row["correct"])
            last_row = time.monotonic()
            if row["status"] == "error":
                errors += 1
                etype = row.get("error_type") or "unknown"
                if etype in FATAL_ERROR_TYPES:
                    raise RunFailed(
                        f"{etype}: {row.get('error')} ({ERROR_HINTS.get(etype, 'fix the cause')}). "
                        f"Stopped at the first such error: every call would fail the same way. Finished rows "
                        f"are kept in {writer.run_dir}; fix it and rerun with resume=true."
                    )
                if errors > allowed_errors:
                    raise RunFailed(
                        f"{errors} of {total} problem-samples failed (engine.max_error_rate={cfg.engine.max_error_rate}); "
                        f"last error: {etype}: {row.get('error')}. Finished rows are kept in {writer.run_dir} "
                        f"(errors in {ERRORS}); fix the cause and rerun with resume=true to continue."
                    )
            if bar is not None:
                bar.set_postfix(acc=f"{correct / done:.2f}", err=errors, refresh=False)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*list(tasks), return_exceptions=True)
        grading.close()
        info = engine.info() if hasattr(engine, "info") else {}
        if started_engine:
            await engine.close()  # commits the journal's last writes, which rows may wait for
        if bar is not None:
            writer.flush()  # the last rows' fsync, so that the bar ends complete
            writer.on_durable = None
            bar.close()
    return info


__all__ = [
    "RunFailed",
    "RunInterrupted",
    "RunResult",
    "config_dict",
    "find_resumable",
    "run",
    "run_key",
    "resolve_cache_mode",
    "stall_timeout_s",
    "error_summary",
]
