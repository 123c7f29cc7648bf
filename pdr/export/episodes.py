"""`export_episodes`: finished runs -> training records in a trainer's format, a manifest, and an MLflow run.

    from pdr.export import export_episodes, Selection
    manifest = export_episodes([Path("multirun/2026-01-01/12-00-00")], "verl", Path("exports/pdr-aime"),
                               Selection(calls="drafts", correct_only=True))

Reads every source first (each is checked before anything is written: pdr.export.sources),
builds the records (pdr.export.records), selects them (pdr.export.select), writes them
(pdr.export.formats) with `manifest.json` beside them, then logs the export to MLflow
(pdr.export.lineage) unless `mlflow=False`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pdr.export import formats
from pdr.export.records import RenderFn, Stats, run_records
from pdr.export.select import CALLS, Selection, select
from pdr.export.sources import ExportError, Run, find_run_dirs, read_run
from pdr.results.files import write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def renderer(run: Run) -> RenderFn | None:
    """The prompt renderer of an `engine=sglang api=native` run (its chat template, as the engine
    resolved it: pdr.engines.chat_templates), else None (the server rendered the chat)."""
    eng = run.config.get("engine", {})
    if eng.get("name") != "sglang" or eng.get("api", "native") != "native":
        return None
    from pdr.engines.base import Message
    from pdr.engines.chat_templates import BUILTIN_TEMPLATES, resolve_template
    from pdr.errors import ConfigError

    info = run.summary.get("engine_info") or {}
    used = info.get("chat_template")  # the template the engine resolved (a guess is recorded here)
    chosen = eng.get("chat_template") or (used if used in BUILTIN_TEMPLATES else None)
    model = eng.get("model")
    try:
        template = resolve_template(chosen, eng.get("tokenizer_path"),
                                    [model if model != "default" else None, info.get("model")])
    except ConfigError as exc:
        raise ExportError(f"{run.run_dir}: cannot render its prompts as the native API did: {exc}") from exc
    if used and template.name != used:
        raise ExportError(f"{run.run_dir}: the run rendered prompts with template {used!r} but {template.name!r} is "
                          "what resolves here (a changed template file or tokenizer?): the rendered text would differ")
    kwargs = dict(eng.get("chat_template_kwargs") or {})
    return lambda messages: template.render([Message(m["role"], m["content"]) for m in messages], **kwargs)


def reward_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    rewarded = [r["reward"] for r in records if r["reward"] is not None]
    finals = [r["reward"] for r in records if r["is_final"]]
    by_kind: dict[str, list[float]] = {}
    for r in records:
        if r["reward"] is not None:
            by_kind.setdefault(r["kind"], []).append(r["reward"])
    return {
        "rewarded": len(rewarded),
        "unrewarded": len(records) - len(rewarded),
        "mean": sum(rewarded) / len(rewarded) if rewarded else None,
        "correct_fraction": sum(1 for x in rewarded if x == 1.0) / len(rewarded) if rewarded else None,
        "final_mean": sum(finals) / len(finals) if finals else None,
        "mean_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
    }


def export_episodes(paths: list[Path], fmt: str, out: Path, selection: Selection | None = None, *,
                    allow_simulated: bool = False, allow_partial: bool = False, data_source: str | None = None,
                    mlflow: bool = True, tracking_uri: str | None = None, experiment: str | None = None,
                    overwrite: bool = False) -> dict[str, Any]:
    """Export the runs at or below `paths` to `out` in `fmt` (module docstring); returns the manifest."""
    sel = selection or Selection()
    if fmt not in formats.FORMATS:
        raise ExportError(f"--format {fmt}: choose one of {', '.join(formats.FORMATS)}")
    if sel.calls not in CALLS:
        raise ExportError(f"--calls {sel.calls}: choose one of {', '.join(CALLS)}")
    if sel.balance_per_problem is not None and sel.balance_per_problem < 1:
        raise ExportError(f"--balance-per-problem {sel.balance_per_problem}: must be >= 1")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out}: exists and is not empty; choose another --out or pass --overwrite")
    runs = [read_run(d, allow_simulated=allow_simulated, allow_partial=allow_partial) for d in find_run_dirs(paths)]
    stats = Stats()
    records = select((rec for run in runs for rec in run_records(run, stats, renderer(run))), sel)
    if not records:
        raise ExportError(f"no record left after selection ({stats.problem_samples} problem-samples read, "
                          f"flags {sel.as_dict()}); loosen the flags")
    files = formats.write(records, fmt, out, data_source)
    by_kind = Counter(r["kind"] for r in records)
    manifest: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "format": fmt,
        "format_versions": {"verl": formats.CHECKED["verl"], "trl": formats.CHECKED["trl"], **_lib_versions()},
        "selection": sel.as_dict(),
        "allow_simulated": allow_simulated,
        "allow_partial": allow_partial,
        "simulated": any(r.simulated for r in runs),
        "oracle": any(r.identity()["oracle"] for r in runs),
        "data_source": data_source,
        "sources": [{k: v for k, v in r.identity().items()} for r in runs],
        "counts": {"records": len(records), "final": sum(1 for r in records if r["is_final"]),
                   "by_kind": dict(sorted(by_kind.items())), "problems": len({(r["source"]["dataset"], r["problem_id"])
                                                                              for r in records}),
                   "problem_samples": stats.problem_samples, "skipped_error_samples": stats.skipped_error_samples,
                   "skipped_unfinished_samples": stats.skipped_unfinished_samples,
                   "answer_mismatches": stats.answer_mismatches},
        "rewards": reward_stats(records),
        "files": files,
        "mlflow": None,
    }
    write_json(out / MANIFEST, manifest)
    if mlflow:
        from pdr.export.lineage import DEFAULT_EXPERIMENT, default_uri, log_export

        try:
            uri = tracking_uri or default_uri(runs)
        except ValueError as exc:
            raise ExportError(str(exc)) from exc
        run_id, uri = log_export(runs, manifest, out, uri, experiment or DEFAULT_EXPERIMENT)
        manifest["mlflow"] = {"run_id": run_id, "tracking_uri": uri, "experiment": experiment or DEFAULT_EXPERIMENT}
        write_json(out / MANIFEST, manifest)
    return manifest


def _lib_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for lib in ("datasets", "pyarrow"):
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out
