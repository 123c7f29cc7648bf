"""`python -m pdr.report`: accuracy-vs-tokens Pareto report of MLflow runs.

    python -m pdr.report --experiment quickstart
    python -m pdr.report --parent-run RUN_ID --out reports/my-sweep      # a sweep; logged to its parent
    python -m pdr.report --experiment paper-aime --tracking-uri http://127.0.0.1:5000 --group-by strategy

Reads the runs (params, metrics, tags) through `pdr.review.store.load_runs`, and writes:

- `pareto_seq_tokens.png`, `pareto_total_tokens.png`: accuracy (mean@samples) with its bootstrap
  CI bars (`accuracy_ci_low/high`) against the mean sequential / total tokens per problem-sample,
  one colour per group (default: strategy, `sr+ea` for SR with error analysis), one panel per
  dataset (runs on different benchmarks are never compared), each group's Pareto frontier drawn
  as a staircase through its filled points;
- `pareto.csv`, `pareto.md`: the table behind the plots;
- `pareto.html`: one self-contained page (PNGs embedded as base64, the table, the definitions).

Pareto frontier (per group, per dataset and token axis): a run is on the frontier when no other
run of the group reaches at least its accuracy with at most its tokens (and is strictly better on
one of the two). Columns `frontier_seq` / `frontier_total` mark it; `overall_frontier_*` is the
same across all groups of a dataset. The frontier uses point estimates; read the CI bars before
calling one strategy better (or use the paired bootstrap, notebooks/pareto.ipynb).

Runs of the simulated engine (tag simulated=true) are marked "SIMULATED engine — not model
results" on every plot and page. `build_report()` is the core, used by the sweep callback and the
notebooks. Plots use matplotlib's Agg canvas directly (no pyplot state, no backend switch).
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

SIMULATED_MARK = "SIMULATED engine — not model results"
AXES = {"seq_tokens": "sequential tokens (critical path, mean per problem-sample)",
        "total_tokens": "total tokens (all calls, mean per problem-sample)"}
# Params that say where/how a run was logged, not what it computed: never used in point labels.
_LABEL_SKIP = ("tracking.", "output_dir", "resume", "progress", "notes", "cache.", "grading.", "extra",
               "hydra.", "engine.url", "engine.timeout_s", "engine.max_retries", "engine.max_concurrency",
               "engine.max_error_rate", "engine.api_key_env", "engine.launch", "engine.server_args", "metrics.")
_TABLE_COLS = ["dataset", "group", "label", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "seq_tokens",
               "total_tokens", "frontier_seq", "frontier_total", "overall_frontier_seq", "overall_frontier_total",
               "problems", "samples", "simulated", "status", "run_name", "run_id"]


# --- table ------------------------------------------------------------------------------------
def pareto_mask(tokens: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """For each point, whether it is non-dominated: no other point has tokens <= its tokens and
    accuracy >= its accuracy with at least one of the two strict. Equal points are all kept."""
    pts = list(zip(tokens, accuracy, strict=True))
    out = []
    for i, (t, a) in enumerate(pts):
        dominated = any((t2 <= t and a2 >= a and (t2 < t or a2 > a)) for j, (t2, a2) in enumerate(pts) if j != i)
        out.append(not dominated)
    return out


def _short_labels(df: pd.DataFrame) -> list[str]:
    """Each run's label: the values of the params that differ between the runs of `df` (short key
    names); "" when none differ."""
    keys = [c for c in df.columns if c.startswith("params.")
            and not c[len("params."):].startswith(_LABEL_SKIP) and c != "params.strategy.name"]
    varying = [c for c in keys if df[c].astype(str).nunique(dropna=False) > 1]
    shorts = [c.rsplit(".", 1)[-1] for c in varying]
    names = [s if shorts.count(s) == 1 else c[len("params."):] for s, c in zip(shorts, varying, strict=True)]
    labels = []
    for _, row in df.iterrows():
        parts = [f"{n}={row[c]}" for n, c in zip(names, varying, strict=True)
                 if isinstance(row[c], str) and row[c] not in ("", "null", "None")]
        labels.append(", ".join(parts))
    return labels


def _labels(df: pd.DataFrame, groups: pd.Series) -> list[str]:
    """Labels from what differs within each (dataset, group); a group's only run is named by its group
    plus what differs between runs of all groups in the params every run has (e.g. the budget)."""
    import pandas as pd

    out = pd.Series([""] * len(df), index=df.index, dtype=object)
    shared = [c for c in df.columns if c.startswith("params.") and df[c].notna().all()]
    across = _short_labels(df[["run_id", "run_name", *shared]])
    for _, idx in df.groupby([df.get("dataset", pd.Series([""] * len(df), index=df.index)), groups]).groups.items():
        part = df.loc[idx]
        labels = _short_labels(part) if len(part) > 1 else [""]
        for i, lab in zip(idx, labels, strict=True):
            out[i] = lab or across[df.index.get_loc(i)] or str(groups[i])
    return out.tolist()


def pareto_table(runs: pd.DataFrame, group_by: str = "variant", include_unfinished: bool = False) -> pd.DataFrame:
    """The report's table: one row per run with accuracy, its CI and both token budgets, the
    group, a label of what differs between runs, and frontier flags (module docstring).

    `runs` comes from `pdr.review.store.load_runs`; `group_by` is one of its columns (e.g.
    `variant`, `strategy`) or a param key (`strategy.distill` -> `params.strategy.distill`).
    Runs without accuracy or token metrics (unfinished, failed) are dropped unless
    `include_unfinished` (they still need the metrics). Sorted by dataset, group, seq_tokens.
    """
    import pandas as pd

    need = ["metrics.accuracy", "metrics.seq_tokens", "metrics.total_tokens"]
    if runs.empty or any(c not in runs for c in need):
        return pd.DataFrame(columns=_TABLE_COLS)
    df = runs.dropna(subset=need)
    if not include_unfinished:
        df = df[df["status"] == "FINISHED"]
    if "is_sweep_parent" in df:
        df = df[~df["is_sweep_parent"].astype(bool)]
    if df.empty:
        return pd.DataFrame(columns=_TABLE_COLS)
    gcol = group_by if group_by in df else f"params.{group_by}"
    if gcol not in df:
        raise KeyError(f"--group-by {group_by}: no such column or param (try variant, strategy, dataset, "
                       "or a param key like strategy.distill)")
    df = df.reset_index(drop=True)
    out = pd.DataFrame({
        "dataset": df["dataset"] if "dataset" in df else "",
        "group": df[gcol].fillna("?").astype(str),
        "label": _labels(df, df[gcol].fillna("?").astype(str)),
        "accuracy": df["metrics.accuracy"].astype(float),
        "accuracy_ci_low": df.get("metrics.accuracy_ci_low", df["metrics.accuracy"]).astype(float),
        "accuracy_ci_high": df.get("metrics.accuracy_ci_high", df["metrics.accuracy"]).astype(float),
        "seq_tokens": df["metrics.seq_tokens"].astype(float),
        "total_tokens": df["metrics.total_tokens"].astype(float),
        "problems": df.get("metrics.problems", pd.Series([math.nan] * len(df))),
        "samples": df.get("params.samples", pd.Series([""] * len(df))),
        "simulated": df["simulated"].astype(bool) if "simulated" in df else False,
        "status": df["status"],
        "run_name": df["run_name"],
        "run_id": df["run_id"],
    })
    if "model" in df and df["model"].nunique() > 1:  # runs of different models are different curves
        out["group"] = df["model"].astype(str) + "/" + out["group"]
    for axis, short in (("seq_tokens", "seq"), ("total_tokens", "total")):
        out[f"frontier_{short}"] = False
        out[f"overall_frontier_{short}"] = False
        for _, part in out.groupby("dataset"):
            mask = pareto_mask(part[axis].tolist(), part["accuracy"].tolist())
            out.loc[part.index, f"overall_frontier_{short}"] = mask
            for _, grp in part.groupby("group"):
                out.loc[grp.index, f"frontier_{short}"] = pareto_mask(grp[axis].tolist(), grp["accuracy"].tolist())
    return out.sort_values(["dataset", "group", "seq_tokens"], kind="stable").reset_index(drop=True)[_TABLE_COLS]


# --- plots ------------------------------------------------------------------------------------
def plot_pareto(table: pd.DataFrame, axis: str = "seq_tokens", title: str | None = None) -> Figure:
    """One figure: accuracy vs `axis` (seq_tokens | total_tokens) with CI bars, one panel per
    dataset, one colour per group, each group's frontier as a staircase (filled points: on the
    frontier; hollow: dominated). Simulated runs put a watermark on the figure."""
    from matplotlib.figure import Figure

    if axis not in AXES:
        raise ValueError(f"axis={axis!r}: choose one of {', '.join(AXES)}")
    short = "seq" if axis == "seq_tokens" else "total"
    datasets = sorted(table["dataset"].unique()) or [""]
    groups = sorted(table["group"].unique())
    colors = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    markers = "osD^vP*Xh<>"
    fig = Figure(figsize=(6.4 * len(datasets), 4.8), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, ds in zip(axes, datasets, strict=True):
        part = table[table["dataset"] == ds]
        for gi, g in enumerate(groups):
            grp = part[part["group"] == g].sort_values(axis)
            if grp.empty:
                continue
            c, m = colors[g], markers[gi % len(markers)]
            yerr = [(grp["accuracy"] - grp["accuracy_ci_low"]).clip(lower=0),
                    (grp["accuracy_ci_high"] - grp["accuracy"]).clip(lower=0)]
            ax.errorbar(grp[axis], grp["accuracy"], yerr=yerr, fmt="none", ecolor=c, alpha=0.5, capsize=3, lw=1)
            on = grp[grp[f"frontier_{short}"]]
            off = grp[~grp[f"frontier_{short}"]]
            ax.scatter(on[axis], on["accuracy"], color=c, marker=m, s=45, zorder=3, label=g)
            ax.scatter(off[axis], off["accuracy"], facecolors="none", edgecolors=c, marker=m, s=45, zorder=3)
            if len(on) > 1:
                ax.plot(on[axis], on["accuracy"], color=c, drawstyle="steps-post", lw=1.5, alpha=0.8)
            if len(part) <= 16:
                for _, r in grp.iterrows():
                    ax.annotate(_clip(r["label"], 40), (r[axis], r["accuracy"]), fontsize=6, alpha=0.75,
                                xytext=(4, 3), textcoords="offset points")
        vals = part[axis]
        if len(vals) and vals.min() > 0 and vals.max() / vals.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(AXES[axis])
        ax.set_ylabel("accuracy (mean@samples, CI bars)")
        ax.set_title(f"{ds + ': ' if ds else ''}filled = on its group's Pareto frontier", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    sim = bool(table["simulated"].any()) if len(table) else False
    head = title or "Pareto report"
    if sim:
        head += f"  [{SIMULATED_MARK}]"
        fig.text(0.5, 0.5, SIMULATED_MARK, fontsize=min(40, 18 * len(datasets)), color="red", alpha=0.15, rotation=25,
                 ha="center", va="center", zorder=0)
    fig.suptitle(f"{head}\naccuracy vs {axis.replace('_', ' ')}", fontsize=10, color="darkred" if sim else "black")
    return fig


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --- files ------------------------------------------------------------------------------------
def _markdown(table: pd.DataFrame) -> str:
    cols = ["dataset", "group", "label", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "seq_tokens",
            "total_tokens", "frontier_seq", "frontier_total", "simulated", "run_id"]

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) <= 1.0 else f"{v:,.0f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _html(table: pd.DataFrame, images: dict[str, Path], title: str) -> str:
    sim = bool(table["simulated"].any()) if len(table) else False
    esc = html.escape
    shown = table.copy()
    for c in ("accuracy", "accuracy_ci_low", "accuracy_ci_high"):
        shown[c] = shown[c].map(lambda v: f"{v:.3f}")
    for c in ("seq_tokens", "total_tokens"):
        shown[c] = shown[c].map(lambda v: f"{v:,.0f}")
    table_html = shown.to_html(index=False, escape=True, classes="runs", border=0)
    imgs = "\n".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption>{esc(name)}</figcaption></figure>'
        for name, path in images.items())
    banner = f'<div class="sim">{esc(SIMULATED_MARK)}</div>' if sim else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.sim {{ background: #fdd; border: 2px solid #c00; color: #900; font-weight: bold; padding: .5em 1em;
       margin: 1em 0; font-size: 1.2em; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table.runs {{ border-collapse: collapse; font-size: 12px; }}
table.runs th, table.runs td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
table.runs td:nth-child(3) {{ text-align: left; }}
p.note {{ max-width: 60em; font-size: 13px; }}
</style></head><body>
<h1>{esc(title)}</h1>
{banner}
<p class="note">Accuracy is mean@samples with a problem-level bootstrap CI. Sequential tokens: input + output
tokens on the critical path (per parallel step, the slowest branch); total tokens: all calls. Both are means per
problem-sample. A run is on its group's Pareto frontier when no run of the group reaches at least its accuracy
with at most its tokens; frontier flags use point estimates, so read the CI bars before ranking two runs.</p>
{imgs}
<h2>Runs ({len(table)})</h2>
{table_html}
</body></html>
"""


