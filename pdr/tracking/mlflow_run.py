"""The MLflow run of one `pdr.run` job: start (or continue) it, log to it, end it.

mlflow is imported only inside pdr.tracking (here, in callbacks.py for sweeps and in store.py for
reading runs back), and lazily, when a run is really logged: `import mlflow` costs ~1.5 s, which
`python -m pdr.run ... --cfg job` and runs with `tracking.enabled=false` must not pay.

One MLflow run per job: params = the flattened resolved config (scalars, dotted keys;
secrets and long prompt texts left out: the whole config is an artifact), tags = engine, model,
dataset, strategy, git commit, run key, `simulated=true` for engine=sim; metrics = summary.json's.
A multirun job's run is a child of the sweep's parent run via `parent_run_id` (never through
MLFLOW_RUN_ID, which would make the first child overwrite the parent).
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdr.config.secrets import is_secret_key, mask_secrets

if TYPE_CHECKING:
    from pdr.config.schema import Config

log = logging.getLogger(__name__)

PARAM_MAX_CHARS = 500  # older servers cap param values at 500 characters


def default_tracking_uri(launch_dir: Path) -> str:
    return f"sqlite:///{(launch_dir / 'mlflow.db').resolve()}"


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def loggable_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Flattened scalar params: no secrets, no prompt templates or step graphs (too long: they are
    in the config.yaml artifact), values cut to PARAM_MAX_CHARS."""
    params: dict[str, str] = {}
    for key, value in flatten(config).items():
        if key.startswith(("prompts.", "hydra.")) or key == "strategy.steps":
            continue
        if is_secret_key(key):  # never logged, even if a run let one through
            continue
        text = "null" if value is None else str(value)
        params[key] = text if len(text) <= PARAM_MAX_CHARS else text[: PARAM_MAX_CHARS - 3] + "..."
    return params


