"""The grader against the labelled sets, each on its own: no false positive at all, and at least 97%
agreement with the labels. cases.jsonl is the regression set written while the grader was fixed;
heldout.jsonl was labelled from the README policy before the grader's code was read (held out)."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FILES = ("cases.jsonl", "heldout.jsonl")
MIN_CASES = {"cases.jsonl": (300, 100, 30), "heldout.jsonl": (150, 100, 20)}  # total, wrong, no_answer


def _load(name: str) -> list[dict]:
    return [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines() if line]
STATUSES = {"correct", "wrong", "no_answer"}


def _agreement_module():  # noqa: ANN202 - the script in experiments/benchmarks, imported by path
    path = HERE.parents[1] / "experiments" / "benchmarks" / "grading_agreement.py"
    spec = importlib.util.spec_from_file_location("grading_agreement", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=FILES)
def labelled(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, _load(request.param)


@pytest.fixture(scope="module")
def graded(labelled: tuple[str, list[dict]]) -> tuple[list[dict], list[tuple[str, str | None]]]:
    cases = labelled[1]
    return cases, _agreement_module().grade_cases(cases, workers=2, timeout_s=30.0)


@pytest.mark.parametrize("name", FILES)
def test_the_set_is_well_formed(name: str) -> None:
    cases = _load(name)
    total, wrong, no_answer = MIN_CASES[name]
    assert len(cases) >= total
    for case in cases:
        assert set(case) == {"response", "gold", "expected", "source", "rule"}, case
        assert case["expected"] in STATUSES and case["source"] and case["rule"], case
    counts = Counter(c["expected"] for c in cases)
    assert counts["wrong"] >= wrong and counts["no_answer"] >= no_answer, counts


def test_no_false_positive(graded: tuple[list[dict], list[tuple[str, str | None]]]) -> None:
    cases, got = graded
    false_positives = [
        (c["rule"], c["response"][-120:], c["gold"], c["expected"])
        for c, (status, _) in zip(cases, got, strict=True)
        if status == "correct" and c["expected"] != "correct"
    ]
    assert false_positives == []


def test_agreement_of_at_least_97_percent(graded: tuple[list[dict], list[tuple[str, str | None]]]) -> None:
    cases, got = graded
    disagreements = [
        (c["rule"], c["response"][-120:], c["gold"], c["expected"], status)
        for c, (status, _) in zip(cases, got, strict=True)
        if status != c["expected"]
    ]
    agreement = 1 - len(disagreements) / len(cases)
    assert agreement >= 0.97, disagreements


def test_no_grading_errors(graded: tuple[list[dict], list[tuple[str, str | None]]]) -> None:
    cases, got = graded
    assert not [c for c, (status, _) in zip(cases, got, strict=True) if status == "error"]
