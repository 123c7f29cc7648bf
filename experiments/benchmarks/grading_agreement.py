"""Agreement of the grader with the labelled regression set (tests/grading/cases.jsonl).

    python experiments/benchmarks/grading_agreement.py [--cases tests/grading/cases.jsonl] [--workers 2]
    python experiments/benchmarks/grading_agreement.py --cases tests/grading/heldout.jsonl   # held out

Prints the confusion table (expected x got), every false positive (expected wrong or no_answer,
graded correct: must be none) and every other disagreement, with the case's rule and source.
Exit status 1 if there is a false positive or agreement is below 97%.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from pdr.evaluation import Grader

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("correct", "wrong", "no_answer", "error")
MIN_AGREEMENT = 0.97


def load(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def grade_cases(cases: list[dict], workers: int = 2, timeout_s: float = 10.0) -> list[tuple[str, str | None]]:
    """(status, extracted) per case, same order."""
    with Grader(workers=workers, timeout_s=timeout_s) as grader:
        grades = grader.grade_many([(c["response"], c["gold"]) for c in cases])
    return [(g.status, g.extracted) for g in grades]


def report(cases: list[dict], got: list[tuple[str, str | None]]) -> tuple[float, list[int]]:
    """Print the table and the disagreements; return (agreement, indices of false positives)."""
    table = Counter((c["expected"], status) for c, (status, _) in zip(cases, got, strict=True))
    agree = sum(n for (e, g), n in table.items() if e == g)
    print(f"{'expected/got':16s}" + "".join(f"{s:>11s}" for s in STATUSES))
    for e in STATUSES[:3]:
        print(f"{e:16s}" + "".join(f"{table[(e, g)]:11d}" for g in STATUSES))
    agreement = agree / len(cases)
    print(f"\nagreement: {agree}/{len(cases)} = {agreement:.1%}")
    false_pos = [i for i, (c, (s, _)) in enumerate(zip(cases, got, strict=True)) if s == "correct" != c["expected"]]
    print(f"\nfalse positives (expected wrong/no_answer, graded correct): {len(false_pos)}")
    for i in false_pos:
        _show(i, cases[i], got[i])
    others = [i for i, (c, (s, _)) in enumerate(zip(cases, got, strict=True)) if s != c["expected"] and i not in false_pos]
    print(f"\nother disagreements: {len(others)}")
    for i in others:
        _show(i, cases[i], got[i])
    return agreement, false_pos


def _show(i: int, case: dict, got: tuple[str, str | None]) -> None:
    print(
        f"  #{i} [{case['rule']}] expected {case['expected']}, got {got[0]} (extracted {got[1]!r})\n"
        f"      response {case['response'][-160:]!r}\n      gold {case['gold']!r}  source {case['source']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, default=ROOT / "tests" / "grading" / "cases.jsonl")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cases = load(args.cases)
    agreement, false_pos = report(cases, grade_cases(cases, args.workers))
    sys.exit(1 if false_pos or agreement < MIN_AGREEMENT else 0)


if __name__ == "__main__":
    main()
