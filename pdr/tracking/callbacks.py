"""Hydra callback: one MLflow parent run per multirun sweep, one child run per job.

Enabled in conf/hydra/default.yaml (`hydra.callbacks.mlflow_sweep`). In RUN mode it does nothing.
In MULTIRUN mode (`python -m pdr.run -m ...`):

- `on_multirun_start` (local, before the launcher starts any job): creates the store's tables and
  the experiment once (parallel jobs racing to migrate a fresh SQLite file or to create the
  experiment is a known failure), starts the parent run (tags: sweep id and directory, git SHA,
  the sweep's overrides and sweeper params, launcher; artifact: the multirun config), and writes
  `<sweep_dir>/mlflow_parent.json`.
- Each job (in `pdr/run.py`, via `parent_run_for_job`) reads that file from its own sweep
  directory, which works for every launcher whose jobs see the sweep directory: the basic one,
  joblib/loky worker processes, submitit on SLURM with a shared filesystem. The child run is tied
  to the parent by the `mlflow.parentRunId` tag (`tracking.parent_run_id`), never through
  MLFLOW_RUN_ID, which would make the first child overwrite the parent.
- `on_multirun_end` (local, after all jobs) logs a summary to the parent (jobs, finished, failed,
  the best run by accuracy), builds the Pareto report of the children (`pdr.report.build_report`)
  into `<sweep_dir>/report/` and logs it to the parent, then terminates the parent. If the sweep
  dies first (a failed job makes Hydra raise), an exit hook does the same and marks it FAILED.

The callback object is pickled into joblib/submitit workers, so it holds only plain data.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
# Fallback for a job that cannot see its sweep directory's parent file: the file's path, set by
# on_multirun_start in the launching process (inherited by local workers; SLURM exports it too).
PARENT_FILE_ENV = "PDR_MLFLOW_PARENT_FILE"


def tracking_uri_for(uri: str | None, launch_dir: Path) -> str:
    """The tracking URI a job launched from `launch_dir` uses (`tracking.uri` or the default)."""
    from pdr.tracking.mlflow_run import default_tracking_uri

    return uri or default_tracking_uri(launch_dir)


def _artifact_root(uri: str, launch_dir: Path) -> Path | None:
    # Same rule as pdr.runner: a SQLite store keeps its artifacts in <launch dir>/mlartifacts.
    return launch_dir / "mlartifacts" if uri.startswith("sqlite:") else None


def parent_run_for_job(sweep_dir: Path, tracking_uri: str, experiment: str) -> str | None:
    """The parent run id a multirun job should nest under, or None (no parent file: the callback
    is disabled, or tracking was off at sweep start).

    Reads `<sweep_dir>/mlflow_parent.json` (fallback: the file named by $PDR_MLFLOW_PARENT_FILE).
    A parent in another store is ignored (with a warning): its id means nothing there. A job
    logging to another experiment still gets the tag, but MLflow's UI nests only within one
    experiment, which is warned about.
    """
    candidates = [sweep_dir / PARENT_FILE]
    if os.environ.get(PARENT_FILE_ENV):
        candidates.append(Path(os.environ[PARENT_FILE_ENV]))
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("cannot read the sweep's parent run file %s: %s", path, exc)
            continue
        if data.get("tracking_uri") != tracking_uri:
            log.warning("sweep parent run %s is in store %s, this job logs to %s: not nesting it",
                        data.get("run_id"), data.get("tracking_uri"), tracking_uri)
            return None
        if data.get("experiment") != experiment:
            log.warning("sweep parent run is in experiment %r, this job logs to %r: MLflow's UI will not "
                        "nest it", data.get("experiment"), experiment)
        return str(data["run_id"])
    log.info("no %s in %s: this multirun job's MLflow run has no parent", PARENT_FILE, sweep_dir)
    return None


def _sweep_axes(config: DictConfig) -> dict[str, list[str]]:
    """The swept keys and their values: `hydra.sweeper.params` merged with the command line's
    sweep overrides (the command line wins), as Hydra's basic sweeper combines them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [f"{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
    args += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    axes: dict[str, list[str]] = {}
    for ov in OverridesParser.create().parse_overrides(args):
        key = ov.get_key_element()
        if ov.is_sweep_override() and ov.is_discrete_sweep():
            axes[key] = list(ov.sweep_string_iterator())
        else:
            axes.pop(key, None)
    return axes


