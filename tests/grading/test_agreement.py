"""The grader against the labelled regression set (tests/grading/cases.jsonl, README.md here):
no false positive at all, and at least 97% agreement with the labels."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CASES = [json.loads(line) for line in (HERE / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line]
STATUSES = {"correct", "wrong", "no_answer"}


def _agreement_module():  # noqa: ANN202 - the script in experiments/benchmarks, imported by path
    path = HERE.parents[1] / "experiments" / "benchmarks" / "grading_agreement.py"
    spec = importlib.util.spec_from_file_location("grading_agreement", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graded() -> list[tuple[str, str | None]]:
    return _agreement_module().grade_cases(CASES, workers=2, timeout_s=30.0)


def test_the_set_is_well_formed() -> None:
    assert len(CASES) >= 300
    for case in CASES:
        assert set(case) == {"response", "gold", "expected", "source", "rule"}, case
        assert case["expected"] in STATUSES and case["source"] and case["rule"], case
    counts = Counter(c["expected"] for c in CASES)
    assert counts["wrong"] >= 100 and counts["no_answer"] >= 30, counts


def test_no_false_positive(graded: list[tuple[str, str | None]]) -> None:
    false_positives = [
        (c["rule"], c["response"][-120:], c["gold"], c["expected"])
        for c, (status, _) in zip(CASES, graded, strict=True)
        if status == "correct" and c["expected"] != "correct"
    ]
    assert false_positives == []


def test_agreement_of_at_least_97_percent(graded: list[tuple[str, str | None]]) -> None:
    disagreements = [
        (c["rule"], c["response"][-120:], c["gold"], c["expected"], status)
        for c, (status, _) in zip(CASES, graded, strict=True)
        if status != c["expected"]
    ]
    agreement = 1 - len(disagreements) / len(CASES)
    assert agreement >= 0.97, disagreements


def test_no_grading_errors(graded: list[tuple[str, str | None]]) -> None:
    assert not [c for c, (status, _) in zip(CASES, graded, strict=True) if status == "error"]
