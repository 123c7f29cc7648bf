"""pdr.evaluation.reward: the grader as verl's compute_score and a TRL reward function.

Agreement with grade() on every bundled gold answer and on wrong answers, worker processes (fork
and spawn pools, a parent that already owns grading workers), hostile inputs, TRL's call shape.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from pdr.data import bundled_path
from pdr.evaluation import grade, grade_many
from pdr.evaluation import reward as R
from pdr.evaluation.reward import compute_score, evaluate_many, pdr_reward, score

SETS = ("aime2024", "aime2025", "math500", "hmmt_feb2025", "amc2023")
KEYS = {"score", "acc", "pred", "status"}


def _golds(name: str) -> list[str]:
    with bundled_path(name).open(encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f if line.strip()]


@pytest.mark.parametrize("name", SETS)
def test_every_bundled_gold_answer_scores_one_and_agrees_with_grade(name):
    golds = _golds(name)
    assert len(golds) >= 30
    responses = [f"<think>maybe \\boxed{{0}}</think>\nThe answer is $\\boxed{{{g}}}$." for g in golds]
    verdicts = evaluate_many(list(zip(responses, golds, strict=True)))
    grades = grade_many(list(zip(responses, golds, strict=True)))
    assert [v.score for v in verdicts] == [float(g.correct) for g in grades]
    bad = [(g, v) for g, v in zip(golds, verdicts, strict=True) if v.score != 1.0]
    assert not bad, bad[:5]


@pytest.mark.parametrize("name", SETS)
def test_other_problems_answers_agree_with_grade(name):
    """A wrong answer per problem: the next problem's gold (mostly 0.0; equal golds are 1.0 in both)."""
    golds = _golds(name)
    pairs = [(f"\\boxed{{{golds[(i + 1) % len(golds)]}}}", g) for i, g in enumerate(golds)]
    scores = [compute_score(name, r, g)["score"] for r, g in pairs]
    assert scores == [float(g.correct) for g in grade_many(pairs)]
    assert sum(scores) < len(scores) / 10