class MlflowSweepCallback(Callback):
    """One MLflow parent run per multirun sweep (see the module docstring).

    `report`: build the Pareto report at the end of the sweep; `group_by`: its grouping column
    (see `pdr.report.build_report`).
    """

    def __init__(self, report: bool = True, group_by: str = "variant") -> None:
        self.report = report
        self.group_by = group_by
        # Plain data only: this object is pickled into launcher workers.
        self._parent: dict[str, Any] | None = None
        self._ended = False

    # -- multirun start ---------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = OmegaConf.select(config, "tracking")
        if tracking is None or not tracking.get("enabled", True):
            log.info("tracking is off: no MLflow parent run for this sweep")
            return
        from pdr.tracking.mlflow_run import ensure_experiment, git_commit
        from pdr.tracking.store import client, with_store_retry

        launch_dir = Path.cwd()
        uri = tracking_uri_for(tracking.get("uri"), launch_dir)
        experiment = str(tracking.get("experiment"))
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_absolute():
            sweep_dir = launch_dir / sweep_dir
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            sweep_id = str(sweep_dir.relative_to(launch_dir / "multirun"))
        except ValueError:
            sweep_id = sweep_dir.name

        c = client(uri)  # opening a SQLite store creates and migrates its tables, once, here
        exp_id = with_store_retry(ensure_experiment, c, experiment, _artifact_root(uri, launch_dir))
        overrides = list(OmegaConf.select(config, "hydra.overrides.task") or [])
        try:
            axes = _sweep_axes(config)
        except Exception as exc:  # noqa: BLE001 - a non-basic sweeper's params may not parse: informative only
            log.debug("could not parse the sweep's axes: %s", exc)
            axes = {}
        params_cfg = OmegaConf.select(config, "hydra.sweeper.params")
        tags = {
            "pdr.sweep_parent": "true",
            "pdr.sweep_id": sweep_id,
            "pdr.sweep_dir": str(sweep_dir),
            "git_commit": git_commit(),
            "overrides": " ".join(overrides)[:5000],
            "sweep_params": json.dumps(OmegaConf.to_container(params_cfg) if params_cfg else {})[:5000],
            "launcher": str(OmegaConf.select(config, "hydra.launcher._target_") or "")[:500],
            "sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_") or "")[:500],
        }
        name = tracking.get("run_name") or f"sweep {sweep_id}"
        tags["mlflow.runName"] = name
        run = with_store_retry(c.create_run, exp_id, tags=tags, run_name=name)
        run_id = run.info.run_id
        from mlflow.entities import Param

        # MLflow param names allow [\w\-. /] only (a swept `+experiment` has a "+").
        params = [Param(re.sub(r"[^\w\-. /]", "_", f"sweep.{k}")[:250], ",".join(v)[:500]) for k, v in axes.items()]
        n_jobs = 1
        for v in axes.values():
            n_jobs *= len(v)
        params.append(Param("sweep.jobs", str(n_jobs)))
        with_store_retry(c.log_batch, run_id, params=params[:100])

        cfg_path = sweep_dir / "sweep_config.yaml"
        cfg_path.write_text(OmegaConf.to_yaml(config, resolve=False), encoding="utf-8")
        with_store_retry(c.log_artifact, run_id, str(cfg_path))

        self._parent = {"run_id": run_id, "tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id,
                        "sweep_id": sweep_id, "sweep_dir": str(sweep_dir), "created": time.time()}
        parent_file = sweep_dir / PARENT_FILE
        tmp = parent_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._parent, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, parent_file)
        os.environ[PARENT_FILE_ENV] = str(parent_file)
        self._ended = False
        atexit.register(self._finish_at_exit)
        log.info("MLflow sweep parent run %s in experiment %r (%s)", run_id, experiment, uri)

    # -- multirun end -----------------------------------------------------------------------
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._parent is None or self._ended:
            return
        self._finish("FINISHED")

    def _finish_at_exit(self) -> None:
        if self._parent is not None and not self._ended:
            log.warning("the sweep ended early: closing its MLflow parent run as FAILED")
            try:
                self._finish("FAILED")
            except Exception as exc:  # noqa: BLE001 - at interpreter exit, report and go
                log.warning("could not close the sweep's parent run: %s", exc)

    def _finish(self, status: str) -> None:
        """Summary + report to the parent, then terminate it. Report failures never fail the sweep."""
        assert self._parent is not None
        self._ended = True
        from pdr.tracking.store import client, load_runs, log_artifacts, with_store_retry

        uri, run_id = self._parent["tracking_uri"], self._parent["run_id"]
        sweep_dir = Path(self._parent["sweep_dir"])
        c = client(uri)
        try:
            runs = load_runs(uri, parent_run_id=run_id)
            if runs.empty:
                log.warning("sweep parent run %s has no child runs (no job got to start one; or jobs with "
                            "resume=true continued their earlier MLflow runs)", run_id)
            summary = sweep_summary(runs)
            summary["sweep_id"] = self._parent["sweep_id"]
            summary_path = sweep_dir / "sweep_summary.json"
            summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
            metrics = {k: summary[k] for k in ("jobs", "jobs_finished", "jobs_failed") if k in summary}
            best = summary.get("best") or {}
            for key in ("accuracy", "seq_tokens", "total_tokens"):
                if best.get(key) is not None:
                    metrics[f"best_{key}"] = best[key]
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            with_store_retry(c.log_batch, run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])
            tags = {"simulated": "true" if summary.get("simulated") else "false"}
            if best:
                tags.update(best_run_id=str(best.get("run_id")), best_run_overrides=str(best.get("overrides", ""))[:5000])
            for k, v in tags.items():
                with_store_retry(c.set_tag, run_id, k, v)
            log_artifacts(uri, run_id, [summary_path])
            if self.report and not runs.empty:
                from pdr.report import build_report

                paths = build_report(runs, sweep_dir / "report", group_by=self.group_by,
                                     title=f"sweep {self._parent['sweep_id']} ({self._parent['experiment']})")
                log_artifacts(uri, run_id, list(paths.values()), artifact_path="report")
                log.info("sweep report: %s", paths.get("html"))
        except Exception as exc:  # noqa: BLE001 - the summary is a convenience; closing the parent is not
            log.warning("sweep summary/report failed (%s: %s); closing the parent run anyway",
                        type(exc).__name__, exc)
        with_store_retry(c.set_terminated, run_id, status=status)


