"""Final-answer extraction (pdr.evaluation.extract): thinking, boxes, final-answer statements."""

from __future__ import annotations

import time

import pytest

from pdr.evaluation import extract_answer, last_boxed, strip_thinking

# (response, expected extracted answer)
CASES: list[tuple[str, str | None]] = [
    # boxes, nesting, escapes
    (r"So the answer is \boxed{25}.", "25"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"\boxed{\frac{\sqrt{3}}{\frac{1}{2}}}", r"\frac{\sqrt{3}}{\frac{1}{2}}"),
    (r"$\boxed{ 7 }$", "7"),
    (r"\boxed {7}", "7"),
    (r"\fbox{7}", "7"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\boxed{\left\{ 1 \right\}}", r"\left\{ 1 \right\}"),
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"\boxed{\text{(B)}}", r"\text{(B)}"),
    (r"} stray } braces { \boxed{9}", "9"),
    # the space form
    (r"\boxed 5", "5"),
    (r"$\boxed 5$.", "5"),
    (r"so \boxed 5, done", "5"),
    # several boxes: the last wins; empty and unclosed boxes are skipped
    (r"\boxed{1} then \boxed{2}", "2"),
    (r"\fbox{1} then \boxed{2} then \fbox{3}", "3"),
    (r"\boxed{1} \boxed 2", "2"),
    (r"\boxed{}", None),
    (r"\boxed{   }", None),
    (r"\boxed{2} and the format is \boxed{}", "2"),
    # cut inside a box (truncation): no answer, not an earlier box (issue 13 policy)
    (r"\boxed{3} and truncated \boxed{\frac{1}{", None),
    (r"\boxed{1}\boxed{}\boxed{}\boxed{}\boxed{\frac{", None),
    (r"\boxed{1}\boxed{}\boxed{\ }\boxed{\quad}\boxed{~}", "1"),  # more blank boxes than the fast tries
    (r"\boxed{\,}", None),
    # boxes listing the solutions on one line are one answer; other text between boxes is not a list
    (r"The solutions are $\boxed{2}$ and $\boxed{3}$.", "2, 3"),
    (r"so $x=\boxed{-1}$, $x=\boxed{4}$", "-1, 4"),
    (r"first $\boxed{3}$, but rechecking, $\boxed{5}$.", "5"),
    ("$\\boxed{2}$ and\n$\\boxed{3}$", "3"),
    (r"\boxed{x = \boxed{5}}", "5"),
    (r"\boxedfoo \boxed{3}", "3"),
    # thinking
    (r"<think>maybe \boxed{3}</think> The answer is \boxed{4}", "4"),
    (r"<think>maybe \boxed{3} and I keep thinking", None),  # truncated inside thinking
    (r"<think>a</think><think>b \boxed{3}", None),  # a second thinking block never closed
    (r"reasoning \boxed{3}</think> final \boxed{5}", "5"),  # template put <think> in the prompt
    (r"<think>\boxed{3}</think>", None),  # nothing after thinking
    (r"<think>\boxed{3}</think>Final Answer: 8", "8"),
    (r"<THINK>\boxed{3}</THINK> \boxed{6}", "6"),
    # explicit statements when there is no box
    ("Final Answer: 42", "42"),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
    ("The final answer is 3.5.", "3.5"),
    ("The final answer is: 5", "5"),
    ("**Answer:** 73", "73"),
    ("**Final Answer**: **73**", "73"),
    ("**Final Answer:** \\( x = 2 \\)", "x = 2"),
    ("Answer: 12\nmore text\nFinal answer: 13", "13"),
    ("Final answer: 13\nAnswer: 14", "14"),
    ("the final answer is `1000`.", "1000"),
    ("Final Answer:\n", None),
    # a box beats a later statement
    ("\\boxed{5}\nFinal Answer: 6", "5"),
    # nothing
    # a closing commitment on the last line counts; a value in the working does not
    ("The answer is 73", "73"),
    ("We add them.\n\nThe answer is 42.", "42"),
    ("So the answer is $17$.", "17"),
    ("Substituting back, y is three. Hence $y = 3$.", "y = 3"),
    ("Adding up the cases.\n\n**58**", "58"),
    ("After checking each option, the answer is (D).", "(D)"),
    ("Thus, the minimum value is $12$.", "12"),  # held-out case: "the <noun phrase> is X"
    ("Thus the number of pairs equals 17.", "17"),
    ("The answer is approximately $1.414$.", "1.414"),  # graded as the approximation it is
    ("Hence the value is $5$ when $n$ is odd.", None),
    ("So this is A.", None),
    ("The answer is $\\boxed{\\text{}}$.", None),  # an empty text wrapper is a blank box
    ("The answer is 73 if we ignore the constraint, but", None),
    ("The answer is probably 42 but I am not sure.", None),
    ("So $x = 42$ and then we subtract", None),
    ("The answer is 42.\nNow let us double-check the second case", None),
    ("**Step 1.** Note that 12 divides 36.", None),
    ("\\boxed{1\x00\x00}", None),  # control characters: corrupted output
    ("nothing here", None),
    ("", None),
]


@pytest.mark.parametrize(("response", "expected"), CASES)
def test_extract_answer(response: str, expected: str | None) -> None:
    assert extract_answer(response) == expected


def test_strip_thinking() -> None:
    assert strip_thinking("<think>a</think>b") == "b"
    assert strip_thinking("a</think>b</think>c") == "c"
    assert strip_thinking("<think>a") == ""
    assert strip_thinking("plain") == "plain"


def test_last_boxed_prefers_the_last_usable_box() -> None:
    assert last_boxed(r"\boxed{1} \boxed{2} \boxed{") == "2"
    assert last_boxed("no box") is None


@pytest.mark.parametrize(
    "response",
    [
        "x " * 1_000_000 + r"\boxed{5}",
        "{" * 2_000_000 + r"\boxed{5}",
        r"\boxed{" * 300_000,
        "}" * 1_000_000 + r"\boxed{" * 3,
        "final answer" + " " * 1_000_000 + "x",
        "Answer:\n" * 200_000,
        "<think>" * 200_000,
        r"\boxed{" * 100_000 + "1" + "}" * 100_000,
        r"$\boxed{1}$ and " * 100_000,
        "The answer is " * 100_000 + "42.",
    ],
    ids=[
        "2MB-prose",
        "2MB-open-braces",
        "unclosed-boxes",
        "stray-closers",
        "spaces",
        "many-anchors",
        "think-tags",
        "nested-boxes",
        "boxes-on-one-line",
        "closing-anchors",
    ],
)
def test_extraction_is_linear_on_huge_inputs(response: str) -> None:
    start = time.perf_counter()
    extract_answer(response)
    # Linear takes well under a second on these 0.3-2 MB inputs; a quadratic scan takes hours. The
    # bound is generous so that a loaded or 3x slower machine passes (2.0 s once failed under load).
    assert time.perf_counter() - start < 60.0
