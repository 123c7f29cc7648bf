"""Which records an export keeps (the selection flags of `python -m pdr.export episodes`).

Applied in this order: `calls` (final | drafts | all), `exclude_truncated`, `correct_only`, then
`balance_per_problem`. Deterministic: the same records and seed give the same selection.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CALLS = ("final", "drafts", "all")


@dataclass(frozen=True)
class Selection:
    calls: str = "final"  # final: the call that gave each answer; drafts: every draft/refine; all: every call
    correct_only: bool = False  # keep records with reward 1 (records without a reward are dropped)
    exclude_truncated: bool = False  # drop outputs that hit their token cap (finish_reason=length)
    balance_per_problem: int | None = None  # at most N per problem, half correct, half wrong where possible
    seed: int = 0  # which records balancing keeps

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "correct_only": self.correct_only, "exclude_truncated": self.exclude_truncated,
                "balance_per_problem": self.balance_per_problem, "seed": self.seed}


def keep(record: dict[str, Any], sel: Selection) -> bool:
    """Whether one record passes the per-record filters (all but balancing)."""
    if sel.calls == "final" and not record["is_final"]:
        return False
    if sel.calls == "drafts" and record["kind"] not in ("draft", "refine"):
        return False
    if sel.exclude_truncated and record["truncated"]:
        return False
    return not (sel.correct_only and record["reward"] != 1.0)


def balance(records: Iterable[dict[str, Any]], per_problem: int, seed: int = 0) -> list[dict[str, Any]]:
    """At most `per_problem` records per problem (dataset, problem_id): ceil(N/2) correct and
    floor(N/2) wrong, the other kind filling in when one runs short, then records without a
    reward. Which ones: a seeded shuffle per problem. Output in input order."""
    groups: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r["source"]["dataset"], r["problem_id"]), []).append((i, r))
    chosen: list[tuple[int, dict[str, Any]]] = []
    for (dataset, pid), items in groups.items():
        rng = random.Random(f"{seed}:{dataset}:{pid}")
        good = [x for x in items if x[1]["reward"] == 1.0]
        bad = [x for x in items if x[1]["reward"] == 0.0]
        other = [x for x in items if x[1]["reward"] is None]
        for lst in (good, bad, other):
            rng.shuffle(lst)
        n_good = min(len(good), max((per_problem + 1) // 2, per_problem - len(bad)))
        n_bad = min(len(bad), per_problem - n_good)
        take = good[:n_good] + bad[:n_bad]
        take += other[: per_problem - len(take)]
        chosen.extend(take)
    return [r for _, r in sorted(chosen, key=lambda x: x[0])]


def select(records: Iterable[dict[str, Any]], sel: Selection) -> list[dict[str, Any]]:
    """The records `sel` keeps (module docstring)."""
    kept = [r for r in records if keep(r, sel)]
    return balance(kept, sel.balance_per_problem, sel.seed) if sel.balance_per_problem else kept
