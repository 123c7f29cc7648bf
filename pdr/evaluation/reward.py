"""pdr's grader as an RL reward: verl's ``compute_score`` and a TRL ``GRPOTrainer`` reward function.

Reward values (no format penalty, no partial credit)::

    1.0  the final answer of the response is mathematically equal to the ground truth
         (exactly ``pdr.evaluation.grade(response, gold).correct``)
    0.0  anything else: wrong, no extractable answer (also an unclosed ``<think>``), a truncated
         box, a check that timed out, an invalid input, or an internal failure of the grader

The answer is taken from the *visible* part of the response, as pdr does for its own runs
(``pdr.evaluation.extract``): everything up to the last ``</think>`` is thinking and never the
answer, and a response whose ``<think>`` never closed has no answer (0.0).

Entry points
------------
* ``compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict`` —
  verl's custom reward function (``reward.custom_reward_function.path/name``): the dict always has
  the same keys, ``score`` (the reward), ``acc`` (the same as a float, which verl's validation
  metrics average), ``pred`` (the extracted answer, "" when none: verl's majority vote reads it)
  and ``status`` ("correct" | "wrong" | "no_answer" | "timeout" | "invalid_input" | "error"). verl
  stacks the extra keys of every row into one column each, so the key set never varies. Extra
  keyword arguments (verl passes ``reward_router_address`` and the config's ``reward_kwargs``) are
  ignored, except ``timeout_s`` (the per-check limit, seconds).
* ``score(solution_str, ground_truth) -> float`` — the bare float, for trainers that want one
  (verl's legacy ``prime`` manager indexes a non-float result).
* ``pdr_reward(prompts, completions, completion_ids=None, **columns) -> list[float | None]`` —
  TRL's reward-function signature (``GRPOTrainer(reward_funcs=[pdr_reward])``). The ground truth
  is the dataset column ``answer`` (what pdr's export writes), else ``solution`` (TRL's own
  ``accuracy_reward`` convention). A row whose ground truth is None gets None ("not applicable":
  TRL leaves it out of the group baseline). Completions may be strings or conversational message
  lists (the last assistant message's content is graded).
* ``evaluate_many(pairs) -> list[Verdict]`` — the batch form with the full verdict.

Ground truth: a string (or an int, float or Decimal, turned into one); a list or tuple of
strings means "any of these"; a ground truth containing ``\\boxed{}`` (a worked solution, as in
MATH) is reduced to its last box.

Guarantees
----------
* **Never raises.** Every input type is accepted; a non-string response (None, bytes, a dict) is
  0.0 with status ``invalid_input``; any internal failure is 0.0 with status ``error`` and the
  reason in ``Verdict.reason`` (and a log warning).
* **Fast.** The string and exact-number fast paths (``Grader.fast_grade``) decide most answers in
  microseconds in the calling thread; only the rest go to math-verify.
* **Bounded.** math-verify runs in pebble worker processes with a hard per-check kill
  (``timeout_s``, default ``DEFAULT_TIMEOUT_S`` = 5 s): a pathological answer is 0.0 (status
  ``timeout``) after at most that long, not a hang.
* **Process-safe.** Each process owns its own grader: a process forked from one that already
  graded (a ``ProcessPoolExecutor`` with the fork start method, a Ray worker forked from a
  driver) never touches the parent's worker pool or its locks; it starts its own workers on its
  first math-verify check (about half a second). Spawned processes start fresh anyway. The
  grading workers are daemonic children and exit with the process that started them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

from pdr.evaluation.extract import last_boxed
from pdr.evaluation.grading import Grade, Grader

__all__ = [
    "REWARD_CORRECT",
    "REWARD_WRONG",
    "Verdict",
    "compute_score",
    "evaluate",
    "evaluate_many",
    "pdr_reward",
    "score",
]

log = logging.getLogger(__name__)

REWARD_CORRECT = 1.0
REWARD_WRONG = 0.0
GROUND_TRUTH_COLUMNS = ("answer", "solution")  # TRL dataset columns read by pdr_reward, in order


class Verdict(NamedTuple):
    """One response's reward and why.

    score:  REWARD_CORRECT (1.0) or REWARD_WRONG (0.0).
    status: "correct" | "wrong" | "no_answer" | "timeout" (the math-verify check was killed) |
            "invalid_input" (a non-string response or an unusable ground truth) | "error" (the
            grader failed or its workers could not start: no verdict, scored 0.0).
    pred:   the extracted final answer, or None.
    reason: None, or what went wrong (the grader's ``Grade.error``, or the invalid input's type).

    A NamedTuple, not a dataclass: verl may load this file by path without registering it in
    ``sys.modules``, where ``dataclasses`` fails (it looks the module up).
    """

    score: float
    status: str
    pred: str | None = None
    reason: str | None = None

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# --------------------------------------------------------------------------------------------------
# One grader per process
# --------------------------------------------------------------------------------------------------

_lock = threading.Lock()
_grader: Grader | None = None
_grader_pid = 0
_abandoned: list[Grader] = []  # inherited by a fork: kept referenced, never used or closed here


def _reset_after_fork() -> None:
    """In a forked child: forget the parent's grader (its worker pool belongs to the parent and
    its locks may have been held by another thread at the fork) and take a fresh lock."""
    global _lock, _grader
    _lock = threading.Lock()
    if _grader is not None:
        _abandoned.append(_grader)  # closing it here would stop the parent's workers
    _grader = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _process_grader() -> Grader:
    """This process's grader (created on first use; replaced when the pid changed: a fork that
    did not go through os.fork's hooks, e.g. a raw clone)."""
    global _grader, _grader_pid
    with _lock:
        if _grader is None or _grader_pid != os.getpid():
            if _grader is not None:
                _abandoned.append(_grader)
            _grader = Grader()
            _grader_pid = os.getpid()
        return _grader


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _golds(ground_truth: Any) -> list[str] | None:
    """The acceptable gold answers, or None when the ground truth is unusable."""
    if hasattr(ground_truth, "tolist") and not isinstance(ground_truth, str):
        ground_truth = ground_truth.tolist()  # numpy: verl's non-tensor batch holds arrays and scalars
    items = list(ground_truth) if isinstance(ground_truth, list | tuple) else [ground_truth]
    out = []
    for g in items:
        if isinstance(g, bool) or g is None:
            return None
        if isinstance(g, int | float | Decimal | Fraction):
            g = str(g)
        if not isinstance(g, str) or not g.strip() or "\x00" in g:
            return None
        if "\\boxed" in g or "\\fbox" in g:
            g = last_boxed(g) or g
        out.append(g)
    return out or None


