"""`python -m pdr.dryrun`: a sweep's token cost, estimated on the simulated engine before any GPU hour.

    python -m pdr.dryrun +experiment=paper_pdr dataset=aime2024,aime2025
    python -m pdr.dryrun +experiment=paper_pdr dataset=aime2024,aime2025 --fill 0.5 --tokens-per-s 20000
    python -m pdr.dryrun +experiment=quickstart +sweep=widths_distill --csv cost.csv

Takes the same overrides as `python -m pdr.run -m` (the experiment preset's `hydra.sweeper.params`
and comma-separated sweeps on the command line, combined as Hydra's basic sweeper does) and, for
every job of the grid:

1. composes its config with `engine=sim` and `tracking=off` forced (engine overrides of a real
   run, like `engine=sglang engine.url=...`, are dropped; `engine.*` settings of the sim are kept);
2. runs it through `pdr.runner.run`, the path of a real run, into a temporary directory, for
   `--problems` problems spread evenly over the dataset (`dataset.ids`) x `--samples` samples
   (the real prompts, fork widths, workspaces and budgets; no MLflow, nothing kept);
3. scales the measured means per problem-sample to the job's full size: dataset problems (after
   `dataset.limit`) x `samples`.

It prints per job and in total: sequential and total tokens (input + output, as the run's
metrics define them), output tokens, prompt tokens, engine calls, and the hard upper bound on
generated tokens if every call used its whole `sampling.max_tokens` (the "cap" columns; exact
for the graph, independent of the sim). Duplicate configs (same run key) are flagged.

The sim's lengths are a simulator's, not your model's: calibrate with `--fill F` (mean draft
thinking = F x the per-call cap, so drafts on hard problems get truncated the way reasoning
models' are on AIME) or the sim's own `engine.think_tokens=` / `engine.answer_tokens=`. The sim
counts words as tokens (a real tokenizer gives ~1.3x more for English text). With
`--tokens-per-s R` (your server's aggregate generation throughput) it also prints GPU hours
= output tokens / R (prefill left out: prompts are mostly served from SGLang's prefix cache).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_FORCED = ["engine=sim", "tracking=off", "progress=false", "cache.mode=off"]


@dataclass
class JobCost:
    """One job's measured means per problem-sample and its full size."""

    overrides: list[str]
    run_key: str
    problems: int  # in the real job
    samples: int
    max_tokens: int
    measured: int  # problem-samples actually simulated
    per_ps: dict[str, float] = field(default_factory=dict)  # means per problem-sample
    duplicate_of: int | None = None  # index of an earlier job with the same run key

    @property
    def size(self) -> int:
        return self.problems * self.samples

    def total(self, key: str) -> float:
        return self.per_ps.get(key, 0.0) * self.size


def _split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(hydra overrides, dropped engine overrides): a real engine's settings do not apply to the sim."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(argv)
    real_engine = any(o.get_key_element().lstrip("+~") == "engine" and o.value() != "sim" for o in parsed)
    keep, dropped = [], []
    for arg, o in zip(argv, parsed, strict=True):
        key = o.get_key_element().lstrip("+~")
        if key.startswith("hydra/launcher") or key.startswith("hydra.launcher"):
            dropped.append(arg)
        elif key == "engine" or (real_engine and key.startswith("engine.")):
            dropped.append(arg)
        else:
            keep.append(arg)
    return keep, dropped


def _compose(overrides: list[str], with_hydra: bool = False) -> Any:
    """The primary config composed with `overrides` as `python -m pdr.run` does (the shipped configs,
    the user's config folders in front: pdr/config/search_path.py)."""
    from pdr.config.search_path import compose

    return compose(overrides, return_hydra_config=with_hydra)


