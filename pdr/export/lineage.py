"""An export as an MLflow run: where its records came from and what it wrote.

The run (in experiment `pdr-export` by default, in the source runs' tracking store unless told
otherwise) holds:

- inputs: one MLflow dataset input per source run (`mlflow.data.context=source`; name = the run's
  data set, source = the run directory, digest = a hash of its results.jsonl; input tags
  `pdr.source_run_id`, `pdr.run_key`, `pdr.strategy`, `pdr.model`), and the source runs as tags
  (`pdr.source_run_ids`, `pdr.source_run_dirs`, comma-separated) and params (`source.<i>.run_id` ...);
- params: the format and the selection flags;
- metrics: `records`, `records_<kind>`, `final_records`, `reward_mean`, `correct_fraction`,
  `problem_samples`, `skipped_error_samples`, `answer_mismatches`;
- outputs: `manifest.json` as an artifact always; the data files as artifacts when the artifact
  store is remote, else their paths (tag `pdr.export_dir`, and the manifest's `files`): on this
  machine's filesystem a copy would only double the disk used (as pdr.run does with traces.jsonl);
- tags: `pdr.kind=export`, `simulated=true|false`, `pdr.export_format`.

All MLflow access goes through pdr.tracking (MlflowRun, with SQLite's store lock).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from pdr.export.sources import Run

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "pdr-export"


def results_digest(run_dir: Path) -> str:
    """sha256 of the run's results.jsonl (its grades): the source's content identity."""
    h = hashlib.sha256()
    with (run_dir / "results.jsonl").open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def default_uri(runs: list[Run]) -> str:
    """The source runs' tracking store (run.json's tracking_uri, the first one known), else the
    default store of the current directory."""
    from pdr.tracking.store import default_store_uri

    uris = [str(r.info["tracking_uri"]) for r in runs if r.info.get("tracking_uri")]
    if len(set(uris)) > 1:
        log.warning("the source runs are in %d tracking stores; logging the export to %s (pass --tracking-uri to "
                    "choose)", len(set(uris)), uris[0])
    if uris and "***" in uris[0]:  # run.json masks credentials: the URI is not usable as written
        raise ValueError(f"the source runs' tracking store {uris[0]} has masked credentials: pass --tracking-uri")
    return uris[0] if uris else default_store_uri()


def log_export(runs: list[Run], manifest: dict[str, Any], out: Path, tracking_uri: str, experiment: str,
               run_name: str | None = None) -> tuple[str, str]:
    """Log the export (module docstring); returns (run id, tracking URI)."""
    from pdr.tracking.mlflow_run import MlflowRun
    from pdr.tracking.store import sqlite_path

    sel = manifest["selection"]
    params = {"format": manifest["format"], **{f"selection.{k}": v for k, v in sel.items()},
              "allow_simulated": manifest["allow_simulated"], "allow_partial": manifest["allow_partial"],
              "sources": len(runs), "out": str(out.resolve())}
    for i, r in enumerate(runs[:20]):  # params are capped at 100 per batch: the tags list them all
        params.update({f"source.{i}.run_id": r.info.get("mlflow_run_id"), f"source.{i}.run_dir": str(r.run_dir),
                       f"source.{i}.run_key": r.info.get("run_key")})
    simulated = any(r.simulated for r in runs)
    tags = {"pdr.kind": "export", "pdr.export_format": manifest["format"], "simulated": str(simulated).lower(),
            "pdr.export_dir": str(out.resolve()),
            "pdr.source_run_ids": ",".join(str(r.info.get("mlflow_run_id") or "") for r in runs),
            "pdr.source_run_dirs": ",".join(str(r.run_dir.resolve()) for r in runs),
            "dataset": ",".join(sorted({r.dataset for r in runs}))}
    db = sqlite_path(tracking_uri)
    tracker = MlflowRun(tracking_uri, experiment, run_name or f"export {manifest['format']} {out.name}",
                        {k: "null" if v is None else str(v) for k, v in params.items()}, tags,
                        artifact_root=(db.parent / "mlartifacts") if db is not None else None)
    try:
        for r in runs:
            ident = r.identity()
            tracker.log_dataset(
                r.dataset, str(r.run_dir.resolve()), results_digest(r.run_dir), len({k[0] for k in r.rows}),
                context="source",
                tags={"pdr.source_run_id": ident["mlflow_run_id"] or "", "pdr.run_key": ident["run_key"],
                      "pdr.strategy": ident["strategy"], "pdr.model": ident["model"]},
            )
        counts = manifest["counts"]
        metrics = {"records": counts["records"], "final_records": counts["final"],
                   "problem_samples": counts["problem_samples"], "skipped_error_samples": counts["skipped_error_samples"],
                   "answer_mismatches": counts["answer_mismatches"],
                   **{f"records_{k}": v for k, v in counts["by_kind"].items()}}
        rewards = manifest["rewards"]
        if rewards["rewarded"]:
            metrics.update(reward_mean=rewards["mean"], correct_fraction=rewards["correct_fraction"])
        tracker.log_metrics(metrics)
        tracker.log_artifacts([out / "manifest.json"])
        root = tracker.client.get_run(tracker.run_id).info.artifact_uri or ""
        if "://" in root and not root.startswith("file:"):
            tracker.log_artifacts([Path(f["path"]) for f in manifest["files"]], artifact_path="data")
        tracker.end("FINISHED")
    except BaseException:
        tracker.end("FAILED")
        raise
    return tracker.run_id, tracking_uri
