"""One run, end to end: data -> graph -> executor on the engine -> grading -> results -> metrics -> MLflow.

`run(cfg, run_dir)` takes a validated `Config` object (from `OmegaConf.to_object`) and returns the
summary. Everything finished is on disk before anything else can fail.

Order, so that bad input fails as early and as cheaply as possible:
1. config (validated by the caller; credentials refused here), strategy graph, dataset: a bad key
   or a bad row fails here, before any engine call, MLflow run or file;
2. the run directory (`pdr.results.rundir`): a different run's directory is refused;
   `resume=true` keeps its finished rows;
3. the engine, wrapped in the call journal (+ the persistent cache, `cache.mode`), is started:
   an unreachable server or a missing API key fails here, before an MLflow run is created;
4. the MLflow run (a resumed run continues its earlier MLflow run), created on a thread while the
   calls of 5 go out (`import mlflow` began at 2): rows never wait for it (pdr.tracking.background);
5. every unfinished (problem, sample) runs concurrently; rows are fsync'ed as they finish (by the
   results writer's thread, never ahead of the journal entries of their calls).

Resume (`resume=true`): finished rows (status != error) are kept; every other (problem, sample) is
run again. Calls that had finished before the interruption are served from the run's journal
(`<run_dir>/calls.sqlite`, always on; a SIGKILL loses the entries not yet committed, normally the
last ~10 ms', whose calls are sent again), and since every call's seed is derived from its position,
the re-run is the same computation: the final results equal those of an uninterrupted run.

Faults: an engine error fails only its problem-sample (status "error", kept in errors.jsonl); the
run fails (`pdr.execution_guard`) above `engine.max_error_rate`, at the first error the run cannot
outlive (a rejected API key), or when nothing progresses for the stall timeout; and on
SIGTERM/Ctrl-C. In every case the finished rows stay on disk and the message says how to resume.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pdr.config.schema import Config
from pdr.config.secrets import check_no_secrets
from pdr.data import Problem, load_problems
from pdr.engines import make_engine
from pdr.engines.base import Engine
from pdr.engines.cache import CachedEngine
from pdr.errors import PdrError
from pdr.evaluation import extract_answer
from pdr.evaluation.orchestrate import Grading, start_warm_up
from pdr.execution_guard import RunGuard
from pdr.executor import Executor, Outcome, outcome_row, outcome_trace
from pdr.results import (
    ARTIFACTS,
    CONFIG,
    JOURNAL,
    ResultsWriter,
    RunFailed,
    RunPlan,
    plan_run,
    resolve_cache_mode,
    write_json,
    write_summary,
)
from pdr.results.lock import RunDirLock
from pdr.results.trace_view import write_trace_html
from pdr.strategies.graph import Graph, compile_graph
from pdr.strategies.plan import check_context
from pdr.tracking.background import BackgroundStart, prewarm_mlflow
from pdr.tracking.live import RunProgress
from pdr.tracking.mlflow_run import MlflowRun, start_tracking

log = logging.getLogger(__name__)

# An interrupted run waits this long for an MLflow run still being created, to mark it KILLED (under
# SLURM's default 30 s between SIGTERM and SIGKILL); past it, resume=true continues it (pdr.run_uid).
INTERRUPT_WAIT_S = 20.0


class RunInterrupted(RunFailed):
    """The run was stopped by SIGINT/SIGTERM; finished rows are kept and it can be resumed."""


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]  # the metrics (summary.json's "metrics")
    rows: list[dict[str, Any]]  # the final row of every problem-sample
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    resumed_rows: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # the engine's facts (engine.info())


def run(
    cfg: Config, run_dir: Path, launch_dir: Path | None = None, extra_tags: dict[str, str] | None = None
) -> RunResult:
    """Run `cfg` into `run_dir` (created if needed) and return its summary.

    Raises a PdrError subclass for everything a user can fix (bad config or data, engine start
    failure, too many errors, interruption); the message names the cause and, when rows are kept,
    how to resume. Every finished row is on disk before this raises.
    """
    launch_dir = launch_dir or Path.cwd()
    check_no_secrets(cfg)  # before anything is written or logged
    graph = compile_graph(cfg.strategy)
    problems = load_problems(cfg.dataset)  # bad data fails here, before any engine call
    # Every step's worst-case context against engine.context_length (issue 10: pdr/strategies/plan.py).
    check_context(graph, cfg.prompts, cfg.sampling.max_tokens, cfg.engine.context_length, [p.problem for p in problems])
    # One process per run directory (two resumes at once would both run the unfinished work);
    # held until the last file is written, released by the OS if this process dies.
    with RunDirLock(run_dir):
        # `import mlflow` from now on, beside the data set and engine start (pdr.tracking.background).
        pending = BackgroundStart(prewarm_mlflow) if cfg.tracking.enabled else None
        try:
            return _run_locked(cfg, run_dir, graph, problems, launch_dir, extra_tags, pending)
        finally:
            if pending is not None:
                pending.cancel()  # a failure before the MLflow run's creation: nothing is created


def _run_locked(
    cfg: Config,
    run_dir: Path,
    graph: Graph,
    problems: list[Problem],
    launch_dir: Path,
    extra_tags: dict[str, str] | None,
    pending: BackgroundStart | None,
) -> RunResult:
    plan = plan_run(cfg, run_dir, problems)
    engine = _with_cache(make_engine(cfg.engine, problems, run_dir), cfg, run_dir)

    writer: ResultsWriter | None = None
    tracker: MlflowRun | None = None
    tracking_error: BaseException | None = None
    status = "FAILED"
    executing = False
    started = time.perf_counter()
    ended: float | None = None  # the calls' end (the wall time leaves out waiting for MLflow)
    engine_info: dict[str, Any] = {}

    def finish(failure: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """summary.json and the MLflow run's metrics and artifacts, from the rows on disk."""
        wall = (ended or time.perf_counter()) - started
        summary, rows = write_summary(plan, cfg, engine, engine_info, graph.describe(), wall, failure)
        if tracker is not None:
            tracker.log_metrics(summary["metrics"])
            tracker.set_tags({f"engine_info.{k}": str(v)[:500] for k, v in engine_info.items()})
            tracker.set_tags({"attempts": str(plan.attempt)})
            tracker.log_run_files(run_dir, ARTIFACTS)  # traces.jsonl stored once (see there)
        return summary, rows

    try:
        with asyncio.Runner() as loop, _sigterm_as_interrupt():
            if plan.todo:  # a finished run resumed again needs no engine (its server may be gone)
                loop.run(_start(engine, cfg))
                served = engine.info().get("context_length") if cfg.engine.context_length is None else None
                if isinstance(served, int):  # the server's own context length, before any request
                    try:
                        check_context(graph, cfg.prompts, cfg.sampling.max_tokens, served,
                                      [p.problem for p in problems], source="the server's context_length")  # fmt: skip
                    except PdrError:
                        loop.run(_close_quietly(engine))
                        raise
            # run.json before anything is written, so that resume=true finds this directory; not
            # earlier, so that a run that could not even start leaves nothing to resume.
            plan.write_info()
            write_json(run_dir / CONFIG, plan.config)
            if pending is not None:
                # The MLflow run is created on its thread while the calls go out; rows never wait
                # for it. run.json learns its id there (a resume continues it; killed before that,
                # the resume finds it by its tag pdr.run_uid).
                pending.start(
                    partial(start_tracking,
                        cfg, plan.config, run_key=plan.key, graph=graph.describe(), simulated=engine.simulated,
                        run_dir=run_dir, launch_dir=launch_dir, resume_from=plan.prior,
                        extra_tags={**(extra_tags or {}), **({"oracle": "true"} if graph.oracle else {})},
                        attempt=plan.attempt, run_uid=plan.info["run_uid"],
                    ),
                    on_ready=lambda t: plan.write_info(mlflow_run_id=t.run_id, tracking_uri=t.uri),
                )  # fmt: skip
            writer = ResultsWriter(run_dir)
            executing = True
            started = time.perf_counter()
            engine_info = loop.run(_execute(cfg, engine, graph, plan, writer, pending))
            ended = time.perf_counter()
            if pending is not None:
                try:
                    tracker = pending.result()
                except Exception as exc:  # noqa: BLE001 - reported below, once the results are safe
                    tracking_error = exc
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        engine.close_stores()  # the journal first: queued rows wait for their calls' entries
        if writer is not None:
            writer.close()  # every finished row on disk before they are counted
        raise RunInterrupted(
            f"interrupted; {plan.finished()} finished problem-samples are kept in {run_dir}. "
            f"Continue with the same command plus resume=true (or resume=true output_dir={run_dir})"
        ) from None
    except RunFailed as exc:
        if executing:  # the errors so far, in summary.json and MLflow, before the run is marked FAILED
            tracker = tracker or (pending.settled(60.0) if pending is not None else None)
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
        if status != "FINISHED":  # to mark it KILLED/FAILED, as before
            wait = INTERRUPT_WAIT_S if status == "KILLED" else 60.0
            tracker = tracker or (pending.settled(wait) if pending is not None else None)
        if tracker is not None and status != "FINISHED":
            tracker.end("KILLED" if status == "KILLED" else "FAILED")

    summary, rows = finish(None)
    if tracking_error is not None:
        raise RunFailed(
            f"MLflow tracking could not start ({type(tracking_error).__name__}: {tracking_error}); the run "
            f"finished without it: its results and summary are in {run_dir}. Once the store works, log them "
            "to MLflow with the same command plus resume=true (no engine call is sent: every problem-sample is "
            "finished); or run with tracking.enabled=false"
        ) from tracking_error
    if tracker is not None:
        _log_viewers(tracker, run_dir)
        _log_review(tracker, run_dir, cfg, len(problems))
        tracker.end("FINISHED")
    return RunResult(
        run_dir,
        summary["metrics"],
        rows,
        tracker.uri if tracker else None,
        tracker.run_id if tracker else None,
        len(plan.kept),
        engine_info,
    )


