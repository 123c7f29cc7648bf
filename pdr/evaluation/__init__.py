"""Answer extraction and grading (pure functions over strings; see the two modules' docstrings).

``from pdr.evaluation import grade`` — ``grade(response, gold) -> Grade`` with ``.correct``,
``.status`` (``"correct" | "wrong" | "no_answer"``; ``"error"`` only when the grading worker
processes cannot start, see ``pdr.evaluation.grading``), ``.extracted`` and ``.error``. ``grade_many`` is
the batch form. ``compute_score`` (verl) and ``pdr_reward`` (TRL) are the grader as an RL
reward (``pdr.evaluation.reward``). Importing this package is cheap: sympy and math-verify are imported only by the
worker processes (or by the first in-process check with ``workers=0``).
"""

from pdr.evaluation.extract import (
    extract_answer,
    final_answer_statement,
    last_boxed,
    normalize_answer,
    strip_thinking,
)
from pdr.evaluation.grading import (
    DEFAULT_MAX_ANSWER_CHARS,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WORKERS,
    Grade,
    Grader,
    configure,
    fast_grade,
    grade,
    grade_many,
    shutdown,
    warm_up,
)
from pdr.evaluation.reward import compute_score, pdr_reward

__all__ = [
    "DEFAULT_MAX_ANSWER_CHARS",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_WORKERS",
    "Grade",
    "Grader",
    "compute_score",
    "configure",
    "extract_answer",
    "fast_grade",
    "final_answer_statement",
    "grade",
    "grade_many",
    "last_boxed",
    "normalize_answer",
    "pdr_reward",
    "shutdown",
    "strip_thinking",
    "warm_up",
]