def grid(overrides: list[str]) -> list[list[str]]:
    """The job override lists `python -m pdr.run -m OVERRIDES` would launch with the basic sweeper:
    the composed config's `hydra.sweeper.params`, then the command line (which wins per key)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    params = _compose(fixed + _FORCED, with_hydra=True).hydra.sweeper.params or {}
    return expand([f"{k}={v}" for k, v in params.items()] + list(overrides))


def expand(args: list[str]) -> list[list[str]]:
    """The cartesian product of Hydra override strings, as the basic sweeper forms its jobs: one
    axis per key in order of first appearance, a later override of a key replacing the earlier
    one in place; `a=1,2` is a sweep, a plain `a=1` a single value."""
    from pdr.config.overrides import override_axes
    from pdr.errors import ConfigError

    axes = override_axes(args)
    for axis in axes.values():
        if axis.values is None:
            raise ConfigError(f"{axis.text}: the basic sweeper takes lists and ranges only, not intervals")
    return [list(job) for job in itertools.product(*([f"{a.key}={v}" for v in a.values] for a in axes.values()))]


def compose_job(job: list[str]) -> Any:
    """The validated `Config` object of one job (its overrides + engine=sim, tracking=off)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(_compose(job + _FORCED))


def _spread(items: list[Any], n: int) -> list[Any]:
    """`n` items spread evenly over the list (problems often get harder along a set)."""
    if n >= len(items):
        return list(items)
    return [items[round(i * (len(items) - 1) / max(1, n - 1))] for i in range(n)] if n > 1 else [items[len(items) // 2]]


def _simulate(cfg: Any, problems: list[Any], samples: int, run_dir: Path) -> list[dict[str, float]]:
    """Per problem-sample token ledgers of `cfg` (engine=sim, tracking off) on `problems` x
    `samples`, measured by a real run (`pdr.runner.run`) into `run_dir`."""
    from pdr.executor import budgets
    from pdr.results import read_jsonl
    from pdr.runner import run

    measured = replace(cfg, samples=samples, dataset=replace(cfg.dataset, ids=[p.id for p in problems], limit=None))
    result = run(measured, run_dir, launch_dir=run_dir)
    # The trace has every completion (its step and finish reason); the row has the budgets.
    traces = {(str(t["problem_id"]), int(t["sample"])): t for t in read_jsonl(run_dir / "traces.jsonl")}
    ledger_keys = budgets([])  # the token columns of a results row
    out = []
    for row in result.rows:
        outputs = [(c["step"], o) for c in traces[(str(row["problem_id"]), int(row["sample"]))]["calls"]
                   for o in c["outputs"]]
        b = {k: float(row[k]) for k in ledger_keys}
        b["completions"] = float(len(outputs))
        b["steps"] = float(len({step for step, _ in outputs}))
        # Hard caps on generated tokens: every completion / every critical-path step at max_tokens.
        b["cap_total_output_tokens"] = b["completions"] * cfg.sampling.max_tokens
        b["cap_seq_output_tokens"] = b["steps"] * cfg.sampling.max_tokens
        b["truncated"] = float(sum(1 for _, o in outputs if o["finish_reason"] == "length"))
        b["errors"] = 1.0 if row["status"] == "error" else 0.0
        out.append(b)
    return out


def estimate(overrides: list[str], problems: int = 6, samples: int = 2, fill: float | None = None) -> list[JobCost]:
    """The cost of every job of the sweep `overrides` (see the module docstring)."""
    jobs = grid(overrides)
    costs: list[JobCost] = []
    datasets: dict[str, list[Any]] = {}  # dataset config -> its problems, loaded once per sweep
    with tempfile.TemporaryDirectory(prefix="pdr-dryrun-") as tmp:
        for i, job in enumerate(jobs):
            costs.append(_job_cost(job, problems, samples, fill, datasets, Path(tmp) / f"job-{i}"))
            log.info("job %d/%d: %s", i + 1, len(jobs), " ".join(job))
    return mark_duplicates(costs)


def _job_cost(job: list[str], problems: int, samples: int, fill: float | None, datasets: dict[str, list[Any]],
              run_dir: Path) -> JobCost:
    """One job's cost: measured on `problems` of its problems x `samples`, sized to the whole job."""
    from pdr.data import load_problems
    from pdr.results import config_dict, run_key

    cfg = compose_job(job)
    if fill is not None:
        cfg.engine.think_tokens = max(1, int(fill * cfg.sampling.max_tokens))
    config = config_dict(cfg)
    dkey = repr(config["dataset"])
    if dkey not in datasets:
        datasets[dkey] = load_problems(cfg.dataset)
    full = datasets[dkey]
    ledgers = _simulate(cfg, _spread(full, problems), min(samples, cfg.samples), run_dir)
    per_ps = {k: sum(b[k] for b in ledgers) / len(ledgers) for k in ledgers[0]} if ledgers else {}
    return JobCost(job, run_key(config), len(full), cfg.samples, cfg.sampling.max_tokens, len(ledgers), per_ps)


def mark_duplicates(costs: list[JobCost]) -> list[JobCost]:
    """Set `duplicate_of` (the index of the first job with the same run key) on each later repeat."""
    seen: dict[str, int] = {}
    for i, c in enumerate(costs):
        c.duplicate_of = seen.get(c.run_key)
        seen.setdefault(c.run_key, i)
    return costs


def _fmt(x: float) -> str:
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:,.2f}{unit}"
    return f"{x:,.0f}"


def _label(job: list[str], common: set[str]) -> str:
    return " ".join(a for a in job if a not in common) or "(base config)"


def _tot(key: str, group: list[JobCost]) -> float:
    return sum(c.total(key) for c in group)


def report(costs: list[JobCost], tokens_per_s: float | None = None, start: int = 0, table: bool = True) -> str:
    """The printed per-job table (numbered from `start`) and the totals over all jobs and over
    unique configs (a job whose config repeats an earlier one, `duplicate_of`, counted once)."""
    if not costs:
        return "no jobs"
    common = set(costs[0].overrides).intersection(*(set(c.overrides) for c in costs[1:])) if len(costs) > 1 else set()
    lines = []
    hdr = (f"{'#':>3}  {'problems x samples':>18}  {'seq/ps':>8}  {'total/ps':>9}  {'out/ps':>8}  {'trunc/ps':>8}  "
           f"{'total tokens':>12}  {'output tokens':>13}  {'cap output':>11}  job")
    if table:
        lines += [hdr, "-" * len(hdr)]
        for i, c in enumerate(costs, start):
            dup = f"  [same config as job {c.duplicate_of}]" if c.duplicate_of is not None else ""
            lines.append(
                f"{i:>3}  {f'{c.problems} x {c.samples}':>18}  {_fmt(c.per_ps.get('seq_tokens', 0)):>8}  "
                f"{_fmt(c.per_ps.get('total_tokens', 0)):>9}  {_fmt(c.per_ps.get('total_output_tokens', 0)):>8}  "
                f"{c.per_ps.get('truncated', 0):>8.2f}  {_fmt(c.total('total_tokens')):>12}  "
                f"{_fmt(c.total('total_output_tokens')):>13}  {_fmt(c.total('cap_total_output_tokens')):>11}  "
                f"{_label(c.overrides, common)}{dup}")
        lines.append("-" * len(hdr))
    uniq = [c for c in costs if c.duplicate_of is None]
    for name, group in (("all jobs", costs), ("unique configs", uniq)):
        lines.append(
            f"{name:>16} ({len(group)}): total tokens {_fmt(_tot('total_tokens', group))} "
            f"(output {_fmt(_tot('total_output_tokens', group))}, prompt {_fmt(_tot('prompt_tokens', group))}, "
            f"cached prompt {_fmt(_tot('cached_tokens', group))}) · sequential tokens "
            f"{_fmt(_tot('seq_tokens', group))} · completions {_fmt(_tot('completions', group))} "
            f"· cap output {_fmt(_tot('cap_total_output_tokens', group))}")
    if tokens_per_s:
        lines.append(gpu_hours(costs, tokens_per_s))
    return "\n".join(lines)


def gpu_hours(costs: list[JobCost], tokens_per_s: float) -> str:
    """GPU time of the unique configs at a generation throughput: estimate and cap."""
    uniq = [c for c in costs if c.duplicate_of is None]
    out, cap = _tot("total_output_tokens", uniq), _tot("cap_total_output_tokens", uniq)
    return (f"GPU time at {tokens_per_s:,.0f} generated tokens/s (unique configs): ~{out / tokens_per_s / 3600:,.1f} h "
            f"estimated · at most {cap / tokens_per_s / 3600:,.1f} h (every call at its cap)")


def write_csv(costs: list[JobCost], path: Path) -> None:
    keys = sorted({k for c in costs for k in c.per_ps})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["job", "overrides", "run_key", "duplicate_of", "problems", "samples", "max_tokens", "measured"]
                   + [f"per_ps.{k}" for k in keys] + [f"total.{k}" for k in keys])
        for i, c in enumerate(costs):
            w.writerow([i, " ".join(c.overrides), c.run_key, "" if c.duplicate_of is None else c.duplicate_of,
                        c.problems, c.samples, c.max_tokens, c.measured]
                       + [c.per_ps.get(k, 0.0) for k in keys] + [c.total(k) for k in keys])


