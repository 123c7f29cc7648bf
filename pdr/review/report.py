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
# Oracle runs build workspaces from gold-correct/-incorrect drafts (strategy.selection=oracle_*):
# an analysis of verification ability, never a result a deployable system reaches.
ORACLE_MARK = "ORACLE workspaces (gold answers used) — analysis runs, marked [oracle]"
AXES = {"seq_tokens": "sequential tokens (critical path, mean per problem-sample)",
        "total_tokens": "total tokens (all calls, mean per problem-sample)"}
# Params that say where/how a run was logged, not what it computed: never used in point labels.
_LABEL_SKIP = ("tracking.", "output_dir", "resume", "progress", "notes", "cache.", "grading.", "extra",
               "hydra.", "engine.url", "engine.timeout_s", "engine.max_retries", "engine.max_concurrency",
               "engine.max_error_rate", "engine.api_key_env", "engine.launch", "engine.server_args", "metrics.")
_TABLE_COLS = ["n", "dataset", "strategy", "group", "label", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "seq_tokens",
               "total_tokens", "frontier_seq", "frontier_total", "overall_frontier_seq", "overall_frontier_total",
               "problems", "samples", "runs", "simulated", "oracle", "status", "run_name", "run_id"]


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


# Budget-like keys: they trace a curve along the token axis, so they label points but never colour them.
_BUDGET_KEYS = ("sampling.max_tokens", "strategy.workspace_tokens")


def _param_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("params.")
            and not c[len("params."):].startswith(_LABEL_SKIP) and c != "params.strategy.name"]


def varying_keys(df: pd.DataFrame) -> list[str]:
    """The param keys (without `params.`) whose values differ between the runs of `df` (a sweep's
    axes, found from the jobs' params), fewest distinct values first. Keys only some runs have
    (e.g. `strategy.widths` next to long CoT runs) count when they differ where they are set."""
    out = []
    for c in _param_cols(df):
        vals = df[c].dropna().astype(str)
        vals = vals[~vals.isin(["", "null", "None"])]
        if vals.nunique() > 1:
            out.append((vals.nunique(), c[len("params."):]))
    # Budgets last: the configuration first, then the cap it ran at.
    return [k for _, k in sorted(out, key=lambda t: (t[1] in _BUDGET_KEYS, t[0], t[1]))]


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """`strategy.distill` -> `distill`, unless two keys share their last part."""
    shorts = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if shorts.count(s) == 1 else k) for k, s in zip(keys, shorts, strict=True)}