def _completion_text(completion: Any) -> Any:
    """A TRL completion as text: a string as is; a conversational list of messages -> the last
    assistant message's content (typed content parts joined). Anything else is returned as is
    (and graded invalid_input)."""
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages
        if not assistant:
            return None
        content = assistant[-1].get("content")
        if isinstance(content, list):
            content = "".join(
                str(p.get("text", ""))
                for p in content
                if isinstance(p, dict) and p.get("type", "text") == "text"
            )
        return content
    return completion


# --------------------------------------------------------------------------------------------------
# Grading
# --------------------------------------------------------------------------------------------------


def _verdict(grade: Grade) -> Verdict:
    if grade.correct:
        return Verdict(REWARD_CORRECT, "correct", grade.extracted)
    if grade.status == "error" or (grade.error or "").startswith("internal"):
        return Verdict(REWARD_WRONG, "error", grade.extracted, grade.error)
    if grade.error == "timeout":
        return Verdict(REWARD_WRONG, "timeout", grade.extracted, "timeout")
    return Verdict(
        REWARD_WRONG, grade.status if grade.status == "no_answer" else "wrong", grade.extracted, grade.error
    )


def _best(verdicts: list[Verdict]) -> Verdict:
    """Over the acceptable golds: the first correct, else the first one's verdict."""
    return next((v for v in verdicts if v.correct), verdicts[0])


def evaluate_many(pairs: Sequence[tuple[Any, Any]], *, timeout_s: float | None = None) -> list[Verdict]:
    """A Verdict per ``(solution_str, ground_truth)`` pair, same order and length. Fast paths
    inline; the rest in one parallel batch on this process's grading workers. Never raises."""
    try:
        return _evaluate_many(pairs, timeout_s)
    except Exception as exc:  # noqa: BLE001 - a reward function must never crash a training step
        log.warning(
            "pdr reward: grading failed (%s: %s); every reward of this batch is 0.0", type(exc).__name__, exc
        )
        reason = f"internal: {type(exc).__name__}: {exc}"[:300]
        try:
            return [Verdict(REWARD_WRONG, "error", None, reason) for _ in pairs]
        except Exception:  # noqa: BLE001 - `pairs` itself is unusable
            return []


