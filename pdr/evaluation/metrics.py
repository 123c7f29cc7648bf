"""Run-level metrics from the per-(problem, sample) result rows. Pure functions.

Accuracy is mean@samples: the mean over problems of each problem's mean correctness over its
samples (the paper's mean@16). Its confidence interval is a problem-level bootstrap: problems,
not (problem, sample) pairs, are resampled, because samples of one problem are not independent
(one AIME problem is 3.3 points).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

STATUSES = ("correct", "wrong", "no_answer", "truncated", "error")


def per_problem_accuracy(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    by_problem: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_problem[str(r["problem_id"])].append(1.0 if r["correct"] else 0.0)
    return {pid: sum(v) / len(v) for pid, v in by_problem.items()}


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (one value per problem)."""
    if not values:
        return (float("nan"), float("nan"))
    if len(values) == 1:
        return (values[0], values[0])
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    lo = means[int((1 - level) / 2 * (n_boot - 1))]
    hi = means[int((1 + level) / 2 * (n_boot - 1))]
    return (lo, hi)


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Difference of mean accuracy (a - b) over the problems both have, with a problem-level
    paired bootstrap CI and the fraction of resamples where a <= b (a one-sided p-value)."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two runs share no problems")
    diffs = [a[p] - b[p] for p in common]
    lo, hi = bootstrap_ci(diffs, n_boot, level, seed)
    rng = random.Random(seed + 1)
    n = len(diffs)
    le = sum(1 for _ in range(n_boot) if sum(diffs[rng.randrange(n)] for _ in range(n)) <= 0)
    return {"diff": sum(diffs) / n, "ci_low": lo, "ci_high": hi, "p_a_le_b": le / n_boot, "problems": n}


def summarize(rows: Sequence[Mapping[str, Any]], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """The run's metrics (names as logged to MLflow). Token metrics are means per problem-sample."""
    if not rows:
        return {}
    acc_by_problem = per_problem_accuracy(rows)
    values = list(acc_by_problem.values())
    lo, hi = bootstrap_ci(values, n_boot, level, seed)
    n = len(rows)
    out: dict[str, float] = {
        "accuracy": sum(values) / len(values),
        "accuracy_ci_low": lo,
        "accuracy_ci_high": hi,
        "problems": float(len(values)),
        "problem_samples": float(n),
    }
    for s in STATUSES:
        out[f"frac_{s}"] = sum(1 for r in rows if r["status"] == s) / n
    for key in ("seq_tokens", "total_tokens", "seq_output_tokens", "total_output_tokens", "cached_tokens",
                "prompt_tokens", "completion_tokens", "engine_calls", "wall_s"):
        vals = [float(r[key]) for r in rows if r.get(key) is not None]
        if vals:
            out[key if key != "wall_s" else "problem_wall_s"] = sum(vals) / len(vals)
    ctx = [float(r["max_context_tokens"]) for r in rows if r.get("max_context_tokens") is not None]
    if ctx:
        out["max_context_tokens"] = max(ctx)
        out["mean_max_context_tokens"] = sum(ctx) / len(ctx)
    # Per-round draft accuracy: the improvement-operator effect, round by round.
    per_round: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        for rd in r.get("rounds") or ():
            if rd.get("draft_accuracy") is not None:
                per_round[int(rd["round"])].append(float(rd["draft_accuracy"]))
    for rnd, vals in sorted(per_round.items()):
        out[f"round_{rnd}_draft_accuracy"] = sum(vals) / len(vals)
    # pass@samples: a problem counts if any sample is correct.
    out["pass_at_samples"] = sum(1 for v in values if v > 0) / len(values)
    return out
