"""MLflow store access by run id: the reads the review layer builds on, and the writes made outside
a job's own run (the sweep's parent run, a report logged to it).

Everything here goes through `MlflowClient` (never the fluent API, so MLFLOW_RUN_ID cannot
interfere). SQLite stores are shared by parallel jobs, so writes go through `with_store_retry`,
which retries "database is locked" errors with backoff. The DataFrame of runs that the report and
the notebooks read is built on top of this, in `pdr.review.store`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pdr.errors import PdrError

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
    """An `MlflowClient` on `tracking_uri` (never the fluent API, so MLFLOW_RUN_ID cannot interfere).
    A SQLite store is created (or migrated) first, under a lock shared with other processes
    (`prepare_store`)."""
    from mlflow.tracking import MlflowClient

    prepare_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


STORE_LOCK_TIMEOUT_S = 600.0  # a migration of a large store can take minutes
_prepared: set[str] = set()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a `sqlite:///PATH` tracking URI (None for any other store)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri[len("sqlite:///") :].split("?", 1)[0])


def prepare_store(tracking_uri: str) -> None:
    """Create or migrate a SQLite tracking store once per process, holding a file lock beside it
    (`mlflow.db.lock`) so that processes started together never migrate it at the same time.

    Why: MLflow creates a new SQLite store's tables and runs its alembic migrations when the first
    client opens it; two or three `pdr.run` started at once in a directory without `mlflow.db`
    crashed in every trial (`table latest_metrics already exists`, `duplicate column name: step`,
    alembic's `Online migration expected to match one row`), MLflow's own lock notwithstanding.

    A store whose creation failed half-way (a process killed mid-migration) is unusable for every
    later run. If it holds no run, it is moved aside (`mlflow.db.broken-<time>`, logged) and created
    anew; a store with runs that cannot be opened raises StoreError naming the file. Other stores
    (http, databricks ...) are left to MLflow."""
    path = sqlite_path(tracking_uri)
    if path is None or tracking_uri in _prepared:
        return
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=STORE_LOCK_TIMEOUT_S):
        try:
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - MLflow and SQLAlchemy raise many types here
            if is_locked_error(exc) or not path.exists():
                raise
            runs = _count_runs(path)
            if runs:
                raise StoreError(
                    f"MLflow store {path} cannot be opened ({type(exc).__name__}: {str(exc)[:300]}); it holds "
                    f"{runs} runs, so pdr leaves it alone: run `mlflow db upgrade sqlite:///{path}`, or move it "
                    "away to start a new store"
                ) from exc
            aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            for suffix in ("-wal", "-shm", "-journal"):
                Path(str(path) + suffix).unlink(missing_ok=True)
            _forget_engines(path)
            log.warning("MLflow store %s was left half-created (%s: %s); it held no run: moved it to %s "
                        "and creating it anew", path, type(exc).__name__, str(exc)[:200], aside)
            MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    _prepared.add(tracking_uri)


def _forget_engines(path: Path) -> None:
    """Drop MLflow's cached SQLAlchemy engines for `path` (they hold the moved-aside file open)."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        engines = getattr(SqlAlchemyStore, "_engine_map", {})
        for uri in [u for u in engines if str(path) in u]:
            engines.pop(uri).dispose()
    except Exception as exc:  # noqa: BLE001 - a private cache of one MLflow version: best effort
        log.debug("could not reset MLflow's engine cache: %s", exc)


class StoreError(PdrError):
    """A tracking store that cannot be opened; the message names the file and what to do."""


def _count_runs(path: Path) -> int:
    """Runs in a SQLite MLflow store (0 if it has no readable runs table)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


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


def get_run(tracking_uri: str, run_id: str) -> Any:
    """The MLflow `Run` with id `run_id`. Raises LookupError (naming the store) if there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking_uri).get_run(run_id)
    except MlflowException as exc:
        raise LookupError(f"no run {run_id!r} in {tracking_uri} ({exc.error_code})") from exc


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


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[Path], artifact_path: str | None = None) -> None:
    """Log files (or directories) to a run, retrying on SQLite contention."""
    c = client(tracking_uri)
    for p in paths:
        if p.is_dir():
            with_store_retry(c.log_artifacts, run_id, str(p), artifact_path=artifact_path)
        elif p.exists():
            with_store_retry(c.log_artifact, run_id, str(p), artifact_path=artifact_path)


def list_artifact_dirs(tracking_uri: str, run_id: str) -> list[str]:
    """Top-level artifact paths of a run (files and folders)."""
    return [a.path for a in client(tracking_uri).list_artifacts(run_id)]


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float]) -> None:
    """Log metrics (step 0, now) to a run in one batch, retrying on SQLite contention."""
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    with_store_retry(client(tracking_uri).log_batch, run_id,
                     metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])


def log_params(tracking_uri: str, run_id: str, params: dict[str, str]) -> None:
    """Log params to a run (at most 100: one REST batch), retrying on SQLite contention."""
    from mlflow.entities import Param

    from pdr.config.secrets import mask_secrets

    items = [Param(k, mask_secrets(str(v))) for k, v in params.items()][:100]
    with_store_retry(client(tracking_uri).log_batch, run_id, params=items)


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a run, retrying on SQLite contention."""
    from pdr.config.secrets import mask_secrets

    c = client(tracking_uri)
    for k, v in tags.items():
        with_store_retry(c.set_tag, run_id, k, mask_secrets(str(v)))


def set_terminated(tracking_uri: str, run_id: str, status: str) -> None:
    """End a run with `status` (FINISHED, FAILED, KILLED), retrying on SQLite contention."""
    with_store_retry(client(tracking_uri).set_terminated, run_id, status=status)