def build_report(runs: pd.DataFrame, out_dir: Path, group_by: str = "variant", title: str | None = None,
                 include_unfinished: bool = False) -> dict[str, Path]:
    """Write the Pareto report of `runs` (a `load_runs` DataFrame) into `out_dir`.

    Returns the written files by kind: `seq_png`, `total_png`, `html`, `csv`, `md`. Raises
    ValueError when no run has the accuracy and token metrics (nothing to plot)."""
    out_dir = Path(out_dir)
    table = pareto_table(runs, group_by, include_unfinished)
    if table.empty:
        raise ValueError("no finished runs with accuracy and token metrics to report")
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or "Pareto report"
    paths: dict[str, Path] = {}
    for axis, key in (("seq_tokens", "seq_png"), ("total_tokens", "total_png")):
        fig = plot_pareto(table, axis, title)
        path = out_dir / f"pareto_{axis}.png"
        fig.savefig(path, dpi=110)
        paths[key] = path
    paths["csv"] = out_dir / "pareto.csv"
    table.to_csv(paths["csv"], index=False)
    paths["md"] = out_dir / "pareto.md"
    head = f"# {title}\n\n" + (f"**{SIMULATED_MARK}**\n\n" if table["simulated"].any() else "")
    paths["md"].write_text(head + _markdown(table), encoding="utf-8")
    paths["html"] = out_dir / "pareto.html"
    paths["html"].write_text(_html(table, {"accuracy vs sequential tokens": paths["seq_png"],
                                           "accuracy vs total tokens": paths["total_png"]}, title), encoding="utf-8")
    log.info("report written to %s", out_dir)
    return paths


