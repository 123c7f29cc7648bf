"""`python -m pdr.run +experiment=NAME [overrides]` (and `-m` for a Hydra multirun sweep).

The Hydra entry point: compose, validate (`OmegaConf.to_object` runs every schema check before
any engine call), then hand the typed config to `pdr.runner.run`. Kept light: the runner (numpy,
the engines, tqdm) and mlflow are imported only once a run really starts, so `--cfg job` /
`--help` answer fast (experiments/benchmarks/bench_startup.py).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_original_cwd
from omegaconf import DictConfig, ListConfig, OmegaConf

from pdr.config import search_path
from pdr.config.schema import register_configs
from pdr.config.secrets import install_log_masking, is_secret_key, mask_secrets, secret_overrides
from pdr.errors import ConfigError, PdrError, did_you_mean
from pdr.strategies.graph import compile_graph
from pdr.tracking.mlflow_run import ui_command

# (module-level state lives in imported modules: joblib pickles this __main__ module's task by value)
from pdr.tracking.sweep import die_with_launcher, job_ended, parent_run_for_job, tracking_uri_for

if TYPE_CHECKING:
    from pdr.config.schema import Config
    from pdr.runner import RunResult

log = logging.getLogger("pdr")

register_configs()
search_path.register()  # the user's config folders in front of the shipped pkg://pdr.conf


def _check_group_choices(argv: list[str]) -> None:
    """'did you mean' for a mistyped config-group option (e.g. strategy=pdrr) before Hydra runs."""
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~")
        if "." in key or "/" in key or not value or "," in value or "(" in value:
            continue
        options = search_path.group_options(key)
        if options is None:
            continue
        if value not in options:
            raise ConfigError(
                f"{key}={value}: no such option{did_you_mean(value, options)}; available: {', '.join(options)}"
            )


def _check_unknown_keys(node: Any, path: str = "") -> None:
    """Reject keys that no schema declares. Hydra's `+key=value` can append to a structured node
    without complaint (and to_object then drops the value), so `+engine.timeout=5` would be
    silently ignored; this names it instead."""
    if isinstance(node, DictConfig):
        obj_type = OmegaConf.get_type(node)
        if obj_type is not None and dataclasses.is_dataclass(obj_type):
            fields = {f.name for f in dataclasses.fields(obj_type)}
            for key in node.keys():
                if key not in fields:
                    where = f"{path}.{key}" if path else str(key)
                    hint = ""
                    if is_secret_key(str(key)):
                        hint = (
                            " (never put a credential in the config: export it and name the variable "
                            "with engine.api_key_env=VAR)"
                        )
                    raise ConfigError(
                        f"{where}: unknown key{did_you_mean(str(key), fields)}{hint}; "
                        f"keys of {path or 'the config'}: {', '.join(sorted(fields))}"
                    )
        for key in node.keys():
            if key == "hydra":
                continue
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig):
                _check_unknown_keys(child, f"{path}.{key}" if path else str(key))


def _config_error(exc: BaseException) -> ConfigError | None:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ConfigError):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return None


def _fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def format_report(result: RunResult, cfg: Config) -> str:
    m = result.summary
    sim = cfg.engine.name == "sim"
    lines = [
        "",
        f"pdr: {cfg.strategy.name} on {cfg.dataset.name} with engine={cfg.engine.name}"
        f" (model {result.info.get('model') or cfg.engine.model})"
        + ("  [SIMULATED engine: these are not a model's results]" if sim else "")
        + ("  [ORACLE: workspaces chosen with the gold answers]" if any(r.get("oracle") for r in result.rows) else ""),
    ]
    if not m:
        lines.append("  no results")
        return "\n".join(lines)
    level = int(round(cfg.metrics.ci_level * 100))
    lines.append(
        f"  accuracy      {m['accuracy']:.3f}  [{m['accuracy_ci_low']:.3f}, {m['accuracy_ci_high']:.3f}] {level}% CI"
        f"   (mean@{cfg.samples} over {int(m['problems'])} problems)"
    )
    statuses = " · ".join(
        f"{s} {round(m[f'frac_{s}'] * m['problem_samples'])}"
        for s in ("correct", "wrong", "no_answer", "truncated", "error")
    )
    lines.append(f"  status        {statuses}")
    lines.append(
        f"  seq tokens    {_fmt_int(m['seq_tokens'])} (output {_fmt_int(m['seq_output_tokens'])})"
        f"   total tokens {_fmt_int(m['total_tokens'])} (output {_fmt_int(m['total_output_tokens'])})   [means per problem-sample]"
    )
    lines.append(f"  max context   {_fmt_int(m.get('max_context_tokens', 0))} tokens")
    rounds = sorted(
        (int(k.split("_")[1]), v)
        for k, v in m.items()
        if k.startswith("round_") and k.endswith("_draft_accuracy")
    )
    if len(rounds) > 1:
        lines.append("  draft acc     " + " -> ".join(f"r{r} {v:.2f}" for r, v in rounds))
    calls = f"{_fmt_int(m.get('engine_calls_sent', 0))} engine calls"
    if m.get("cache_hits"):
        calls += f", {_fmt_int(m['cache_hits'])} served from the call cache"
    lines.append(f"  wall time     {m['wall_time_s']:.1f} s   ({calls})")
    shown = result.run_dir
    try:
        shown = result.run_dir.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    lines.append(f"results:  {shown}/results.jsonl  (summary.json, traces.jsonl alongside)")
    if result.resumed_rows:
        lines.append(f"resumed:  kept {result.resumed_rows} finished problem-samples from the earlier run")
    if result.mlflow_run_id:
        lines.append(f"MLflow:   run {result.mlflow_run_id} in experiment '{cfg.tracking.experiment}'")
        lines.append(f"open it:  {ui_command(result.tracking_uri)}   (then http://127.0.0.1:5000)")
    return "\n".join(lines)


# What Hydra puts in a job's directory before the task runs; a directory holding nothing else (and
# the files a run that never got going leaves: an empty journal, the lock) has no run in it.
_HYDRA_ONLY = frozenset({".hydra", "run.log"})
_NOT_STARTED = _HYDRA_ONLY | {
    "calls.sqlite",
    "calls.sqlite-wal",
    "calls.sqlite-shm",
    "calls.sqlite.lock",
    "run.lock",
}


def _hydra_dir() -> Path | None:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - outside a Hydra job
        return None


def _file_handlers_in(directory: Path) -> list[tuple[logging.Logger, logging.FileHandler]]:
    out = []
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == directory:
                out.append((lg, h))
    return out


def _discard_hydra_dir(directory: Path | None, allowed: frozenset[str] = _HYDRA_ONLY) -> bool:
    """Remove Hydra's job directory (and an emptied date directory above it) if it holds nothing
    but `allowed` entries: a run that failed validation, or a resume that continued another
    directory, leaves no stray `outputs/<date>/<time>/`. Its log handlers are closed first."""
    if directory is None or not directory.is_dir():
        return False
    if any(p.name not in allowed for p in directory.iterdir()):
        return False
    for lg, h in _file_handlers_in(directory):
        lg.removeHandler(h)
        h.close()
    shutil.rmtree(directory, ignore_errors=True)
    for parent in (directory.parent, directory.parent.parent):
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break
    return True


def _move_log(hydra_dir: Path | None, run_dir: Path) -> None:
    """Send Hydra's job log (run.log) to `run_dir` (a resumed or explicit output directory): what
    was logged so far is appended to `run_dir`/run.log and the handlers continue there."""
    if hydra_dir is None or hydra_dir.resolve() == run_dir.resolve():
        return
    for lg, h in _file_handlers_in(hydra_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        h.flush()
        target = run_dir / Path(h.baseFilename).name
        try:
            earlier = Path(h.baseFilename).read_text(encoding="utf-8")
        except OSError:
            earlier = ""
        with target.open("a", encoding="utf-8") as f:
            f.write(earlier)
        new = logging.FileHandler(target, mode="a", encoding="utf-8")
        new.setFormatter(h.formatter)
        new.setLevel(h.level)
        for flt in h.filters:
            new.addFilter(flt)
        lg.removeHandler(h)
        h.close()
        lg.addHandler(new)


def _mask_hydra_files(hydra_dir: Path, sweep_dir: Path | None) -> None:
    """Mask URL credentials (`mask_secrets`) in the YAML files Hydra wrote before the task started
    (`.hydra/{config,hydra,overrides}.yaml`; in a sweep also `multirun.yaml`): the engine keeps the
    real URL in memory, the files on disk hold `http://***@host`. Atomic rewrites, only if needed."""
    paths = list((hydra_dir / ".hydra").glob("*.yaml"))
    if sweep_dir is not None:
        paths.append(sweep_dir / "multirun.yaml")
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        masked = mask_secrets(text)
        if masked != text:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(masked, encoding="utf-8")
            os.replace(tmp, path)


@hydra.main(version_base="1.3", config_path=search_path.PRIMARY, config_name="config")
def _main(dcfg: DictConfig) -> float | None:
    hydra_dir_early = _hydra_dir()
    if hydra_dir_early is not None:  # before anything else can fail and leave them as written
        sweep = HydraConfig.get().sweep.dir if HydraConfig.get().mode == RunMode.MULTIRUN else None
        _mask_hydra_files(hydra_dir_early, Path(get_original_cwd()) / sweep if sweep else None)
    try:
        _check_unknown_keys(dcfg)
        cfg = OmegaConf.to_object(dcfg)
        compile_graph(cfg.strategy)  # the graph's own checks (k, widths, kappa, ops), before any work
    except Exception as exc:  # noqa: BLE001 - OmegaConf wraps errors raised in __post_init__
        err = _config_error(exc)
        if err is None:
            raise
        print(f"pdr: config error: {mask_secrets(str(err))}", file=sys.stderr)
        _discard_hydra_dir(_hydra_dir())
        sys.exit(2)

    hc = HydraConfig.get()
    hydra_dir = Path(hc.runtime.output_dir)
    run_dir = Path(cfg.output_dir) if cfg.output_dir else hydra_dir
    launch_dir = Path(get_original_cwd())
    # Here, not at the top: they load numpy, the engines and the grader, which `--cfg job` and
    # `--help` do not need.
    from pdr.results import config_dict, find_resumable, run_key
    from pdr.runner import run

    if cfg.resume and not cfg.output_dir:
        found = find_resumable([launch_dir / "outputs", launch_dir / "multirun"], run_key(config_dict(cfg)))
        if found is not None and found.resolve() != run_dir.resolve():
            log.info("resuming %s", found)
            run_dir = found
    if hc.mode == RunMode.MULTIRUN:
        die_with_launcher()
    if cfg.tracking.enabled and cfg.tracking.parent_run_id is None and hc.mode == RunMode.MULTIRUN:
        # A sweep job: nest under the sweep's parent run (written by pdr.tracking.sweep).
        cfg.tracking.parent_run_id = parent_run_for_job(
            launch_dir / hc.sweep.dir, tracking_uri_for(cfg.tracking.uri, launch_dir), cfg.tracking.experiment
        )
    extra_tags = {}
    try:
        extra_tags["overrides"] = mask_secrets(" ".join(hc.overrides.task))[:5000]
    except Exception:  # noqa: BLE001 - outside a Hydra job
        pass
    # A resumed (or explicit) directory gets this attempt's log; Hydra's fresh one is then empty.
    elsewhere = run_dir.resolve() != hydra_dir.resolve()
    if elsewhere:
        _move_log(hydra_dir, run_dir)
        _discard_hydra_dir(hydra_dir)
    try:
        result = run(cfg, run_dir, launch_dir=launch_dir, extra_tags=extra_tags)
    except PdrError as exc:
        print(f"pdr: error: {mask_secrets(str(exc))}", file=sys.stderr)
        if not elsewhere:  # a run that never started (bad data, no server) leaves no directory
            _discard_hydra_dir(hydra_dir, _NOT_STARTED)
        sys.exit(1)
    finally:
        job_ended()
    print(mask_secrets(format_report(result, cfg)))
    return result.summary.get("accuracy")


def _refuse_secret_overrides(argv: list[str]) -> None:
    """Exit 1 if an override sets a credential-looking key. Before Hydra composes anything: by the
    time the config is checked, Hydra has written the value to `.hydra/overrides.yaml`, `config.yaml`
    and `hydra.yaml` (and for a key the schema lacks it echoes the value on stderr). Only the key
    is named, never the value."""
    keys = secret_overrides(argv)
    if keys:
        print(
            f"pdr: error: {keys[0]}: looks like a credential, and pdr never takes credentials from the config or "
            "the command line (they are recorded in config files, MLflow and shell history). Export the key in "
            "an environment variable and name that variable instead, e.g. engine.api_key_env=MY_KEY_VAR",
            file=sys.stderr,
        )
        sys.exit(1)


def main() -> None:
    install_log_masking()  # URL credentials masked in every log record (Hydra's run.log included)
    _refuse_secret_overrides(sys.argv[1:])
    try:
        search_path.use_command_line(sys.argv[1:])
        search_path.user_entries()  # PDR_CONFIG_PATH: a missing folder fails here, with its name
        search_path.shipped()
        _check_group_choices(sys.argv[1:])
    except PdrError as exc:
        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"pdr: {kind}: {mask_secrets(str(exc))}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