async def _execute(
    cfg: Config, engine: CachedEngine, graph: Graph, plan: RunPlan, writer: ResultsWriter,
    tracking: BackgroundStart | None = None,
) -> dict[str, Any]:
    """Run every (problem, sample) of `plan.todo` concurrently, handing each row to `writer` as it
    finishes (after the row's calls are journaled). Returns the engine's info. Raises RunFailed
    (rows finished so far are kept) on too many errors, a fatal error, or a stall; closes the
    engine in every case."""
    todo = plan.todo
    guard = RunGuard(cfg.engine, cfg.grading.timeout_s, len(todo), writer.run_dir)
    start_warm_up({p.answer for p, _ in todo}, cfg.grading.workers)
    grading = Grading(cfg.grading)
    # Console bar (calls, with an ETA) and live MLflow metrics, off the event loop (pdr.tracking.live).
    progress = RunProgress(
        tracking.log_metrics if tracking is not None else None, len(todo), len(graph.ops),
        cfg.tracking.live_interval_s, show_bar=cfg.progress, desc=f"{cfg.strategy.name} on {cfg.dataset.name}",
    )  # fmt: skip
    executor = Executor(progress.watch(engine), graph, cfg.prompts, cfg.sampling, cfg.seed, extract=extract_answer)
    unexpected_logged: set[str] = set()

    async def one(problem: Problem, sample: int) -> tuple[dict[str, Any], dict[str, Any]]:
        started = time.time()  # wall clock: the MLflow trace's start (pdr.tracking.traces)
        try:
            outcome = await executor.run_one(problem, sample)
        except Exception as exc:  # noqa: BLE001 - per-problem isolation also for non-engine failures
            # The executor isolates EngineErrors; anything else fails this problem-sample only.
            if type(exc).__name__ not in unexpected_logged:
                unexpected_logged.add(type(exc).__name__)
                log.exception("problem %s sample %d failed unexpectedly", problem.id, sample)
            outcome = Outcome.failed(problem.id, sample, exc, simulated=engine.simulated, oracle=graph.oracle)
        grades = await grading.grade(problem.id, problem.answer, outcome.answers())
        final = outcome.final_answer
        row = outcome_row(
            outcome, problem, grades, grades[final] if final is not None else None, cfg.metrics.seq_branch
        )
        trace = outcome_trace(outcome, problem, row)
        trace.update(started=round(started, 3), ended=round(time.time(), 3))
        return row, trace

    # A set, each task discarded once its row is handed over: only what is in flight (and its
    # trace) stays in memory, not every finished problem-sample until the end of the run.
    tasks = {asyncio.create_task(one(p, s)) for p, s in todo}
    # Finished tasks arrive through a queue (O(1) each; asyncio.wait over thousands of pending
    # tasks would be quadratic), polled so that a stall is noticed even when nothing finishes.
    finished: asyncio.Queue[asyncio.Task[Any]] = asyncio.Queue()
    for t in tasks:
        t.add_done_callback(finished.put_nowait)
    guard.restart_clock()
    try:
        while guard.done < guard.total:
            try:
                fut = await asyncio.wait_for(finished.get(), timeout=guard.poll_s)
            except TimeoutError:
                guard.check_stall(engine)
                continue
            tasks.discard(fut)
            row, trace = fut.result()
            # The row waits on the writer thread (not here) until its problem-sample's calls are
            # journaled, so that no row on disk refers to a call a resume would have to send again.
            writer.write(
                row, trace, attempt=plan.attempt, before=partial(engine.wait_journal, engine.journal_mark())
            )
            guard.row(row)
            progress.row(row)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*list(tasks), return_exceptions=True)
        grading.close()
        info = engine.info()
        if todo:  # else the engine was never started
            await engine.close()  # commits the journal's last writes, which rows may wait for
        progress.close()
    return info


