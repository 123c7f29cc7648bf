"""`python -m pdr.export episodes RUN_OR_SWEEP [RUN_OR_SWEEP ...] --format verl|verl-sft|trl|jsonl [flags]`.

    python -m pdr.export episodes outputs/2026-01-01/12-00-00_ab12cd --format verl --out exports/aime-final
    python -m pdr.export episodes multirun/2026-01-01/12-00-00 --format trl --calls drafts --correct-only

Exit status 0 on success, 2 on a refused export (the message names the cause and the fix).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pdr.export.select import CALLS, Selection
from pdr.export.sources import ExportError

log = logging.getLogger("pdr.export")


def parser() -> argparse.ArgumentParser:
    from pdr.export.formats import FORMATS

    p = argparse.ArgumentParser(prog="python -m pdr.export", description="Training data from finished pdr runs.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("episodes", help="one record per model call, in a trainer's dataset format (docs/rl.md)")
    e.add_argument("sources", nargs="+", type=Path, metavar="RUN_OR_SWEEP",
                   help="run directories, or directories above them (a multirun sweep, outputs/)")
    e.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    e.add_argument("--out", type=Path, default=None, help="output directory (default: exports/<format>-<time>)")
    e.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    e.add_argument("--calls", choices=CALLS, default="final",
                   help="final: the call that gave each answer (default); drafts: every draft/refine; all: every call")
    e.add_argument("--correct-only", action="store_true", help="only records with reward 1 (SFT, rejection sampling)")
    e.add_argument("--balance-per-problem", type=int, default=None, metavar="N",
                   help="at most N records per problem, half correct and half wrong where possible")
    e.add_argument("--exclude-truncated", action="store_true", help="drop outputs that hit their token cap")
    e.add_argument("--seed", type=int, default=0, help="which records --balance-per-problem keeps")
    e.add_argument("--allow-simulated", action="store_true",
                   help="accept engine=sim runs (tests and demos only: their text is not model data)")
    e.add_argument("--allow-partial", action="store_true",
                   help="accept unfinished runs (their finished problem-samples)")
    e.add_argument("--data-source", default=None,
                   help="verl's data_source value (default pdr/<dataset>); verl picks its reward function by it")
    e.add_argument("--no-mlflow", action="store_true", help="do not log the export as an MLflow run")
    e.add_argument("--tracking-uri", default=None, help="MLflow store (default: the source runs' store)")
    e.add_argument("--experiment", default=None, help="MLflow experiment (default: pdr-export)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import time

    from pdr.export.episodes import export_episodes

    out = args.out or Path("exports") / f"{args.fmt}-{time.strftime('%Y%m%d-%H%M%S')}"
    sel = Selection(calls=args.calls, correct_only=args.correct_only, exclude_truncated=args.exclude_truncated,
                    balance_per_problem=args.balance_per_problem, seed=args.seed)
    if args.fmt == "trl":  # save_to_disk's progress bars say nothing about a few seconds' work
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    try:
        m = export_episodes(args.sources, args.fmt, out, sel, allow_simulated=args.allow_simulated,
                            allow_partial=args.allow_partial, data_source=args.data_source, mlflow=not args.no_mlflow,
                            tracking_uri=args.tracking_uri, experiment=args.experiment, overwrite=args.overwrite)
    except ExportError as exc:
        print(f"pdr.export: {exc}", file=sys.stderr)
        return 2
    c, rw = m["counts"], m["rewards"]
    sim = "  [SIMULATED engine: not model data]" if m["simulated"] else ""
    sim += "  [ORACLE workspaces: chosen with the gold answers]" if m["oracle"] else ""
    print(f"exported {c['records']} records ({', '.join(f'{k} {v}' for k, v in c['by_kind'].items())}; "
          f"{c['final']} final) from {len(m['sources'])} run(s), {c['problems']} problems{sim}")
    if rw["rewarded"]:
        print(f"reward  mean {rw['mean']:.3f} over {rw['rewarded']} rewarded records ({rw['unrewarded']} without)")
    for f in m["files"]:
        print(f"wrote   {f['path']}  ({f['rows']} rows, {f['bytes'] / 1e6:.2f} MB)")
    print(f"manifest {out / 'manifest.json'}")
    if m["mlflow"]:
        print(f"MLflow  run {m['mlflow']['run_id']} in experiment {m['mlflow']['experiment']!r} ({m['mlflow']['tracking_uri']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
