"""Runs read back from an MLflow store as a DataFrame, for the report, the sweep callback and the notebooks.

`load_runs()` returns one row per MLflow run, in the column convention of `mlflow.search_runs`:
`run_id`, `run_name`, `status`, `experiment_id`, `start_time`, `parent_run_id`, then
`params.<key>` (strings, as logged), `metrics.<name>` (floats) and `tags.<name>` (strings), plus a
few derived columns the analysis code relies on (contract):

- `simulated` (bool): the run's engine was the simulated one (tag `simulated=true`);
- `strategy`, `dataset`, `model`: from the tags (empty string when missing);
- `variant`: the strategy name, with `+ea` for SR with error analysis (`sr+ea`), the default
  grouping of the Pareto report;
- `is_sweep_parent` (bool): a sweep's parent run (tag `pdr.sweep_parent=true`).

The store itself (client, search, artifacts, retries on SQLite contention) is `pdr.tracking.store`,
the only place besides `pdr.tracking.mlflow_run` that imports mlflow; this module adds the
DataFrame view and the run files (results.jsonl, traces.jsonl) in pdr's row format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pdr.results import final_rows, read_jsonl
from pdr.tracking.store import (
    PARENT_TAG,
    SWEEP_PARENT_TAG,
    client,
    default_store_uri,
    experiment_id,
    get_run,
    list_experiments,
    read_run_file,
    search,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def runs_to_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """MLflow `Run` objects -> the DataFrame described in the module docstring."""
    import pandas as pd

    records = []
    for r in runs:
        rec: dict[str, Any] = {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "experiment_id": r.info.experiment_id,
            "start_time": pd.to_datetime(r.info.start_time, unit="ms") if r.info.start_time else pd.NaT,
            "parent_run_id": r.data.tags.get(PARENT_TAG),
        }
        rec.update({f"params.{k}": v for k, v in r.data.params.items()})
        rec.update({f"metrics.{k}": float(v) for k, v in r.data.metrics.items()})
        rec.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "run_name", "status", "experiment_id", "start_time", "parent_run_id"])
    return derive_columns(df)


def derive_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns of the module docstring (simulated, is_sweep_parent, strategy,
    dataset, model, variant) to a frame with `tags.*` / `params.*` columns; returns a copy."""
    def tag(name: str) -> Any:
        col = f"tags.{name}"
        return df[col].fillna("").astype(str) if col in df else ""

    df = df.copy()
    df["simulated"] = (tag("simulated") == "true") if "tags.simulated" in df else False
    df["oracle"] = (tag("oracle") == "true") if "tags.oracle" in df else False
    df["is_sweep_parent"] = (tag(SWEEP_PARENT_TAG) == "true") if f"tags.{SWEEP_PARENT_TAG}" in df else False
    for name in ("strategy", "dataset", "model"):
        df[name] = tag(name)
    ea = df["params.strategy.error_analysis"].fillna("") if "params.strategy.error_analysis" in df else ""
    df["variant"] = df["strategy"]
    if "params.strategy.error_analysis" in df:
        df.loc[(df["strategy"] == "sr") & (ea == "True"), "variant"] = "sr+ea"
    return df


def load_runs(tracking_uri: str | None = None, experiment: str | None = None, parent_run_id: str | None = None,
              include_parents: bool = False) -> pd.DataFrame:
    """The runs of an experiment (by name) or the children of a sweep's parent run, as a DataFrame
    (columns in the module docstring), oldest first.

    Give `experiment` or `parent_run_id` (the parent wins if both). With `parent_run_id`: its
    children, looked up in the parent's experiment, else in every experiment (a sweep over
    `tracking.experiment`); the parent itself too if `include_parents`. With `experiment`: its runs,
    sweep parent runs left out unless `include_parents`. Raises LookupError for an unknown
    experiment or parent run, ValueError when neither is given.
    """
    uri = tracking_uri or default_store_uri()
    if parent_run_id:
        parent = get_run(uri, parent_run_id)
        filt = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
        runs = search(uri, [parent.info.experiment_id], filt)
        if not runs:  # a sweep over tracking.experiment (or +experiment=a,b): children live elsewhere
            runs = search(uri, [e.experiment_id for e in client(uri).search_experiments()], filt)
        if include_parents:
            runs = [parent, *runs]
    elif experiment:
        exp_id = experiment_id(uri, experiment)
        if exp_id is None:
            known = ", ".join(list_experiments(uri)) or "none"
            raise LookupError(f"no MLflow experiment named {experiment!r} in {uri} (experiments: {known})")
        runs = search(uri, [exp_id])
    else:
        raise ValueError("load_runs: give an experiment name or a parent run id")
    df = runs_to_frame(runs)
    if not include_parents and not df.empty:
        df = df[~df["is_sweep_parent"]]
    if not df.empty:
        df = df.sort_values("start_time", kind="stable").reset_index(drop=True)
    return df


def load_results(tracking_uri: str, run_id: str) -> list[dict[str, Any]]:
    """The run's results.jsonl rows (one per problem-sample; the last write of a pair wins)."""
    return final_rows(list(read_jsonl(read_run_file(tracking_uri, run_id, "results.jsonl"))))


def load_traces(tracking_uri: str, run_id: str) -> list[dict[str, Any]]:
    """The run's traces.jsonl rows: from its run directory, else its MLflow artifacts (a remote
    store holds them once, gzip-compressed, as traces.jsonl.gz; older runs as traces.jsonl)."""

    try:
        return list(read_jsonl(read_run_file(tracking_uri, run_id, "traces.jsonl")))
    except FileNotFoundError:
        return list(read_jsonl(read_run_file(tracking_uri, run_id, "traces.jsonl.gz")))


def run_tags(tracking_uri: str, run_id: str) -> dict[str, str]:
    """The run's tags (engine, model, dataset, strategy, simulated, run_dir, ...). Raises LookupError."""
    return dict(get_run(tracking_uri, run_id).data.tags)
