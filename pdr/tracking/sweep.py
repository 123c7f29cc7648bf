"""A multirun sweep's MLflow parent run: created before the first job, found by every job, closed at the end.

The Hydra callback that drives this is `pdr.review.sweep.MlflowSweepCallback` (enabled in
conf/hydra/default.yaml); it lives in the review layer because it also builds the sweep's report.

- `start_parent_run` (in the launching process, before the launcher starts any job): creates the
  store's tables and the experiment once (parallel jobs racing to migrate a fresh SQLite file or to
  create the experiment is a known failure), starts the parent run (tags: sweep id and directory,
  git SHA, the sweep's overrides and sweeper params, launcher; params: the swept axes; artifact:
  the multirun config), and writes `<sweep_dir>/mlflow_parent.json`.
- Each job (in `pdr/run.py`, via `parent_run_for_job`) reads that file from its own sweep
  directory, which works for every launcher whose jobs see the sweep directory: the basic one,
  joblib/loky worker processes, submitit on SLURM with a shared filesystem. The child run is tied
  to the parent by the `mlflow.parentRunId` tag (`tracking.parent_run_id`), never through
  MLFLOW_RUN_ID, which would make the first child overwrite the parent.
- At the end the callback logs the summary and report to the parent and ends it
  (`pdr.tracking.store.set_terminated`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pdr.config.secrets import mask_data, mask_secrets

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
# Fallback for a job that cannot see its sweep directory's parent file: the file's path, set by
# start_parent_run in the launching process (inherited by local workers; SLURM exports it too).
PARENT_FILE_ENV = "PDR_MLFLOW_PARENT_FILE"
# The launching process's pid, for the jobs of a local parallel launcher (joblib/loky workers are
# its children): a worker whose launcher is gone stops (pdr/run.py), rather than run on orphaned.
LAUNCHER_PID_ENV = "PDR_SWEEP_LAUNCHER_PID"


def sweep_key(config: DictConfig) -> str:
    """What identifies a sweep across attempts: the experiment, the sweep's command-line overrides
    (without `resume=...`) and the sweeper's params. `resume=true` on a sweep continues the newest
    earlier sweep with the same key under its parent run."""
    import hashlib

    overrides = sorted(
        o for o in (OmegaConf.select(config, "hydra.overrides.task") or []) if not str(o).lstrip("+~").startswith("resume=")
    )
    params = OmegaConf.select(config, "hydra.sweeper.params")
    data = {
        "experiment": str(OmegaConf.select(config, "tracking.experiment")),
        "overrides": [str(o) for o in overrides],
        "params": OmegaConf.to_container(params) if params else {},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_earlier_sweep(launch_dir: Path, key: str, tracking_uri: str, exclude: Path) -> dict[str, Any] | None:
    """The parent file (as data) of the newest earlier sweep under `<launch_dir>/multirun` with
    sweep key `key` in the same store, or None."""
    from pdr.config.secrets import mask_secrets

    best: dict[str, Any] | None = None
    root = launch_dir / "multirun"
    if not root.is_dir():
        return None
    for path in root.glob(f"**/{PARENT_FILE}"):
        if path.parent.resolve() == exclude.resolve():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if data.get("sweep_key") != key or data.get("tracking_uri") != mask_secrets(tracking_uri):
            continue
        if best is None or float(data.get("created", 0)) > float(best.get("created", 0)):
            best = data
    return best


_JOB_DONE = threading.Event()  # set when this process's job has ended (for die_with_launcher)


def die_with_launcher(poll_s: float = 1.0) -> None:
    """In a sweep job running in a local worker process (joblib/loky), stop this job when the
    launcher that started it is gone (killed: its workers would otherwise run on, orphaned, for
    minutes). A daemon thread polls the launcher's pid (exported by the sweep callback as
    `host:pid`); when it is gone, the job gets SIGTERM, which the runner turns into a clean stop
    (MLflow run KILLED, rows kept, resumable), and the worker process exits once the job has ended.
    Nothing for the basic launcher (the job runs in the launcher) nor for jobs on another host
    (SLURM: the launcher may legitimately exit)."""
    import signal
    import socket

    _JOB_DONE.clear()
    host, _, pid = os.environ.get(LAUNCHER_PID_ENV, "").rpartition(":")
    log.debug("sweep job pid %d, parent %d, launcher %s:%s", os.getpid(), os.getppid(), host, pid)
    if not pid.isdigit() or host != socket.gethostname() or int(pid) == os.getpid():
        return
    launcher = int(pid)

    def watch() -> None:
        while _alive(launcher):
            time.sleep(poll_s)
        log.warning("the sweep's launcher (pid %s) is gone: stopping this job (resume the sweep with resume=true)",
                    launcher)
        os.kill(os.getpid(), signal.SIGTERM)
        # The worker itself must go too: a loky worker whose job ended would idle on for minutes.
        _JOB_DONE.wait(60)
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=watch, name="pdr-launcher-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie awaiting its parent counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def job_ended() -> None:
    """The job of this process has ended (`pdr.run` calls it in every case)."""
    _JOB_DONE.set()


def tracking_uri_for(uri: str | None, launch_dir: Path) -> str:
    """The tracking URI a job launched from `launch_dir` uses (`tracking.uri` or the default)."""
    from pdr.tracking.mlflow_run import default_tracking_uri

    return uri or default_tracking_uri(launch_dir)


def _artifact_root(uri: str, launch_dir: Path) -> Path | None:
    # Same rule as pdr.runner: a SQLite store keeps its artifacts in <launch dir>/mlartifacts.
    return launch_dir / "mlartifacts" if uri.startswith("sqlite:") else None


def parent_run_for_job(sweep_dir: Path, tracking_uri: str, experiment: str) -> str | None:
    """The parent run id a multirun job should nest under, or None (no parent file: the sweep callback
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
        if data.get("tracking_uri") != mask_secrets(tracking_uri):  # the file holds it masked
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
    from pdr.config.overrides import override_axes

    args = [f"{k}={v}" for k, v in (OmegaConf.select(config, "hydra.sweeper.params") or {}).items()]
    args += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    return {a.key: list(a.values) for a in override_axes(args).values() if a.swept and a.values is not None}


# Sweep axes that cannot change a simulated result: the sim draws from per-call seeds and ignores
# the sampling knobs, and client limits, caching and grading workers change no engine's outputs.
SIM_INERT_KEYS = frozenset({
    "sampling.temperature", "sampling.top_p", "sampling.top_k",
    "engine.max_concurrency", "engine.timeout_s", "engine.max_retries",
    "cache.mode", "grading.workers", "progress",
})  # fmt: skip


def inert_sim_axes(config: DictConfig) -> list[str]:
    """The swept keys of a multirun `config` that cannot change its results on engine=sim (every
    job of such an axis computes the same numbers): [] unless the sweep runs the simulated engine."""
    if OmegaConf.select(config, "engine.name") != "sim":
        return []
    return sorted(k for k in _sweep_axes(config) if k.lstrip("+~") in SIM_INERT_KEYS)


def start_parent_run(config: DictConfig) -> dict[str, Any] | None:
    """Create the sweep's parent run from the multirun `config` (Hydra's, with `hydra.*`) and write
    `<sweep_dir>/mlflow_parent.json` (module docstring); also export its path as
    $PDR_MLFLOW_PARENT_FILE. Returns the parent's plain description (run_id, tracking_uri,
    experiment, experiment_id, sweep_id, sweep_dir, created), or None when tracking is off."""
    tracking = OmegaConf.select(config, "tracking")
    if tracking is None or not tracking.get("enabled", True):
        log.info("tracking is off: no MLflow parent run for this sweep")
        return None
    from pdr.tracking.mlflow_run import ensure_experiment, git_commit
    from pdr.tracking.store import client, log_params, with_store_retry

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
    key = sweep_key(config)
    if OmegaConf.select(config, "resume"):
        earlier = find_earlier_sweep(launch_dir, key, uri, sweep_dir)
        if earlier is not None:
            return _continue_parent_run(c, earlier, uri, experiment, exp_id, key, sweep_dir, sweep_id)
        log.info("resume=true: no earlier sweep with these overrides under %s; starting a new one", launch_dir / "multirun")
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
        # The preset's params and the command line's sweeps, as the jobs ran them (the axes).
        "sweep_params": json.dumps({**(OmegaConf.to_container(params_cfg) if params_cfg else {}),
                                    **{k: ",".join(v) for k, v in axes.items()}})[:5000],
        "launcher": str(OmegaConf.select(config, "hydra.launcher._target_") or "")[:500],
        "sweeper": str(OmegaConf.select(config, "hydra.sweeper._target_") or "")[:500],
    }
    name = tracking.get("run_name") or f"sweep {sweep_id}"
    tags["mlflow.runName"] = name
    tags = mask_data(tags)
    run = with_store_retry(c.create_run, exp_id, tags=tags, run_name=name)
    run_id = run.info.run_id
    # MLflow param names allow [\w\-. /] only (a swept `+experiment` has a "+").
    params = {re.sub(r"[^\w\-. /]", "_", f"sweep.{k}")[:250]: ",".join(v)[:500] for k, v in axes.items()}
    n_jobs = 1
    for v in axes.values():
        n_jobs *= len(v)
    params["sweep.jobs"] = str(n_jobs)
    log_params(uri, run_id, params)

    cfg_path = sweep_dir / "sweep_config.yaml"
    cfg_path.write_text(mask_secrets(OmegaConf.to_yaml(config, resolve=False)), encoding="utf-8")
    with_store_retry(c.log_artifact, run_id, str(cfg_path))

    parent = {"run_id": run_id, "tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id,
              "sweep_id": sweep_id, "sweep_dir": str(sweep_dir), "created": time.time(), "sweep_key": key}
    _write_parent_file(sweep_dir, parent)
    log.info("MLflow sweep parent run %s in experiment %r (%s)", run_id, experiment, uri)
    return parent


