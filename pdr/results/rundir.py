"""A run directory's identity and what is left to do in it.

The run key is a hash of what determines a run's results (not where or how it is logged); run.json
holds it, with the MLflow run and the attempt count, so that `resume=true` finds the directory
(`find_resumable`) and continues the same MLflow run. `plan_run` refuses a directory of another run,
keeps the finished rows of an earlier attempt, and lists every (problem, sample) still to run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdr.config.secrets import mask_data
from pdr.engines.cache import count_entries
from pdr.errors import PdrError
from pdr.results.files import JOURNAL, RESULTS, RUN_INFO, final_rows, read_jsonl, write_json

if TYPE_CHECKING:
    from pdr.config.schema import Config
    from pdr.data import Problem

log = logging.getLogger(__name__)

# Config keys that do not change what a run computes (left out of the run key).
_NON_SEMANTIC = ("resume", "output_dir", "progress", "tracking", "notes", "cache", "grading")


class RunFailed(PdrError):
    """The run could not complete (too many errors, the engine could not start, another run's
    directory ...). The message names the cause and, when rows are kept, how to resume."""


def config_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data (what config.json, summary.json and MLflow record), with
    credentials in URLs masked (`engine.url=http://user:pw@host` is recorded as `http://***@host`;
    the engine itself uses the real URL). The run key is computed from it, so a rotated password
    does not make a different run."""
    return mask_data(asdict(cfg))


def run_key(config: dict[str, Any]) -> str:
    """A hash of what determines a run's results (not where or how it is logged)."""
    semantic = {k: v for k, v in config.items() if k not in _NON_SEMANTIC}
    return hashlib.sha256(json.dumps(semantic, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_resumable(roots: list[Path], key: str) -> Path | None:
    """The newest earlier run directory under any of `roots` (e.g. outputs/ and multirun/) with
    the same run key."""
    best: tuple[float, Path] | None = None
    for root in roots:
        if not root.exists():
            continue
        for info in root.glob(f"**/{RUN_INFO}"):
            try:
                data = json.loads(info.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("run_key") == key:
                mtime = info.stat().st_mtime
                if best is None or mtime > best[0]:
                    best = (mtime, info.parent)
    return best[1] if best else None


@dataclass
class RunPlan:
    """One attempt at a run in `run_dir`: its identity, what earlier attempts left, what to run."""

    run_dir: Path
    config: dict[str, Any]  # config_dict(cfg)
    key: str  # run_key(config)
    prior: dict[str, Any]  # run.json of the earlier attempt ({} for a new run)
    attempt: int  # 1-based
    kept: list[dict[str, Any]]  # finished rows of earlier attempts (status != error), kept as they are
    todo: list[tuple[Problem, int]]  # (problem, sample) pairs to run, in dataset order
    problem_ids: frozenset[str]
    journal_before: int  # calls in the journal before this attempt
    info: dict[str, Any] = field(default_factory=dict)  # run.json's content

    def write_info(self, **updates: str | None) -> None:
        """run.json with `updates` (the MLflow run once known: `mlflow_run_id`, `tracking_uri`,
        so that a resume continues it)."""
        self.info.update(updates)
        write_json(self.run_dir / RUN_INFO, self.info)

    def rows(self) -> list[dict[str, Any]]:
        """The final rows on disk of this run's problems (one per problem-sample)."""
        rows = final_rows(read_jsonl(self.run_dir / RESULTS))
        return [r for r in rows if r["problem_id"] in self.problem_ids]

    def finished(self) -> int:
        """Finished (non-error) problem-samples on disk, e.g. to say how much an interrupt kept."""
        return sum(1 for r in self.rows() if r.get("status") != "error")


def plan_run(cfg: Config, run_dir: Path, problems: list[Problem]) -> RunPlan:
    """Check `run_dir` (created if needed) and plan this attempt. RunFailed if it holds a run with
    another configuration, or (without `resume`) any results."""
    config = config_dict(cfg)
    key = run_key(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    prior = _read_run_info(run_dir / RUN_INFO)
    if prior and prior.get("run_key") != key:
        raise RunFailed(
            f"{run_dir} holds a run with a different configuration (run key {prior.get('run_key')}, this one {key}); "
            "choose another output_dir"
            + (" (resume=true continues only the same configuration)" if cfg.resume else "")
        )
    existing = list(read_jsonl(run_dir / RESULTS))
    if not cfg.resume and existing:
        raise RunFailed(
            f"{run_dir} already has results; pass resume=true to continue it, or choose another output_dir"
        )
    kept = [r for r in final_rows(existing) if r.get("status") != "error"] if cfg.resume else []
    done = {(str(r["problem_id"]), int(r["sample"])) for r in kept}
    todo = [(p, s) for p in problems for s in range(cfg.samples) if (p.id, s) not in done]
    attempt = int(prior.get("attempts", 1 if prior else 0)) + 1
    if cfg.resume:
        log.info(
            "resume: %d finished problem-samples kept, %d to run (attempt %d) in %s",
            len(kept),
            len(todo),
            attempt,
            run_dir,
        )
    now = time.time()
    info = {
        "run_key": key,
        # This run directory's identity across attempts, tagged on its MLflow run (pdr.run_uid): a
        # resume finds that run by it when an attempt was killed before run.json learnt its id.
        "run_uid": prior.get("run_uid") or uuid.uuid4().hex,
        "mlflow_run_id": prior.get("mlflow_run_id"),
        "tracking_uri": prior.get("tracking_uri"),
        "started": prior.get("started", now),
        "last_started": now,
        "attempts": attempt,
    }
    return RunPlan(
        run_dir=run_dir,
        config=config,
        key=key,
        prior=prior,
        attempt=attempt,
        kept=kept,
        todo=todo,
        problem_ids=frozenset(p.id for p in problems),
        journal_before=count_entries(run_dir / JOURNAL) if cfg.resume else 0,
        info=info,
    )


def remove_journal(run_dir: Path) -> None:
    """Delete the call journal (and SQLite's -wal/-shm files); a failure is only logged."""
    path = run_dir / JOURNAL
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the call journal %s: %s", p, exc)


def _read_run_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFailed(
            f"{path}: unreadable ({exc}); it identifies the run in this directory: choose another output_dir"
        ) from exc
    return data if isinstance(data, dict) else {}