def sweep_summary(runs: Any) -> dict[str, Any]:
    """Counts of a sweep's child runs (DataFrame from `pdr.tracking.store.load_runs`) and its best
    run: highest accuracy, ties broken by fewer sequential tokens."""
    out: dict[str, Any] = {"jobs": int(len(runs))}
    if runs.empty:
        return out
    out["jobs_finished"] = int((runs["status"] == "FINISHED").sum())
    out["jobs_failed"] = int(runs["status"].isin(["FAILED", "KILLED"]).sum())
    out["simulated"] = bool(runs["simulated"].any())
    done = runs[(runs["status"] == "FINISHED")]
    if "metrics.accuracy" in done and done["metrics.accuracy"].notna().any():
        done = done[done["metrics.accuracy"].notna()]
        seq = done["metrics.seq_tokens"] if "metrics.seq_tokens" in done else 0.0
        order = done.assign(_seq=seq).sort_values(["metrics.accuracy", "_seq"], ascending=[False, True])
        top = order.iloc[0]

        def get(col: str) -> Any:
            v = top.get(col)
            return None if v is None or v != v else v  # NaN -> None

        out["best"] = {
            "run_id": top["run_id"],
            "run_name": top["run_name"],
            "overrides": get("tags.overrides"),
            "accuracy": get("metrics.accuracy"),
            "accuracy_ci_low": get("metrics.accuracy_ci_low"),
            "accuracy_ci_high": get("metrics.accuracy_ci_high"),
            "seq_tokens": get("metrics.seq_tokens"),
            "total_tokens": get("metrics.total_tokens"),
        }
    return out