def git_commit(path: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MlflowRun:
    """A started MLflow run; use as a context manager or call `end()`."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None,
        params: Mapping[str, str],
        tags: Mapping[str, str],
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        artifact_root: Path | None = None,
    ):
        import mlflow
        from mlflow.tracking import MlflowClient

        from pdr.tracking.store import prepare_store

        self._mlflow = mlflow
        self.uri = uri
        prepare_store(uri)  # a new SQLite store is created under a lock (jobs started together)
        self.client = MlflowClient(tracking_uri=uri)
        mlflow.set_tracking_uri(uri)
        self.experiment_id = ensure_experiment(self.client, experiment, artifact_root)
        self.experiment_name = experiment
        if resume_run_id:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
        else:
            all_tags = dict(tags)
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            if run_name:
                run_name = unique_run_name(self.client, self.experiment_id, run_name)
                all_tags["mlflow.runName"] = run_name
            all_tags = {k: mask_secrets(str(v)) for k, v in all_tags.items()}
            run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
            self.run_id = run.info.run_id
            self.log_params(params)

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, mask_secrets(str(v))) for k, v in params.items()]
        for i in range(0, len(items), 100):  # the REST API takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, mask_secrets(str(v)))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(k, float(v), ts, step or 0)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for p in paths:
            if p.is_dir():
                self.client.log_artifacts(self.run_id, str(p), artifact_path=artifact_path)
            elif p.exists():
                self.client.log_artifact(self.run_id, str(p), artifact_path=artifact_path)

    def log_run_files(self, run_dir: Path, names: Iterable[str], traces_name: str = "traces.jsonl") -> None:
        """The run directory's files as artifacts, with the traces stored once: when the artifact
        store is this machine's filesystem (the default SQLite setup) traces.jsonl stays in the run
        directory only (tag `pdr.traces_file` says where); a remote artifact store gets one
        gzip-compressed copy, `traces.jsonl.gz` (about 5x smaller), since the run directory may not
        be reachable from where the runs are reviewed."""
        names = list(names)
        traces = run_dir / traces_name
        self.log_artifacts([run_dir / n for n in names if n != traces_name])
        if traces_name not in names or not traces.exists():
            return
        root = self.client.get_run(self.run_id).info.artifact_uri or ""
        if root.startswith(("file:", "/")) or "://" not in root:
            self.set_tags({"pdr.traces_file": str(traces.resolve())})
            return
        import gzip
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pdr-traces-") as tmp:
            gz = Path(tmp) / (traces_name + ".gz")
            with traces.open("rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            self.client.log_artifact(self.run_id, str(gz))
        self.set_tags({"pdr.traces_file": f"artifact:{traces_name}.gz"})

    def log_traces(self, run_dir: Path, mode: str) -> int:
        """The run's problem-samples as MLflow traces (`pdr.tracking.traces`); returns how many."""
        from pdr.tracking.traces import log_run_traces

        return log_run_traces(run_dir, self.run_id, self.experiment_id, mode)

    def log_dataset(self, name: str, source: str, fingerprint: str, problems: int, context: str = "eval",
                    tags: Mapping[str, str] | None = None) -> None:
        """The data set as the run's MLflow input (the UI's Datasets column and filters): name,
        source (a path or hub URL), digest = the fingerprint's first 36 characters (MLflow's
        column width; the whole fingerprint is the input tag `pdr.fingerprint`). `context` is the
        input's role (`mlflow.data.context`: eval for a benchmark run, source for an export's
        source runs); `tags`, further input tags."""
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        digest = fingerprint.split(":", 1)[-1][:36]
        ds = MetaDataset(source=HTTPDatasetSource(source), name=name, digest=digest)
        input_tags = [InputTag("mlflow.data.context", context), InputTag("pdr.fingerprint", fingerprint[:500]),
                      InputTag("pdr.problems", str(problems))]
        input_tags += [InputTag(k, mask_secrets(str(v))[:500]) for k, v in (tags or {}).items()]
        self.client.log_inputs(self.run_id, [DatasetInput(ds._to_mlflow_entity(), tags=input_tags)])

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def start_tracking(
    cfg: Config,
    config: Mapping[str, Any],
    *,
    run_key: str,
    graph: str,
    simulated: bool,
    run_dir: Path,
    launch_dir: Path,
    extra_tags: Mapping[str, str] | None,
    resume_from: Mapping[str, Any],
    attempt: int,
) -> MlflowRun | None:
    """The MLflow run of this job, or None (`tracking.enabled=false`).

    `config` is the resolved config as plain data (logged as params), `graph` the strategy graph's
    description, `resume_from` the run.json of the earlier attempt ({} for a new run): with
    `resume=true` its MLflow run is continued if it is in the same store; else a new run is created.
    """
    if not cfg.tracking.enabled:
        return None
    tracking_uri = cfg.tracking.uri or default_tracking_uri(launch_dir)
    tags = {
        "engine": cfg.engine.name,
        "model": cfg.engine.model,
        "dataset": cfg.dataset.name,
        "strategy": cfg.strategy.name,
        "graph": graph[:5000],
        "git_commit": git_commit(),
        "run_key": run_key,
        "simulated": "true" if simulated else "false",
        "run_dir": str(run_dir.resolve()),
    }
    if cfg.notes:
        tags["notes"] = cfg.notes
    tags.update(extra_tags or {})
    artifact_root = launch_dir / "mlartifacts" if tracking_uri.startswith("sqlite:") else None
    resume_id = (
        resume_from.get("mlflow_run_id")
        if cfg.resume and resume_from.get("tracking_uri") == mask_secrets(tracking_uri)  # run.json masks it
        else None
    )

    def make(resume_run_id: str | None) -> MlflowRun:
        return MlflowRun(
            tracking_uri,
            cfg.tracking.experiment,
            cfg.tracking.run_name or describe_run(cfg),
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


def safe_dir_name(name: str) -> str:
    """`name` as one directory name that cannot leave its parent: every character outside
    [A-Za-z0-9._-] becomes "_" (path separators included), leading dots too (no `..`, no hidden
    directory). An experiment called `../../x` or `/abs/x` keeps its artifacts under the artifact
    root (issue 12); the experiment's name in MLflow stays as given. Empty -> "_"."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    cleaned = re.sub(r"^\.+", lambda m: "_" * len(m.group()), cleaned)
    return cleaned[:200] or "_"


def ensure_experiment(client: Any, name: str, artifact_root: Path | None = None) -> str:
    """The experiment's id, creating it once. Safe against a concurrent creator (another job)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root is not None:
        location = (artifact_root / safe_dir_name(name)).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception as exc:  # noqa: BLE001 - a concurrent job may have created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        log.debug("experiment %s created concurrently (%s)", name, exc)
        return exp.experiment_id


def ui_command(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        try:
            rel = os.path.relpath(path)
            if not rel.startswith(".."):
                return f"mlflow ui --backend-store-uri sqlite:///{rel}"
        except ValueError:
            pass
        return f"mlflow ui --backend-store-uri {uri}"
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


# Short names of the distill types in run names (`pdr-16x8x4-topk2-aime2025`).
_DISTILL_SHORT = {"global_summary": "gsum", "top_k_shared": "topk{k}s", "top_k_per_sample": "topk{k}",
                  "random_k": "rand{k}", "previous_solution": "prev"}


def describe_run(cfg: Config) -> str:
    """A run name that says what ran: strategy, widths, distill, dataset and model, e.g.
    `pdr-16x8x4-topk2-aime2025-qwen3-8b` (the sim engine's model is left out)."""
    st = cfg.strategy
    parts = [st.name]
    widths = getattr(st, "widths", None)
    if widths:
        parts.append("x".join(str(w) for w in widths))
    distill = getattr(st, "distill", None)
    if distill:
        parts.append(_DISTILL_SHORT.get(distill, distill).format(k=getattr(st, "k", "")))
    for attr, fmt in (("rounds", "r{}"), ("n", "n{}")):
        if isinstance(getattr(st, attr, None), int) and not isinstance(getattr(st, attr), bool):
            parts.append(fmt.format(getattr(st, attr)))
    if getattr(st, "error_analysis", False):
        parts.append("ea")
    parts.append(cfg.dataset.name)
    if cfg.engine.name != "sim" and cfg.engine.model:
        parts.append(cfg.engine.model.rstrip("/").rsplit("/", 1)[-1].lower()[:32])
    return "-".join(str(p) for p in parts if p not in (None, ""))


def unique_run_name(client: Any, experiment_id: str, name: str) -> str:
    """`name`, or `name-2`, `name-3` ... if the experiment already has runs of that name.
    Parallel jobs may still race to one name (the run ids differ; the name is for people)."""
    try:
        like = name.replace("'", "")
        runs = client.search_runs([experiment_id], filter_string=f"attributes.run_name LIKE '{like}%'",
                                  max_results=5000)
        taken = {r.info.run_name for r in runs}
    except Exception as exc:  # noqa: BLE001 - a name is a convenience: never fail a run for it
        log.debug("run name lookup failed: %s", exc)
        return name
    if name not in taken:
        return name
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"