def _labels(df: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Each run's label: `key=value` of the varying `keys` only (short names), "" when none."""
    names = _short_names(keys)
    labels = []
    for _, row in df.iterrows():
        parts = []
        for k in keys:
            v = row.get(f"params.{k}")
            if isinstance(v, str) and v not in ("", "null", "None"):
                parts.append(f"{names[k]}={v}")
        labels.append(", ".join(parts))
    return labels


def _auto_groups(df: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Colour groups for `group_by=auto`: the strategy (variant), split by the varying non-budget
    key with the fewest values (e.g. `pdr distill=top_k_per_sample`); budgets stay on the x axis."""
    groups = df["variant"].fillna("?").astype(str) if "variant" in df else df.get("strategy", "?")
    colour_keys = [k for k in keys if k not in _BUDGET_KEYS and k != "seed"]
    if colour_keys:
        k = colour_keys[0]
        name = _short_names(keys)[k]
        vals = df[f"params.{k}"].astype(str)
        has = df[f"params.{k}"].notna() & ~vals.isin(["", "null", "None"])
        groups = groups.where(~has, groups + " " + name + "=" + vals)
    return groups


def _merge_identical(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: runs with the same run key (tag `run_key`: the hash of what
    determines the results) are merged, the newest kept, `runs` counting them."""
    key = df["tags.run_key"].fillna(df["run_id"]) if "tags.run_key" in df else df["run_id"]
    if "dataset" in df:
        key = key + "|" + df["dataset"].astype(str)
    df = df.assign(_key=key, runs=key.map(key.value_counts()))
    order = df.sort_values("start_time", kind="stable") if "start_time" in df else df
    return order.drop_duplicates("_key", keep="last").drop(columns="_key").sort_index()


def pareto_table(runs: pd.DataFrame, group_by: str = "auto", include_unfinished: bool = False) -> pd.DataFrame:
    """The report's table: one row per configuration with accuracy, its CI and both token budgets,
    the colour group, a label naming the varying keys' values, a point number `n`, and frontier
    flags (module docstring). Runs of one configuration (same run key) are merged (`runs`).

    `runs` comes from `pdr.review.store.load_runs`; `group_by` is `auto` (the strategy, split by
    the varying key with the fewest values), one of its columns (e.g. `variant`, `strategy`) or a
    param key (`strategy.distill` -> `params.strategy.distill`). Frontiers are per strategy
    (`variant`) whatever the colouring.
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
    if group_by != "auto" and gcol not in df:
        raise KeyError(f"--group-by {group_by}: no such column or param (try auto, variant, strategy, dataset, "
                       "or a param key like strategy.distill)")
    df = _merge_identical(df).reset_index(drop=True)
    keys = varying_keys(df)
    groups = _auto_groups(df, keys) if group_by == "auto" else df[gcol].fillna("?").astype(str)
    strategy = df["variant"] if "variant" in df else groups
    out = pd.DataFrame({
        "n": 0,
        "dataset": df["dataset"] if "dataset" in df else "",
        "strategy": strategy.fillna("?").astype(str),
        "group": groups.fillna("?").astype(str),
        "label": _labels(df, keys),
        "accuracy": df["metrics.accuracy"].astype(float),
        "accuracy_ci_low": df.get("metrics.accuracy_ci_low", df["metrics.accuracy"]).astype(float),
        "accuracy_ci_high": df.get("metrics.accuracy_ci_high", df["metrics.accuracy"]).astype(float),
        "seq_tokens": df["metrics.seq_tokens"].astype(float),
        "total_tokens": df["metrics.total_tokens"].astype(float),
        "problems": df.get("metrics.problems", pd.Series([math.nan] * len(df))),
        "samples": df.get("params.samples", pd.Series([""] * len(df))),
        "runs": df["runs"],
        "simulated": df["simulated"].astype(bool) if "simulated" in df else False,
        "oracle": df["oracle"].astype(bool) if "oracle" in df else False,
        "status": df["status"],
        "run_name": df["run_name"],
        "run_id": df["run_id"],
    })
    if bool(out["oracle"].any()):  # oracle runs are their own curves, labelled as such
        oracle = out["oracle"].astype(bool)
        for col in ("group", "strategy", "label"):
            out.loc[oracle, col] = out.loc[oracle, col].astype(str) + " [oracle]"
    if "model" in df and df["model"].nunique() > 1:  # runs of different models are different curves
        out["group"] = df["model"].astype(str) + "/" + out["group"]
        out["strategy"] = df["model"].astype(str) + "/" + out["strategy"]
    for axis, short in (("seq_tokens", "seq"), ("total_tokens", "total")):
        out[f"frontier_{short}"] = False
        out[f"overall_frontier_{short}"] = False
        for _, part in out.groupby("dataset"):
            mask = pareto_mask(part[axis].tolist(), part["accuracy"].tolist())
            out.loc[part.index, f"overall_frontier_{short}"] = mask
            for _, grp in part.groupby("strategy"):
                out.loc[grp.index, f"frontier_{short}"] = pareto_mask(grp[axis].tolist(), grp["accuracy"].tolist())
    out = out.sort_values(["dataset", "group", "seq_tokens"], kind="stable").reset_index(drop=True)
    out["n"] = range(1, len(out) + 1)  # the point numbers on the plots
    out.attrs["varying_keys"] = keys
    return out[_TABLE_COLS]


# --- plots ------------------------------------------------------------------------------------
def plot_pareto(table: pd.DataFrame, axis: str = "seq_tokens", title: str | None = None) -> Figure:
    """One figure: accuracy vs `axis` (seq_tokens | total_tokens) with CI bars, one panel per
    dataset, one colour per group, each strategy's frontier as a staircase (filled points: on their
    strategy's frontier; hollow: dominated). Points carry their number `n`, placed so that no two
    numbers overlap (a number that finds no free spot is left off; its row is still in the key);
    the key on the right maps each number to its label (the varying keys). Simulated runs put a
    watermark on the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if axis not in AXES:
        raise ValueError(f"axis={axis!r}: choose one of {', '.join(AXES)}")
    short = "seq" if axis == "seq_tokens" else "total"
    datasets = sorted(table["dataset"].unique()) or [""]
    groups = sorted(table["group"].unique())
    colors = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    markers = "osD^vP*Xh<>"
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
    key_lines = len(table) + 2
    height = max(4.8, 0.16 * key_lines + 1.4)
    fig = Figure(figsize=(6.4 * len(datasets) + 4.8, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, len(datasets) + 1, width_ratios=[6.4] * len(datasets) + [4.8])
    axes = [fig.add_subplot(grid[0, i]) for i in range(len(datasets))]
    numbered: list[tuple[Any, float, float, str]] = []
    for ax, ds in zip(axes, datasets, strict=True):
        part = table[table["dataset"] == ds]
        for gi, g in enumerate(groups):
            grp = part[part["group"] == g].sort_values(axis)
            if grp.empty:
                continue
            c, m = colors[g], markers[gi % len(markers)]
            yerr = [(grp["accuracy"] - grp["accuracy_ci_low"]).clip(lower=0),
                    (grp["accuracy_ci_high"] - grp["accuracy"]).clip(lower=0)]
            ax.errorbar(grp[axis], grp["accuracy"], yerr=yerr, fmt="none", ecolor=c, alpha=0.4, capsize=3, lw=1)
            on = grp[grp[f"frontier_{short}"]]
            off = grp[~grp[f"frontier_{short}"]]
            ax.scatter(on[axis], on["accuracy"], color=c, marker=m, s=40, zorder=3, label=g if len(on) else None)
            ax.scatter(off[axis], off["accuracy"], facecolors="none", edgecolors=c, marker=m, s=40, zorder=3,
                       label=None if len(on) else g)
            numbered += [(ax, float(r[axis]), float(r["accuracy"]), str(int(r["n"]))) for _, r in grp.iterrows()]
        for si, strat in enumerate(sorted(part["strategy"].unique())):
            front = part[(part["strategy"] == strat) & part[f"frontier_{short}"]].sort_values(axis)
            if len(front) > 1:
                ax.plot(front[axis], front["accuracy"], color="0.25", ls=styles[si % len(styles)],
                        drawstyle="steps-post", lw=1.2, alpha=0.8, zorder=2, label=f"frontier: {strat}")
        vals = part[axis]
        if len(vals) and vals.min() > 0 and vals.max() / vals.min() > 20:
            ax.set_xscale("log")
        ax.margins(x=0.08, y=0.1)
        ax.set_xlabel(AXES[axis])
        ax.set_ylabel("accuracy (mean@samples, CI bars)")
        ax.set_title(f"{ds + ': ' if ds else ''}filled = on its strategy's Pareto frontier", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", framealpha=0.8)
    key_ax = fig.add_subplot(grid[0, len(datasets)])
    key_ax.axis("off")
    keys = table.attrs.get("varying_keys") or []
    head = "varying: " + (", ".join(keys) if keys else "nothing (one configuration per group)")
    key_ax.text(0, 1, _clip(head, 80), fontsize=7, va="top", ha="left", transform=key_ax.transAxes, weight="bold")
    step = 1 / max(key_lines, 25)
    for i, (_, r) in enumerate(table.iterrows()):
        text = f"{int(r['n']):>3}  {_clip(r['label'] or r['group'], 64)}" + (f"  (x{int(r['runs'])})" if r.get("runs", 1) > 1 else "")
        key_ax.text(0, 1 - (i + 1.5) * step, text, fontsize=7, va="top", ha="left", family="monospace",
                    color=colors[r["group"]], transform=key_ax.transAxes)
    sim = bool(table["simulated"].any()) if len(table) else False
    head = title or "Pareto report"
    if sim:
        head += f"  [{SIMULATED_MARK}]"
        fig.text(0.4, 0.5, SIMULATED_MARK, fontsize=min(40, 18 * len(datasets)), color="red", alpha=0.12, rotation=25,
                 ha="center", va="center", zorder=0)
    fig.suptitle(f"{head}\naccuracy vs {axis.replace('_', ' ')}", fontsize=10, color="darkred" if sim else "black")
    _place_numbers(fig, numbered)
    return fig


# Candidate offsets (points) of a point's number, tried in order.
_OFFSETS = [(4, 3), (4, -10), (-4, 3), (-4, -10), (0, 8), (0, -15), (9, -3), (-9, -3), (8, 10), (-8, 10),
            (8, -17), (-8, -17), (14, 3), (-14, 3), (0, 16), (0, -23)]


def _place_numbers(fig: Figure, points: list[tuple[Any, float, float, str]]) -> None:
    """Annotate each point with its number where its box overlaps no other number and no marker
    (greedy, left to right); points at the same spot share one annotation ("3,7"). The layout is
    frozen first, so the boxes computed here are the ones drawn."""
    fig.canvas.draw()
    fig.set_layout_engine("none")
    scale = fig.dpi / 72
    char_w, h = 4.6 * scale, 7.5 * scale  # fontsize 7 digits, in pixels
    merged: dict[tuple[Any, int, int], tuple[float, float, list[str]]] = {}
    for ax, x, y, text in points:
        px, py = ax.transData.transform((x, y))
        k = (ax, round(px / 3), round(py / 3))
        merged.setdefault(k, (x, y, []))[2].append(text)
    markers = [(ax.transData.transform((x, y)), ax) for ax, x, y, _ in points]
    taken: list[tuple[float, float, float, float]] = [(p[0] - 4 * scale, p[1] - 4 * scale, p[0] + 4 * scale,
                                                     p[1] + 4 * scale) for p, _ in markers]
    for (ax, *_), (x, y, texts) in sorted(merged.items(), key=lambda kv: kv[1][0]):
        text = ",".join(sorted(texts, key=int))
        px, py = ax.transData.transform((x, y))
        w = char_w * len(text)
        box_ax = ax.get_window_extent()
        for dx, dy in _OFFSETS:
            x0 = px + dx * scale - (w if dx < 0 else 0) - (w / 2 if dx == 0 else 0)
            y0 = py + dy * scale
            box = (x0, y0, x0 + w, y0 + h)
            inside = box_ax.x0 <= box[0] and box[2] <= box_ax.x1 and box_ax.y0 <= box[1] and box[3] <= box_ax.y1
            if inside and not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken):
                taken.append(box)
                ax.annotate(text, (x, y), xytext=((x0 - px) / scale, (y0 - py) / scale), textcoords="offset points",
                            fontsize=7, ha="left", va="bottom", color="0.15")
                break


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --- files ------------------------------------------------------------------------------------
def _markdown(table: pd.DataFrame) -> str:
    cols = ["n", "dataset", "group", "label", "runs", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "seq_tokens",
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
    if bool(table["oracle"].any()):
        banner += f'<div class="sim">{esc(ORACLE_MARK)}</div>'

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.sim {{ background: #fdd; border: 2px solid #c00; color: #900; font-weight: bold; padding: .5em 1em;
       margin: 1em 0; font-size: 1.2em; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
table.runs {{ border-collapse: collapse; font-size: 12px; }}
table.runs th, table.runs td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
table.runs td:nth-child(5) {{ text-align: left; }}
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


def build_report(runs: pd.DataFrame, out_dir: Path, group_by: str = "auto", title: str | None = None,
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
    head += f"**{ORACLE_MARK}**\n\n" if table["oracle"].any() else ""
    paths["md"].write_text(head + _markdown(table), encoding="utf-8")
    paths["html"] = out_dir / "pareto.html"
    paths["html"].write_text(_html(table, {"accuracy vs sequential tokens": paths["seq_png"],
                                           "accuracy vs total tokens": paths["total_png"]}, title), encoding="utf-8")
    log.info("report written to %s", out_dir)
    return paths


def unused_dir(path: Path) -> Path:
    """`path` if it holds no report yet, else the first free `path-2`, `path-3`, ...: a report
    never overwrites another one."""
    path = Path(path)
    cand, i = path, 1
    while (cand / "pareto.html").exists() or (cand / "pareto.csv").exists():
        i += 1
        cand = path.with_name(f"{path.name}-{i}")
    return cand


def unused_artifact_path(existing: Sequence[str], base: str) -> str:
    """`base` if no artifact folder has that name, else `base-2`, `base-3`, ..."""
    cand, i = base, 1
    while cand in set(existing):
        i += 1
        cand = f"{base}-{i}"
    return cand


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
    p.add_argument("--group-by", default="auto",
                   help="colour grouping: auto (default: the strategy split by the varying key with the fewest "
                        "values), variant, strategy, model, or a param key like strategy.distill")
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
    out = unused_dir(args.out or Path("reports") / name)
    title = args.title or (f"experiment {args.experiment}" if args.experiment else f"sweep {args.parent_run}")
    try:
        paths = build_report(runs, out, args.group_by, title, args.include_unfinished)
    except (ValueError, KeyError) as exc:
        print(f"pdr.report: {exc} ({len(runs)} runs found)", file=sys.stderr)
        return 1
    artifact_path = None
    if args.parent_run and not args.no_log:
        # Never over the sweep's own report/ (nor an earlier CLI report): a new folder each time.
        artifact_path = unused_artifact_path(store.list_artifact_dirs(uri, args.parent_run), "report-cli")
        store.log_artifacts(uri, args.parent_run, list(paths.values()), artifact_path=artifact_path)
    table = pareto_table(runs, args.group_by, args.include_unfinished)
    sim = bool(table["simulated"].any())
    print(f"pdr.report: {len(table)} runs from {uri}" + (f"   [{SIMULATED_MARK}]" if sim else "")
          + (f"   [{ORACLE_MARK}]" if table["oracle"].any() else ""))
    front = table[table["frontier_seq"] | table["frontier_total"]]
    print("frontier runs (acc [CI], seq tokens, total tokens; * = on that axis' frontier):")
    for _, r in front.iterrows():
        print(f"  {r['dataset']:<10} {r['group']:<10} {r['accuracy']:.3f} [{r['accuracy_ci_low']:.3f}, "
              f"{r['accuracy_ci_high']:.3f}]  seq {r['seq_tokens']:>10,.0f}{'*' if r['frontier_seq'] else ' '}"
              f"  total {r['total_tokens']:>11,.0f}{'*' if r['frontier_total'] else ' '}  {_clip(r['label'], 60)}")
    for kind, path in paths.items():
        print(f"{kind:>9}: {path}")
    if artifact_path:
        print(f"logged to parent run {args.parent_run} under {artifact_path}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