def _with_cache(engine: Engine, cfg: Config, run_dir: Path) -> CachedEngine:
    """The engine behind the run's journal (always) and the persistent cache (per cache.mode)."""
    mode = resolve_cache_mode(cfg.cache.mode, engine.simulated)
    return CachedEngine(
        engine,
        cfg.cache.path,
        read_only=(mode == "read_only"),
        journal=run_dir / JOURNAL,
        persistent=(mode != "off"),
    )


def _log_viewers(tracker: MlflowRun, run_dir: Path) -> None:
    """Hydra's files and the HTML trace viewer as MLflow artifacts (optional extras: never fail)."""
    hydra_dir = run_dir / ".hydra"
    if hydra_dir.is_dir():
        tracker.log_artifacts([hydra_dir], artifact_path="hydra")
    try:
        html = write_trace_html(run_dir)
        if html is not None:
            tracker.log_artifacts([html])
    except Exception as exc:  # noqa: BLE001 - a viewer is optional; the results are already safe
        log.warning("could not write the trace viewer: %s: %s", type(exc).__name__, exc)


def _log_review(tracker: MlflowRun, run_dir: Path, cfg: Config, problems: int) -> None:
    """The data set as the run's MLflow input and the problem-samples as MLflow traces (after the
    run: no wall time on the benchmark). Optional extras: never fail the run."""
    from pdr.data import dataset_fingerprint

    try:
        ds = cfg.dataset
        source = (f"https://huggingface.co/datasets/{ds.hf_id}" if ds.hf_id else
                  Path(ds.path).expanduser().resolve().as_uri() if ds.path else f"pdr://bundled/{ds.name}")
        tracker.log_dataset(ds.name, source, dataset_fingerprint(ds), problems)
    except Exception as exc:  # noqa: BLE001 - an extra: the results are already safe
        log.warning("could not log the data set as an MLflow input: %s: %s", type(exc).__name__, exc)
    try:
        t0 = time.perf_counter()
        n = tracker.log_traces(run_dir, cfg.tracking.traces)
        log.info("%d problem-samples logged as MLflow traces in %.2f s", n, time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - an extra: the results are already safe
        log.warning("could not log MLflow traces: %s: %s", type(exc).__name__, exc)


def _safe_info(engine: CachedEngine) -> dict[str, Any]:
    try:
        return engine.info()
    except Exception as exc:  # noqa: BLE001 - facts for the record; the run is failing anyway
        log.debug("engine.info() failed: %s", exc)
        return {}


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


async def _start(engine: CachedEngine, cfg: Config) -> None:
    """Start the engine (readiness check); a failure is a RunFailed naming the engine and cause."""
    try:
        await engine.start()
    except PdrError as exc:
        await _close_quietly(engine)
        raise RunFailed(f"engine {cfg.engine.name} could not start: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - any start failure is reported the same way
        await _close_quietly(engine)
        raise RunFailed(f"engine {cfg.engine.name} could not start: {type(exc).__name__}: {exc}") from exc


async def _close_quietly(engine: CachedEngine) -> None:
    try:
        await engine.close()
    except Exception as exc:  # noqa: BLE001 - already failing; the first error is the one to report
        log.debug("engine close after a failed start: %s", exc)


__all__ = ["RunFailed", "RunInterrupted", "RunResult", "run"]
