"""Grading throughput: grades/s for AIME-style and MATH-500-style answers, one process.

    python experiments/benchmarks/bench_grading.py [--aime-pairs 20000] [--response-chars 6000]

AIME-style: gold = the 60 AIME 2024/2025 integers; responses = a thinking block plus a visible
solution of about --response-chars characters ending in ``\\boxed{N}``, half correct (sometimes
written ``025`` or ``25.0``), half a wrong integer. Everything is decided by the inline fast paths.

MATH-500-style: gold = the 500 MATH-500 answers; per gold three responses of the same shape: the gold
boxed (correct), the gold with its last digit changed (wrong, same form: the expensive kind for
math-verify) and another problem's gold (wrong, usually a different kind of object). Measured
cold: parent-side verdict cache off, every answer new to the worker's parse cache (each gold is
seen for the first time in the first of its three responses). Run with workers=0 (math-verify in
this process: one core) and workers=1 (one worker process; the parent only waits, so still about
one core of work).

Targets (design): AIME >= 2000 grades/s per core, MATH-500 >= 150 grades/s per core.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from pdr.evaluation import Grader

DATA = Path(__file__).resolve().parents[2] / "pdr" / "data" / "bundled"
_WORDS = (
    "we have the sum of $x^{2}$ and $\\frac{a}{b}$ so that {n} thus by symmetry the triangle "
    "with area $\\sqrt{3}$ and therefore $\\left(a+b\\right)^2$ hence"
).split()


def _load(name: str) -> list[str]:
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f]


def _prose(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    total = 0
    while total < chars:
        w = rng.choice(_WORDS)
        words.append(w)
        total += len(w) + 1
    return " ".join(words)


_PROSE_CACHE: dict[int, list[tuple[str, str]]] = {}


def _response(rng: random.Random, answer: str, chars: int) -> str:
    # A few random texts, reused: generating 1500 fresh 24k-character texts would dominate the run,
    # and extraction costs the same on any of them.
    if chars not in _PROSE_CACHE:
        # reasoning models think longer than they write
        _PROSE_CACHE[chars] = [(_prose(rng, chars * 3), _prose(rng, chars)) for _ in range(8)]
    thinking, visible = rng.choice(_PROSE_CACHE[chars])
    return f"<think>{thinking}</think>{visible}\n\nTherefore the answer is $\\boxed{{{answer}}}$."


def _perturb(answer: str, rng: random.Random) -> str:
    digits = [m.start() for m in re.finditer(r"\d", answer)]
    if not digits:
        return answer + "+1"
    i = digits[-1]
    new = str((int(answer[i]) + rng.randint(1, 8)) % 10)
    return answer[:i] + new + answer[i + 1 :]


def bench_aime(pairs: int, chars: int, seed: int) -> tuple[int, float]:
    rng = random.Random(seed)
    golds = _load("aime2024") + _load("aime2025")
    batch: list[tuple[str, str]] = []
    for _ in range(pairs):
        gold = rng.choice(golds)
        if rng.random() < 0.5:
            answer = rng.choice([gold, gold.zfill(3), f"{gold}.0"])
        else:
            answer = str((int(gold) + rng.randint(1, 998)) % 1000)
        batch.append((answer, gold))
    batch = [(_response(rng, a, chars), g) for a, g in batch]
    with Grader(workers=1, cache_size=0) as grader:
        start = time.perf_counter()
        grades = grader.grade_many(batch)
        elapsed = time.perf_counter() - start
    undecided = sum(g.method == "math_verify" for g in grades)
    if undecided:
        print(f"  note: {undecided} AIME answers went to math-verify")
    return len(batch), elapsed


def bench_math500(workers: int, chars: int, seed: int) -> dict[str, tuple[int, float]]:
    rng = random.Random(seed)
    golds = _load("math500")
    kinds = {
        "gold boxed": [(_response(rng, g, chars), g) for g in golds],
        "last digit changed": [(_response(rng, _perturb(g, rng), chars), g) for g in golds],
        "other problem's gold": [
            (_response(rng, golds[(i + 7) % len(golds)], chars), g) for i, g in enumerate(golds)
        ],
    }
    out: dict[str, tuple[int, float]] = {}
    with Grader(workers=workers, cache_size=0) as grader:
        grader.grade(r"\boxed{\sqrt{8}}", r"2\sqrt{2}")  # start the worker / import sympy outside the timing
        mixed: list[tuple[str, str]] = [p for triple in zip(*kinds.values(), strict=True) for p in triple]
        start = time.perf_counter()
        grades = grader.grade_many(mixed)
        out["all three, interleaved"] = (len(mixed), time.perf_counter() - start)
        for i, kind in enumerate(kinds):
            kind_grades = grades[i::3]
            errors = sum(g.error is not None for g in kind_grades)
            correct = sum(g.correct for g in kind_grades)
            print(f"  workers={workers} {kind:22s}: {correct}/{len(kind_grades)} correct, {errors} errors")
        # Second pass: same answers again, gold and prediction parses now cached in the worker.
        start = time.perf_counter()
        grader.grade_many(mixed)
        out["again (parses cached)"] = (len(mixed), time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--aime-pairs", type=int, default=20000)
    parser.add_argument("--response-chars", type=int, default=6000, help="visible solution length")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows: list[tuple[str, str, int, float]] = []
    n, dt = bench_aime(args.aime_pairs, args.response_chars, args.seed)
    rows.append(("AIME-style (integers)", "1", n, dt))
    for workers in (0, 1):
        for label, (n, dt) in bench_math500(workers, args.response_chars, args.seed).items():
            rows.append((f"MATH-500-style, {label}", str(workers), n, dt))

    print()
    print(f"{'benchmark':52s} {'workers':>7s} {'grades':>7s} {'seconds':>8s} {'grades/s':>9s}")
    for name, workers, n, dt in rows:
        print(f"{name:52s} {workers:>7s} {n:7d} {dt:8.2f} {n / dt:9.0f}")
    print(f"(response: ~{args.response_chars} visible + {3 * args.response_chars} thinking characters)")


if __name__ == "__main__":
    main()
