"""Reading runs back from an MLflow store, for the report, the sweep callback and the notebooks.

`load_runs()` returns one row per MLflow run, in the column convention of `mlflow.search_runs`:
`run_id`, `run_name`, `status`, `experiment_id`, `start_time`, `parent_run_id`, then
`params.<key>` (strings, as logged), `metrics.<name>` (floats) and `tags.<name>` (strings), plus a
few derived columns the analysis code relies on (contract):

- `simulated` (bool): the run's engine was the simulated one (tag `simulated=true`);
- `strategy`, `dataset`, `model`: from the tags (empty string when missing);
- `variant`: the strategy name, with `+ea` for SR with error analysis (`sr+ea`), the default
  grouping of the Pareto report;
- `is_sweep_parent` (bool): a sweep's parent run (tag `pdr.sweep_parent=true`).

Only this package imports mlflow. SQLite stores are shared by parallel jobs, so writes made here
go through `with_store_retry`, which retries "database is locked" errors with backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

T = TypeVar("T")

SWEEP_PARENT_TAG = "pdr.sweep_parent"
PARENT_TAG = "mlflow.parentRunId"
_LOCKED = ("database is locked", "database table is locked", "sqlite_busy")


def default_store_uri(directory: Path | None = None) -> str:
    """The default tracking store of runs launched from `directory` (default: the cwd):
    `sqlite:///<directory>/mlflow.db`, as `pdr.run` uses it."""
    from pdr.tracking.mlflow_run import default_tracking_uri

    return default_tracking_uri(directory or Path.cwd())


def is_locked_error(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it wraps) is SQLite's transient write-lock contention."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if any(s in str(cur).lower() for s in _LOCKED):
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def with_store_retry(fn: Callable[..., T], *args: Any, attempts: int = 8, base_delay_s: float = 0.2,
                     **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, retried with exponential backoff and jitter while it fails with
    SQLite's "database is locked" (several parallel jobs writing one SQLite store). Any other
    error, or the last locked error after `attempts` tries, is raised unchanged."""
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - filtered just below; everything else re-raised
            if attempt == attempts or not is_locked_error(exc):
                raise
            delay = base_delay_s * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("tracking store busy (%s); retry %d/%d in %.1fs", exc.__class__.__name__, attempt,
                        attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def client(tracking_uri: str) -> Any:
    """An `MlflowClient` on `tracking_uri` (never the fluent API, so MLFLOW_RUN_ID cannot interfere)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(tracking_uri: str, name: str) -> str | None:
    """The id of the experiment called `name`, or None if the store has none."""
    exp = client(tracking_uri).get_experiment_by_name(name)
    return None if exp is None else exp.experiment_id


def list_experiments(tracking_uri: str) -> list[str]:
    """Names of the store's active experiments (for error messages and the notebooks)."""
    return sorted(e.name for e in client(tracking_uri).search_experiments())


def search(tracking_uri: str, experiment_ids: Iterable[str], filter_string: str = "") -> list[Any]:
    """All matching runs (MLflow `Run` objects), paging through the store."""
    c = client(tracking_uri)
    out: list[Any] = []
    token = None
    while True:
        page = c.search_runs(list(experiment_ids), filter_string=filter_string, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


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
        from mlflow.exceptions import MlflowException

        try:
            parent = client(uri).get_run(parent_run_id)
        except MlflowException as exc:
            raise LookupError(f"no run {parent_run_id!r} in {uri} ({exc.error_code})") from exc
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


def run_dir(tracking_uri: str, run_id: str) -> Path | None:
    """The run's output directory (tag `run_dir`) if it still exists on this machine."""
    tags = client(tracking_uri).get_run(run_id).data.tags
    path = tags.get("run_dir")
    return Path(path) if path and Path(path).is_dir() else None


def read_run_file(tracking_uri: str, run_id: str, name: str, dest: Path | None = None) -> Path:
    """A file of a run: from its output directory if present, else downloaded from its MLflow
    artifacts (into `dest`, default a temporary directory). Raises FileNotFoundError."""
    local = run_dir(tracking_uri, run_id)
    if local is not None and (local / name).exists():
        return local / name
    import tempfile

    target = dest or Path(tempfile.mkdtemp(prefix="pdr-artifacts-"))
    try:
        got = client(tracking_uri).download_artifacts(run_id, name, str(target))
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        raise FileNotFoundError(f"run {run_id}: no {name} in its run dir or artifacts ({exc})") from exc
    return Path(got)


def load_results(tracking_uri: str, run_id: str) -> list[dict[str, Any]]:
    """The run's results.jsonl rows (one per problem-sample; the last write of a pair wins)."""
    from pdr.results import final_rows, read_jsonl

    return final_rows(list(read_jsonl(read_run_file(tracking_uri, run_id, "results.jsonl"))))


def load_traces(tracking_uri: str, run_id: str) -> list[dict[str, Any]]:
    """The run's traces.jsonl rows."""
    from pdr.results import read_jsonl

    return list(read_jsonl(read_run_file(tracking_uri, run_id, "traces.jsonl")))


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[Path], artifact_path: str | None = None) -> None:
    """Log files (or directories) to a run, retrying on SQLite contention."""
    c = client(tracking_uri)
    for p in paths:
        if p.is_dir():
            with_store_retry(c.log_artifacts, run_id, str(p), artifact_path=artifact_path)
        elif p.exists():
            with_store_retry(c.log_artifact, run_id, str(p), artifact_path=artifact_path)
