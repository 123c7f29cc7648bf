"""Hydra callback: one MLflow parent run per multirun sweep, one child run per job, and the sweep's report.

Enabled in conf/hydra/default.yaml (`hydra.callbacks.mlflow_sweep`). In RUN mode it does nothing.
In MULTIRUN mode (`python -m pdr.run -m ...`):

- `on_multirun_start` (local, before the launcher starts any job): starts the sweep's parent run
  and writes `<sweep_dir>/mlflow_parent.json`, through which each job nests its own run under it
  (`pdr.tracking.sweep`: the parent-run lifecycle, what the jobs read, and why not MLFLOW_RUN_ID).
- `on_multirun_end` (local, after all jobs) logs a summary to the parent (jobs, finished, failed,
  the best run by accuracy), builds the Pareto report of the children (`pdr.review.report.build_report`)
  into `<sweep_dir>/report/` and logs it to the parent, then terminates the parent. If the sweep
  dies first (a failed job makes Hydra raise), an exit hook does the same and marks it FAILED.

It lives in the review layer, not in tracking, because it reads the runs back and builds the
report; tracking never imports review. The callback object is pickled into joblib/submitit
workers, so it holds only plain data.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class MlflowSweepCallback(Callback):
    """One MLflow parent run per multirun sweep (see the module docstring).

    `report`: build the Pareto report at the end of the sweep; `group_by`: its grouping column
    (see `pdr.review.report.build_report`).
    """

    def __init__(self, report: bool = True, group_by: str = "auto") -> None:
        self.report = report
        self.group_by = group_by
        # Plain data only: this object is pickled into launcher workers.
        self._parent: dict[str, Any] | None = None
        self._ended = False

    # -- multirun start ---------------------------------------------------------------------
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pdr.tracking.sweep import LAUNCHER_PID_ENV, inert_sim_axes, start_parent_run

        for key in inert_sim_axes(config):  # once per sweep, before any job runs
            log.warning(
                "sweep axis %s cannot change a simulated result (engine=sim ignores it): its jobs will give "
                "identical numbers; sweep it on a real engine, or drop it", key
            )

        # Local parallel workers (joblib/loky) inherit it and stop when this process is gone.
        os.environ[LAUNCHER_PID_ENV] = f"{socket.gethostname()}:{os.getpid()}"
        self._parent = start_parent_run(config)
        if self._parent is not None:
            self._ended = False
            atexit.register(self._finish_at_exit)

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
        from pdr.review.store import load_runs
        from pdr.tracking import store

        uri, run_id = self._parent["tracking_uri"], self._parent["run_id"]
        sweep_dir = Path(self._parent["sweep_dir"])
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
            store.log_metrics(uri, run_id, metrics)
            tags = {"simulated": "true" if summary.get("simulated") else "false"}
            if best:
                tags.update(best_run_id=str(best.get("run_id")), best_run_overrides=str(best.get("overrides", ""))[:5000])
            store.set_tags(uri, run_id, tags)
            store.log_artifacts(uri, run_id, [summary_path])
            if self.report and not runs.empty:
                from pdr.review.report import build_report  # matplotlib: only when a report is wanted

                paths = build_report(runs, sweep_dir / "report", group_by=self.group_by,
                                     title=f"sweep {self._parent['sweep_id']} ({self._parent['experiment']})")
                store.log_artifacts(uri, run_id, list(paths.values()), artifact_path="report")
                log.info("sweep report: %s", paths.get("html"))
        except Exception as exc:  # noqa: BLE001 - the summary is a convenience; closing the parent is not
            log.warning("sweep summary/report failed (%s: %s); closing the parent run anyway",
                        type(exc).__name__, exc)
        store.set_terminated(uri, run_id, status)


def sweep_summary(runs: Any) -> dict[str, Any]:
    """Counts of a sweep's child runs (DataFrame from `pdr.review.store.load_runs`) and its best
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