def main(argv: list[str] | None = None) -> int:
    """CLI: see the module docstring. Prints the per-job table and the totals."""
    p = argparse.ArgumentParser(prog="python -m pdr.dryrun", description=__doc__.split("\n\n")[0],
                                epilog="Other arguments are Hydra overrides, as for python -m pdr.run -m.")
    p.add_argument("--problems", type=int, default=6, help="problems simulated per job, spread over the set (default 6)")
    p.add_argument("--samples", type=int, default=2, help="samples simulated per problem (default 2)")
    p.add_argument("--fill", type=float, default=None,
                   help="calibrate the sim: mean draft thinking = FILL x sampling.max_tokens (e.g. 0.5)")
    p.add_argument("--tokens-per-s", type=float, default=None, help="server generation throughput, for GPU hours")
    p.add_argument("--experiments", default=None,
                   help="comma-separated experiment presets to estimate together (each with its own sweep), "
                        "e.g. paper_long_cot,paper_sr,paper_pdr,paper_pdr_distill; totals are deduplicated")
    p.add_argument("--csv", type=Path, default=None, help="also write the per-job numbers to this CSV")
    p.add_argument("--config-dir", "-cd", default=None,
                   help="a folder of your own configs, searched before the shipped ones (as for python -m pdr.run)")
    args, rest = p.parse_known_args(argv)
    rest = [a for a in rest if a not in ("-m", "--multirun")]
    unknown = [a for a in rest if a.startswith("-")]
    if unknown:
        p.error(f"unknown option(s): {' '.join(unknown)}")
    if args.problems < 1 or args.samples < 1:
        p.error("--problems and --samples must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pdr.config import search_path
    from pdr.errors import PdrError

    try:
        search_path.use_command_line(
            ([f"--config-dir={args.config_dir}"] if args.config_dir else []) + rest)
        search_path.user_entries()
    except PdrError as exc:
        print(f"pdr.dryrun: {exc}", file=sys.stderr)
        return 2

    overrides, dropped = _split_argv(rest)
    started = time.perf_counter()
    studies = [[f"+experiment={e}"] for e in args.experiments.split(",") if e] if args.experiments else [[]]
    costs: list[JobCost] = []
    calib = f"--fill {args.fill}" if args.fill is not None else "the sim's default lengths (see --fill)"
    print(f"pdr dry run, measured on engine=sim ({calib}) with {args.problems} problems x {args.samples} samples "
          "per job, scaled to each job's problems x samples.\nTokens are means per problem-sample (ps) or totals "
          "for the job; SIMULATED lengths, not a model's. cap output = every call at its max_tokens.")
    if dropped:
        print(f"ignored for the estimate (the dry run uses engine=sim): {' '.join(dropped)}")
    for extra in studies:
        try:
            part = estimate(extra + overrides, args.problems, args.samples, args.fill)
        except PdrError as exc:
            print(f"pdr.dryrun: {exc}", file=sys.stderr)
            return 2
        offset = len(costs)
        costs = mark_duplicates(costs + part)
        print(f"\n`python -m pdr.run -m {' '.join(extra + rest)}`: {len(part)} jobs")
        print(report(costs[offset:], None, start=offset))
    if len(studies) > 1:
        print(f"\nall {len(studies)} experiments:")
        print(report(costs, None, table=False))
    if args.tokens_per_s:
        print(gpu_hours(costs, args.tokens_per_s))
    if args.csv:
        write_csv(costs, args.csv)
        print(f"per-job numbers: {args.csv}")
    print(f"(dry run took {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
