"""`python -m pdr.run +experiment=NAME [overrides]` (and `-m` for a Hydra multirun sweep).

The Hydra entry point: compose, validate (`OmegaConf.to_object` runs every schema check before
any engine call), then hand the typed config to `pdr.runner.run`. Kept light: the runner (numpy,
the engines, tqdm) and mlflow are imported only once a run really starts, so `--cfg job` /
`--help` answer fast (experiments/benchmarks/bench_startup.py).
"""

from __future__ import annotations

import dataclasses
import logging
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
from pdr.config.secrets import is_secret_key
from pdr.errors import ConfigError, PdrError, did_you_mean
from pdr.strategies.graph import compile_graph
from pdr.tracking.mlflow_run import ui_command
from pdr.tracking.sweep import parent_run_for_job, tracking_uri_for

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


@hydra.main(version_base="1.3", config_path=search_path.PRIMARY, config_name="config")
def _main(dcfg: DictConfig) -> float | None:
    try:
        _check_unknown_keys(dcfg)
        cfg = OmegaConf.to_object(dcfg)
        compile_graph(cfg.strategy)  # the graph's own checks (k, widths, kappa, ops), before any work
    except Exception as exc:  # noqa: BLE001 - OmegaConf wraps errors raised in __post_init__
        err = _config_error(exc)
        if err is None:
            raise
        print(f"pdr: config error: {err}", file=sys.stderr)
        sys.exit(2)

    hc = HydraConfig.get()
    run_dir = Path(cfg.output_dir) if cfg.output_dir else Path(hc.runtime.output_dir)
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
    if cfg.tracking.enabled and cfg.tracking.parent_run_id is None and hc.mode == RunMode.MULTIRUN:
        # A sweep job: nest under the sweep's parent run (written by pdr.tracking.sweep).
        cfg.tracking.parent_run_id = parent_run_for_job(
            launch_dir / hc.sweep.dir, tracking_uri_for(cfg.tracking.uri, launch_dir), cfg.tracking.experiment
        )
    extra_tags = {}
    try:
        extra_tags["overrides"] = " ".join(hc.overrides.task)[:5000]
    except Exception:  # noqa: BLE001 - outside a Hydra job
        pass
    try:
        result = run(cfg, run_dir, launch_dir=launch_dir, extra_tags=extra_tags)
    except PdrError as exc:
        print(f"pdr: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(format_report(result, cfg))
    return result.summary.get("accuracy")


def main() -> None:
    try:
        search_path.use_command_line(sys.argv[1:])
        search_path.user_entries()  # PDR_CONFIG_PATH: a missing folder fails here, with its name
        search_path.shipped()
        _check_group_choices(sys.argv[1:])
    except PdrError as exc:
        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"pdr: {kind}: {exc}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