EQUIVALENT = [
    (r"\boxed{\frac{1}{2}}", "0.5"),
    (r"\boxed{0.5}", r"\frac12"),
    (r"\boxed{\dfrac{3}{4}}", "3/4"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
    (r"\boxed{(x+1)^2}", "x^2+2x+1"),
    (r"\boxed{1,000}", "1000"),
    (r"<think>\boxed{7}</think> Final Answer: $12$", "12"),
]
WRONG = [
    (r"\boxed{\frac{1}{3}}", "0.333333"),
    (r"\boxed{0.333333}", r"\frac13"),
    (r"\boxed{5}", "6"),
    (r"<think>the answer is \boxed{6}", "6"),  # thinking never closed: no answer
    (r"<think>\boxed{6}</think> so it is \boxed{5}", "6"),  # the boxed 6 is thinking
    ("no answer here", "6"),
    (r"\boxed{x+1}", "x-1"),
]


@pytest.mark.parametrize(("response", "gold"), EQUIVALENT + WRONG)
def test_agrees_with_grade_on_equivalent_and_wrong_forms(response, gold):
    expected = grade(response, gold).correct
    assert (response, gold) in EQUIVALENT if expected else (response, gold) in WRONG
    out = compute_score("math", response, gold, extra_info={"index": 3})
    assert set(out) == KEYS
    assert out["score"] == out["acc"] == (1.0 if expected else 0.0)
    assert score(response, gold) == out["score"]


def test_verl_call_shapes_and_extra_kwargs():
    """verl calls by keyword with extra keys (reward_router_address, reward_kwargs) and, in the
    prime manager, positionally; the ground truth may be a numpy value or a list of answers."""
    np = pytest.importorskip("numpy")
    out = compute_score(
        data_source="aime", solution_str=r"\boxed{204}", ground_truth="204", extra_info={},
        reward_router_address=None, reward_model_tokenizer=None, num_turns=None,
    )  # fmt: skip
    assert out == {"score": 1.0, "acc": 1.0, "pred": "204", "status": "correct"}
    assert compute_score("aime", r"\boxed{204}", np.str_("204"), None)["score"] == 1.0
    assert compute_score("aime", r"\boxed{2}", ["1", "2"])["score"] == 1.0  # any of the answers
    assert compute_score("math", r"\boxed{5}", r"so $x=\boxed{5}$.")["score"] == 1.0  # a worked solution
    assert compute_score("aime", r"\boxed{204}", 204)["score"] == 1.0
    assert compute_score("aime", r"\boxed{3}", "3", timeout_s="bad")["score"] == 1.0


HOSTILE = [
    None, b"\\boxed{1}", 1, 1.0, {"text": "1"}, ["\\boxed{1}"], object(),
    "\\boxed{1\x00}", "\x1b[31m\\boxed{1}\x07", "\ud800\\boxed{1}", "\\boxed{" * 10_000,
    "x" * 5_000_000 + "\\boxed{2}", "}" * 100_000, "\\boxed{" + "(" * 50_000 + "}",
]  # fmt: skip


@pytest.mark.parametrize(
    "response", HOSTILE, ids=lambda r: type(r).__name__ + str(len(r) if isinstance(r, str | bytes) else "")
)
def test_hostile_responses_never_raise(response):
    out = compute_score("math", response, "1")
    assert set(out) == KEYS and out["score"] in (0.0, 1.0)
    assert isinstance(out["pred"], str)
    if not isinstance(response, str):
        assert out == {"score": 0.0, "acc": 0.0, "pred": "", "status": "invalid_input"}


@pytest.mark.parametrize("gold", [None, "", "  ", b"1", True, {"a": 1}, object(), [], ["1", None], "1\x00"])
def test_unusable_ground_truth_is_invalid_input(gold):
    assert compute_score("math", r"\boxed{1}", gold)["status"] == "invalid_input"


def test_pathological_expression_is_zero_after_the_timeout():
    """sympy never finishes 9^9^9^9; the worker is killed at timeout_s and the reward is 0.0."""
    out = compute_score("math", r"\boxed{9^{9^{9^{9}}}}", "1", timeout_s=1.0)
    assert out["score"] == 0.0 and out["status"] == "timeout"
    assert compute_score("math", r"\boxed{2^{10}}", "1024")["score"] == 1.0  # the next check works


def test_internal_failure_is_zero_with_a_reason(monkeypatch, caplog):
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(R, "_process_grader", broken)
    out = compute_score("math", r"\boxed{1}", "1")
    assert out == {"score": 0.0, "acc": 0.0, "pred": "", "status": "error"}
    assert R.evaluate(r"\boxed{1}", "1").reason == "internal: RuntimeError: boom"
    assert "boom" in caplog.text
    assert pdr_reward(completions=[r"\boxed{1}", "x"], answer=["1", "2"]) == [0.0, 0.0]


# --- TRL ---------------------------------------------------------------------------------------------


def test_trl_signature_conversational_and_plain():
    """TRL 1.16 GRPOTrainer._calculate_rewards: prompts, completions, completion_ids, every other
    dataset column as a list, trainer_state, log_extra, log_metric."""
    logged = {}
    prompts = [[{"role": "user", "content": "What is 1+1?"}]] * 3
    completions = [
        [{"role": "assistant", "content": r"<think>hmm \boxed{3}</think>It is $\boxed{2}$."}],
        [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{3}"}]}],
        [{"role": "assistant", "content": None}],
    ]
    out = pdr_reward(
        prompts=prompts, completions=completions, completion_ids=[[1], [2], [3]],
        answer=["2", "2", "2"], problem_id=["p", "p", "p"], trainer_state=object(),
        log_extra=lambda column, values: logged.__setitem__(column, values), log_metric=lambda *a: None,
    )  # fmt: skip
    assert out == [1.0, 0.0, 0.0]
    assert logged == {"pdr_status": ["correct", "wrong", "invalid_input"]}
    # Plain-text completions and TRL's `solution` column (a worked solution is reduced to its box).
    assert pdr_reward(prompts=["q", "q"], completions=[r"\boxed{2}", r"\boxed{5}"],
                      solution=[r"so \boxed{2}", r"\boxed{4}"]) == [1.0, 0.0]  # fmt: skip
    # `answer` wins over `solution`; a None ground truth is "not applicable".
    assert pdr_reward(completions=[r"\boxed{2}", "x"], answer=["2", None], solution=["9", "9"]) == [1.0, None]
    # Mismatched lengths or no completions: 0.0s / [], never an exception.
    assert pdr_reward(completions=[r"\boxed{2}"], answer=["2", "3"]) == [0.0]
    assert pdr_reward(completions=None, answer=[]) == []


# --- worker processes --------------------------------------------------------------------------------

# Needs math-verify (no fast path): proves the child's own grading workers answer.
MV_PAIRS = [(r"\boxed{(x+1)^2}", "x^2+2x+1"), (r"\boxed{x+2}", "x+1"), (r"\boxed{\sqrt{8}}", r"2\sqrt{2}")]
MV_EXPECTED = [1.0, 0.0, 1.0]


def _child_scores(pairs):
    scores = [compute_score("math", r, g)["score"] for r, g in pairs]
    statuses = [compute_score("math", r, g)["status"] for r, g in pairs]
    grader = R._grader
    pids = grader._pool.worker_pids() if grader is not None and grader._pool is not None else set()
    return os.getpid(), scores, statuses, sorted(pids)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_under_a_process_pool(method):
    """From a ProcessPoolExecutor child (Ray/verl-style): same rewards, fresh grading workers per
    child. With fork the parent already owns grading workers, which the children must not reuse."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    assert [compute_score("m", r, g)["score"] for r, g in MV_PAIRS] == MV_EXPECTED
    parent_workers = R._grader._pool.worker_pids()
    assert parent_workers  # the parent's pool exists and would be inherited by a fork
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        results = [f.result(timeout=300) for f in [ex.submit(_child_scores, MV_PAIRS) for _ in range(4)]]
    for pid, scores, statuses, workers in results:
        assert pid != os.getpid()
        assert scores == MV_EXPECTED, statuses
        assert workers and not set(workers) & parent_workers
    assert len({pid for pid, *_ in results}) <= 2  # 4 tasks on 2 children: a child grades again (Ray-like)
    # The parent's own grader still works after its children used theirs.
    assert [compute_score("m", r, g)["score"] for r, g in MV_PAIRS] == MV_EXPECTED
    assert R._grader._pool.worker_pids() == parent_workers


def test_fork_resets_the_process_grader():
    """os.fork hook: a forked child forgets the parent's grader (and its lock) instead of reusing it."""
    compute_score("m", *MV_PAIRS[0])
    parent = R._grader
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            ok = (
                R._grader is None
                and compute_score("m", *MV_PAIRS[0])["score"] == 1.0
                and R._grader is not parent
            )
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"
    assert R._grader is parent


def test_loads_the_way_verl_loads_a_custom_reward_function():
    """verl 0.9.1 `load_module`: a file path is exec'd under a made-up name that is not in
    sys.modules (dataclasses fail there); `pkg://` imports the module by name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"custom_module_{os.getpid()}", R.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = module.compute_score
    assert fn("aime", r"<think>\boxed{3}</think>\boxed{\frac{1}{2}}", "0.5", {})["score"] == 1.0
    assert fn("aime", r"\boxed{x+2}", "x+1", {})["score"] == 0.0  # through math-verify in its own grader


def test_under_a_daemonic_multiprocessing_pool():
    """multiprocessing.Pool workers are daemonic (they may not normally start children): the
    grading workers still start there, and the rewards are the same."""
    ctx = multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    with ctx.Pool(2) as pool:
        results = pool.map(_child_scores, [MV_PAIRS] * 3, chunksize=1)
    for _, scores, statuses, workers in results:
        assert scores == MV_EXPECTED, statuses
        assert workers