def _continue_parent_run(c: Any, earlier: dict[str, Any], uri: str, experiment: str, exp_id: str, key: str,
                         sweep_dir: Path, sweep_id: str) -> dict[str, Any]:
    """`resume=true` on a sweep: the earlier sweep's parent run goes on (status RUNNING again, tag
    `pdr.sweep_attempts`), and this sweep's parent file names it, so that every job, resumed or
    new, nests under the one parent and the report covers them all."""
    from pdr.tracking.store import with_store_retry

    run_id = str(earlier["run_id"])
    prior = c.get_run(run_id)
    attempts = int(prior.data.tags.get("pdr.sweep_attempts", "1")) + 1
    with_store_retry(c.update_run, run_id, status="RUNNING")
    with_store_retry(c.set_tag, run_id, "pdr.sweep_attempts", str(attempts))
    with_store_retry(c.set_tag, run_id, f"pdr.sweep_dir.{attempts}", str(sweep_dir))
    parent = {"run_id": run_id, "tracking_uri": uri, "experiment": experiment, "experiment_id": exp_id,
              "sweep_id": sweep_id, "sweep_dir": str(sweep_dir), "created": time.time(), "sweep_key": key,
              "resumed_from": earlier.get("sweep_dir"), "attempt": attempts}
    _write_parent_file(sweep_dir, parent)
    log.info("resume=true: continuing the sweep of %s under its MLflow parent run %s (attempt %d)",
             earlier.get("sweep_dir"), run_id, attempts)
    return parent


def _write_parent_file(sweep_dir: Path, parent: dict[str, Any]) -> None:
    parent_file = sweep_dir / PARENT_FILE
    tmp = parent_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(mask_data(parent), indent=2) + "\n", encoding="utf-8")  # the caller keeps the real URI
    os.replace(tmp, parent_file)
    os.environ[PARENT_FILE_ENV] = str(parent_file)
