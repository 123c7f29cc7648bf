"""A row's status means one thing: how the final output ended. `truncated` whenever the final call
hit its cap, box or no box; the extracted answer's grade is the separate `answer_correct`."""

from __future__ import annotations

import pytest

from pdr.engines.base import Completion
from pdr.evaluation.grading import Grade
from pdr.executor import Outcome, outcome_row
from pdr.strategies.state import Candidate, State
from tests.strategies.scripted import PROBLEM


def _row(text: str, finish: str, answer: str | None, grade: Grade | None):
    state = State(final=Candidate(Completion(text=text, finish_reason=finish), answer))
    out = Outcome(PROBLEM.id, 0, state, [], 0.0)
    return outcome_row(out, PROBLEM, {}, grade, "slowest")


@pytest.mark.parametrize(
    ("text", "finish", "answer", "grade", "status", "correct", "answer_correct"),
    [
        (r"so \boxed{12} and then more", "length", "12", Grade(True, "correct", "12"), "truncated", True, True),
        (r"so \boxed{11} and then more", "length", "11", Grade(False, "wrong", "11"), "truncated", False, False),
        ("cut mid-thought", "length", None, None, "truncated", False, None),
        (r"\boxed{12}", "stop", "12", Grade(True, "correct", "12"), "correct", True, True),
        (r"\boxed{11}", "stop", "11", Grade(False, "wrong", "11"), "wrong", False, False),
        ("no box", "stop", None, None, "no_answer", False, None),
    ],
)
def test_status_is_how_the_output_ended_and_the_grade_is_separate(text, finish, answer, grade, status, correct,
                                                                   answer_correct):
    row = _row(text, finish, answer, grade)
    assert (row["status"], row["correct"], row["answer_correct"]) == (status, correct, answer_correct)


def test_error_rows_have_no_answer_grade():
    row = outcome_row(Outcome.failed(PROBLEM.id, 0, RuntimeError("x")), PROBLEM, {}, None, "slowest")
    assert row["status"] == "error" and row["answer_correct"] is None
