"""The finished runs an export reads: found under the paths given, checked, and read.

A source is a run directory (it holds `run.json`, `config.json`, `results.jsonl`, `traces.jsonl`
and, once the run has ended, `summary.json`), or any directory above run directories (a multirun
sweep, an `outputs/` tree): every run directory below it is a source, in natural path order.

Refused, each with a message naming the directory and the fix (`ExportError`):
- a path that does not exist, or holds no run directory;
- a run without `traces.jsonl` (prompts and completions are only there);
- a run that has not finished (no `summary.json`: still running or interrupted; or a summary whose
  status is not FINISHED) unless `allow_partial` (then its finished problem-samples are read);
- a run of the simulated engine (engine=sim) unless `allow_simulated`: its text is generated
  filler, not model data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdr.errors import PdrError
from pdr.results.files import CONFIG, RESULTS, RUN_INFO, SUMMARY, TRACES, final_rows, read_jsonl


class ExportError(PdrError):
    """An export cannot be made as asked; the message names the path or flag and the fix."""


@dataclass
class Run:
    """One source run directory, read: its identity and its problem-samples."""

    run_dir: Path
    config: dict[str, Any]
    info: dict[str, Any]  # run.json
    summary: dict[str, Any]  # summary.json ({} when allow_partial read an unfinished run)
    rows: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # results.jsonl, last row wins
    traces_path: Path | None = None

    @property
    def simulated(self) -> bool:
        return bool(self.summary.get("simulated")) or self.config.get("engine", {}).get("name") == "sim"

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", {}).get("name") or "unknown")

    def identity(self) -> dict[str, Any]:
        """The run's config identity, copied into every record (`source`)."""
        import pdr

        cfg = self.config
        eng, strat = cfg.get("engine", {}), cfg.get("strategy", {})
        widths = strat.get("widths")
        return {
            "run_key": str(self.info.get("run_key") or self.summary.get("run_key") or ""),
            "strategy": str(strat.get("name") or ""),
            "graph": str(self.summary.get("graph") or ""),
            "widths": [int(w) for w in widths] if isinstance(widths, list) else None,
            "distill": strat.get("distill"),
            "model": str(eng.get("model") or ""),
            "engine": str(eng.get("name") or ""),
            "api": eng.get("api"),
            "dataset": self.dataset,
            "seed": cfg.get("seed"),
            "temperature": cfg.get("sampling", {}).get("temperature"),
            "pdr_version": pdr.__version__,
            "run_dir": str(self.run_dir.resolve()),
            "mlflow_run_id": self.info.get("mlflow_run_id"),
            "tracking_uri": self.info.get("tracking_uri"),
            "simulated": self.simulated,
            # Workspaces chosen with the gold answers (strategy.selection=oracle_*): refine prompts
            # then hold drafts picked by correctness, which no deployed model would see.
            "oracle": bool(self.summary.get("oracle")) or str(strat.get("selection", "")).startswith("oracle"),
        }

    def entries(self) -> Iterator[dict[str, Any]]:
        """traces.jsonl entries, one per problem-sample (the last written wins, as in results), in
        file order. Two streaming passes (the first finds each problem-sample's last line), so a
        multi-GB traces file is never held whole."""
        assert self.traces_path is not None
        last: dict[tuple[str, int], int] = {}
        for i, t in enumerate(read_jsonl(self.traces_path)):
            last[(str(t["problem_id"]), int(t["sample"]))] = i
        wanted = set(last.values())
        for i, t in enumerate(read_jsonl(self.traces_path)):
            if i in wanted:
                yield t


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_run_dirs(paths: Sequence[Path]) -> list[Path]:
    """Every run directory at or below `paths` (a directory with run.json or results.jsonl),
    each once, in natural order per path. ExportError for a missing path or one without runs."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise ExportError(f"{p}: no such directory (give a run directory, e.g. outputs/2026-01-01/12-00-00_ab12cd, "
                              "or a multirun sweep directory)")
        if not p.is_dir():
            raise ExportError(f"{p}: not a directory (give a run or sweep directory, not a file in it)")
        if (p / RUN_INFO).exists() or (p / RESULTS).exists():
            found = [p]
        else:
            found = sorted({f.parent for name in (RUN_INFO, RESULTS) for f in p.glob(f"**/{name}")}, key=_natural)
        if not found:
            raise ExportError(f"{p}: no pdr run directory here or below (a run directory holds {RUN_INFO} and "
                              f"{RESULTS}); run `python -m pdr.run ...` first, or give its outputs/... directory")
        out.extend(d for d in found if d.resolve() not in {o.resolve() for o in out})
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: unreadable ({exc})") from exc
    return data if isinstance(data, dict) else {}


def read_run(run_dir: Path, *, allow_simulated: bool = False, allow_partial: bool = False) -> Run:
    """The run in `run_dir`, checked (module docstring)."""
    for name in (CONFIG, RESULTS):
        if not (run_dir / name).exists():
            raise ExportError(f"{run_dir}: no {name}; this is not a (complete) pdr run directory")
    traces = run_dir / TRACES
    if not traces.exists():
        gz = run_dir / (TRACES + ".gz")
        hint = (f" (there is {gz.name}: decompress it with `gunzip -k {gz}`)" if gz.exists() else
                " (pdr writes it for every run; it was deleted or moved: re-run the configuration with "
                "`python -m pdr.run ...` in a new output_dir)")
        raise ExportError(f"{run_dir}: this run has no {TRACES}, which holds the prompts and completions{hint}")
    config = _read_json(run_dir / CONFIG)
    info = _read_json(run_dir / RUN_INFO) if (run_dir / RUN_INFO).exists() else {}
    summary = _read_json(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else {}
    status = summary.get("status")
    if status != "FINISHED" and not allow_partial:
        why = "it has no summary.json (still running, or interrupted)" if not summary else f"its status is {status}"
        raise ExportError(f"{run_dir}: the run has not finished ({why}); resume it (`python -m pdr.run ... resume=true`) "
                          "or pass --allow-partial to export its finished problem-samples only")
    run = Run(run_dir, config, info, summary, traces_path=traces)
    if run.simulated and not allow_simulated:
        raise ExportError(f"{run_dir}: a run of the simulated engine (engine=sim): its text is generated filler, not "
                          "model data, and must not be trained on; pass --allow-simulated for tests and demos (every "
                          "record is then marked simulated=true)")
    run.rows = {(str(r["problem_id"]), int(r["sample"])): r for r in final_rows(read_jsonl(run_dir / RESULTS))}
    return run