def _evaluate_many(pairs: Sequence[tuple[Any, Any]], timeout_s: float | None) -> list[Verdict]:
    if timeout_s is not None and not (isinstance(timeout_s, int | float) and timeout_s > 0):
        timeout_s = None  # a bad reward_kwargs value must not break grading: the default applies
    grader = _process_grader()
    out: list[list[Verdict] | None] = []
    todo: list[tuple[int, str, str]] = []  # (row, response, gold) for math-verify
    for row, pair in enumerate(pairs):
        try:
            response, ground_truth = pair
        except Exception:  # noqa: BLE001 - not a pair
            out.append([Verdict(REWARD_WRONG, "invalid_input", None, "not a (solution, ground_truth) pair")])
            continue
        if not isinstance(response, str):
            out.append(
                [Verdict(REWARD_WRONG, "invalid_input", None, f"solution is {type(response).__name__}")]
            )
            continue
        golds = _golds(ground_truth)
        if golds is None:
            out.append(
                [Verdict(REWARD_WRONG, "invalid_input", None, f"unusable ground truth {ground_truth!r:.80}")]
            )
            continue
        found: list[Verdict] = []
        for gold in golds:
            g = grader.fast_grade(response, gold)
            if g is None:
                todo.append((row, response, gold))
            else:
                found.append(_verdict(g))
        out.append(found)
    if todo:
        grades = grader.grade_many([(r, g) for _, r, g in todo], timeout_s=timeout_s)
        for (row, _, _), g in zip(todo, grades, strict=True):
            out[row].append(_verdict(g))  # type: ignore[union-attr]
    verdicts = [_best(v) if v else Verdict(REWARD_WRONG, "error", None, "internal: no verdict") for v in out]
    for v in verdicts:
        if v.status in ("error", "timeout"):
            log.warning("pdr reward: 0.0 with status %s (%s)", v.status, v.reason)
    return verdicts


def evaluate(solution_str: Any, ground_truth: Any, *, timeout_s: float | None = None) -> Verdict:
    """The Verdict on one response (see ``evaluate_many``). Never raises."""
    out = evaluate_many([(solution_str, ground_truth)], timeout_s=timeout_s)
    return out[0] if out else Verdict(REWARD_WRONG, "error", None, "internal: no verdict")


def score(solution_str: Any, ground_truth: Any, **kwargs: Any) -> float:
    """The reward of one response as a bare float (1.0 / 0.0). Never raises."""
    return evaluate(solution_str, ground_truth, timeout_s=kwargs.get("timeout_s")).score


def compute_score(
    data_source: Any = None,
    solution_str: Any = None,
    ground_truth: Any = None,
    extra_info: Any = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """verl's custom reward function: ``{"score", "acc", "pred", "status"}`` (module docstring).

    ``data_source`` and ``extra_info`` are accepted and not used: pdr grades every math source the
    same way. Never raises.
    """
    v = evaluate(solution_str, ground_truth, timeout_s=kwargs.get("timeout_s"))
    return {"score": v.score, "acc": float(v.correct), "pred": v.pred or "", "status": v.status}


def pdr_reward(
    prompts: Any = None, completions: Any = None, completion_ids: Any = None, **kwargs: Any
) -> list[float | None]:
    """TRL's reward-function signature: one reward per completion, same order (module docstring).

    Reads the ground truth from the ``answer`` column, else ``solution``. When TRL passes
    ``log_extra``, the statuses are logged to its completions table as column ``pdr_status``.
    Never raises: a batch it cannot read at all is all 0.0.
    """
    try:
        items = list(completions or [])
    except Exception:  # noqa: BLE001 - not iterable
        log.warning("pdr reward: completions of type %s are not a list", type(completions).__name__)
        return []
    try:
        column = next((kwargs[c] for c in GROUND_TRUTH_COLUMNS if kwargs.get(c) is not None), None)
        golds = list(column) if column is not None else [None] * len(items)
        if len(golds) != len(items):
            raise ValueError(f"{len(items)} completions but {len(golds)} ground truths")
    except Exception as exc:  # noqa: BLE001
        log.warning("pdr reward: no usable ground-truth column (%s); rewards are 0.0", exc)
        return [REWARD_WRONG] * len(items)
    if column is None:
        log.warning(
            "pdr reward: the dataset has no %s column; rewards are None", " or ".join(GROUND_TRUTH_COLUMNS)
        )
    rows = [i for i, g in enumerate(golds) if g is not None]
    verdicts = evaluate_many(
        [(_safe_text(items[i]), golds[i]) for i in rows], timeout_s=kwargs.get("timeout_s")
    )
    rewards: list[float | None] = [None] * len(items)
    statuses = ["no_ground_truth"] * len(items)
    for i in rows:  # evaluate_many returns [] only when it could not read the batch at all
        rewards[i], statuses[i] = REWARD_WRONG, "error"
    for i, v in zip(rows, verdicts, strict=False):
        rewards[i], statuses[i] = v.score, v.status
    log_extra = kwargs.get("log_extra")
    if callable(log_extra):
        try:
            log_extra("pdr_status", statuses)
        except Exception:  # noqa: BLE001 - logging is optional
            log.debug("pdr reward: log_extra failed", exc_info=True)
    return rewards


def _safe_text(completion: Any) -> Any:
    try:
        return _completion_text(completion)
    except Exception:  # noqa: BLE001 - graded invalid_input
        return None