# --- CLI --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`python -m pdr.report`: see the module docstring. Prints the files written and the frontier."""
    from pdr.review.store import load_runs
    from pdr.tracking import store

    p = argparse.ArgumentParser(prog="python -m pdr.report", description=__doc__.split("\n\n")[0])
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--experiment", help="MLflow experiment name (all its runs)")
    sel.add_argument("--parent-run", help="a sweep's parent run id (its child runs); the report is logged to it")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--out", type=Path, help="output directory (default: reports/<experiment or parent run>)")
    p.add_argument("--group-by", default="variant",
                   help="colour/frontier grouping: variant (default), strategy, model, or a param key like strategy.distill")
    p.add_argument("--title", help="report title")
    p.add_argument("--include-unfinished", action="store_true", help="also plot runs not FINISHED (if they have metrics)")
    p.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    uri = args.tracking_uri or store.default_store_uri()
    if not args.experiment and not args.parent_run:
        names = store.list_experiments(uri) if not uri.startswith("sqlite:") or Path(uri[10:]).exists() else []
        print(f"pdr.report: give --experiment NAME or --parent-run ID (experiments in {uri}: "
              f"{', '.join(names) or 'none'})", file=sys.stderr)
        return 2
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        print(f"pdr.report: no MLflow store at {uri} (run from the directory where you ran pdr.run, "
              "or pass --tracking-uri)", file=sys.stderr)
        return 2
    try:
        runs = load_runs(uri, experiment=args.experiment, parent_run_id=args.parent_run)
    except LookupError as exc:
        print(f"pdr.report: {exc}", file=sys.stderr)
        return 2
    name = args.experiment or f"sweep-{args.parent_run[:8]}"
    out = args.out or Path("reports") / name
    title = args.title or (f"experiment {args.experiment}" if args.experiment else f"sweep {args.parent_run}")
    try:
        paths = build_report(runs, out, args.group_by, title, args.include_unfinished)
    except (ValueError, KeyError) as exc:
        print(f"pdr.report: {exc} ({len(runs)} runs found)", file=sys.stderr)
        return 1
    if args.parent_run and not args.no_log:
        store.log_artifacts(uri, args.parent_run, list(paths.values()), artifact_path="report")
    table = pareto_table(runs, args.group_by, args.include_unfinished)
    sim = bool(table["simulated"].any())
    print(f"pdr.report: {len(table)} runs from {uri}" + (f"   [{SIMULATED_MARK}]" if sim else ""))
    front = table[table["frontier_seq"] | table["frontier_total"]]
    print("frontier runs (acc [CI], seq tokens, total tokens; * = on that axis' frontier):")
    for _, r in front.iterrows():
        print(f"  {r['dataset']:<10} {r['group']:<10} {r['accuracy']:.3f} [{r['accuracy_ci_low']:.3f}, "
              f"{r['accuracy_ci_high']:.3f}]  seq {r['seq_tokens']:>10,.0f}{'*' if r['frontier_seq'] else ' '}"
              f"  total {r['total_tokens']:>11,.0f}{'*' if r['frontier_total'] else ' '}  {_clip(r['label'], 60)}")
    for kind, path in paths.items():
        print(f"{kind:>9}: {path}")
    if args.parent_run and not args.no_log:
        print(f"logged to parent run {args.parent_run} under report/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
