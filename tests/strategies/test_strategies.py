"""Operators and strategies: request shape and order, budget accounting, workspace bounds,
determinism, and the simulated model's anchoring."""

from __future__ import annotations

import asyncio
import re

import pytest

from pdr.config.engines import SimEngineConfig
from pdr.engines.base import GenRequest
from pdr.engines.sim import SimEngine, count_words
from pdr.evaluation import extract_answer
from pdr.evaluation.extract import normalize_answer
from pdr.executor import Executor, budgets
from pdr.strategies.graph import compile_graph
from pdr.strategies.state import trim_tokens
from tests.conftest import compose_object
from tests.strategies.scripted import PROBLEM, P, ScriptedEngine, run, run_steps


def test_pdr_global_summary_request_order_and_fork():
    eng = ScriptedEngine()
    out, graph, _ = run(["strategy=pdr", "strategy.widths=[4,2]", "strategy.distill=global_summary"], eng)
    kinds = [(r.tag.kind, r.n) for r in eng.requests]
    assert kinds == [("draft", 4), ("summary", 1), ("refine", 2), ("summary", 1), ("refine", 1)]
    first, refine = eng.requests[0].messages[-1].content, eng.requests[2].messages[-1].content
    assert "Workspace:" not in first and PROBLEM.problem in first
    assert "Workspace:" in refine
    # The round-2 workspace is the round-1 summary, and the last refine sees only round 2's summary.
    summary1 = out.trace[1]["outputs"][0]["text"]
    assert summary1 in refine
    assert summary1 not in eng.requests[4].messages[-1].content
    assert out.state.final.answer == "12"
    assert [r.width for r in out.state.rounds] == [4, 2, 1]


def test_budgets_sequential_is_slowest_branch_per_step_total_is_all():
    eng = ScriptedEngine(think=50, words=20)
    out, _, _ = run(["strategy=pdr", "strategy.widths=[4,2]"], eng)
    b = budgets(out.calls, "slowest")
    by_step: dict[int, list[int]] = {}
    for c in out.calls:
        by_step.setdefault(c.step, []).append(c.prompt_tokens + c.completion_tokens)
    assert b["seq_tokens"] == sum(max(v) for v in by_step.values())
    assert b["total_tokens"] == sum(sum(v) for v in by_step.values())
    assert b["total_output_tokens"] == sum(c.completion_tokens for c in out.calls)
    # Forked branches cost 72 + branch output tokens: the slowest of 4 is branch 3.
    assert max(c.completion_tokens for c in out.calls if c.step == 0) == 50 + 20 + 5 + 3
    assert b["seq_tokens"] < b["total_tokens"]
    mean = budgets(out.calls, "mean")
    assert mean["seq_tokens"] < b["seq_tokens"]
    assert b["max_context_tokens"] == max(c.prompt_tokens + c.completion_tokens for c in out.calls)
    assert b["engine_calls"] == 5


def test_long_cot_and_sr_have_equal_seq_and_total():
    for overrides in (["strategy=long_cot"], ["strategy=sr", "strategy.rounds=2"]):
        out, _, _ = run(overrides, ScriptedEngine())
        b = budgets(out.calls)
        assert b["seq_tokens"] == b["total_tokens"] > 0


def test_sr_refines_previous_solution_only():
    answers = iter(["1", "2", "3", "4"])
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: next(answers))
    out, _, _ = run(["strategy=sr", "strategy.rounds=3"], eng)
    prompts = [r.messages[-1].content for r in eng.requests]
    assert len(prompts) == 4
    assert "Previous solution:" in prompts[1] and "\\boxed{1}" in prompts[1]
    assert "\\boxed{2}" in prompts[2] and "\\boxed{1}" not in prompts[2]  # not the history
    assert out.state.final.answer == "4"


def test_sr_error_analysis_critique_reaches_the_revision():
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: "CRIT" if kind == "critique" else "7")
    out, _, _ = run(["strategy=sr", "strategy.rounds=2", "strategy.error_analysis=true"], eng)
    kinds = [r.tag.kind for r in eng.requests]
    assert kinds == ["draft", "critique", "refine", "critique", "refine"]
    assert "Error analysis of the previous solution" in eng.requests[2].messages[-1].content
    assert "\\boxed{CRIT}" in eng.requests[2].messages[-1].content


def test_majority_vote_takes_most_common_answer():
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: "5" if branch in (1, 2, 4) else str(branch + 10))
    out, _, _ = run(["strategy=majority", "strategy.n=6"], eng)
    assert [r.n for r in eng.requests] == [6]
    assert out.state.final.answer == "5"


def test_top_k_shared_one_workspace_with_the_agreeing_drafts():
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: "9" if branch in (0, 3) else f"{branch}0")
    run(["strategy=pdr", "strategy.widths=[4]", "strategy.distill=top_k_shared", "strategy.k=2"], eng)
    final_prompt = eng.requests[-1].messages[-1].content
    assert final_prompt.count("### Candidate") == 2
    assert final_prompt.count("\\boxed{9}") == 2  # the two agreeing drafts are kept


@pytest.mark.parametrize("distill", ["top_k_per_sample", "random_k"])
def test_per_branch_workspaces_send_one_request_per_branch(distill):
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: str(branch))
    out, _, _ = run(["strategy=pdr", "strategy.widths=[8,4]", f"strategy.distill={distill}", "strategy.k=2"], eng)
    round2 = [r for r in eng.requests if r.tag.step == 2]
    assert len(round2) == 4 and all(r.n == 1 for r in round2)
    assert sorted(r.tag.branch for r in round2) == [0, 1, 2, 3]
    workspaces = {r.messages[-1].content for r in round2}
    assert len(workspaces) > 1  # branches see different candidates
    for w in workspaces:
        assert w.count("### Candidate") == 2
    assert len({r.seed for r in round2}) == 4


def test_judge_selection_uses_the_models_choice():
    def answer(kind, branch, prompt):
        return "3, 1" if kind == "select" else str(branch)

    eng = ScriptedEngine(answer_for=answer)
    run(["strategy=pdr", "strategy.widths=[4]", "strategy.distill=top_k_shared", "strategy.k=2",
         "strategy.selection=judge"], eng)
    kinds = [r.tag.kind for r in eng.requests]
    assert kinds == ["draft", "select", "refine"]
    final_prompt = eng.requests[-1].messages[-1].content
    # Candidates 3 and 1 (1-based) are drafts of branches 2 and 0.
    assert "\\boxed{2}" in final_prompt and "\\boxed{0}" in final_prompt and "\\boxed{1}" not in final_prompt


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy=pdr", "strategy.widths=[4,2]", "strategy.distill=top_k_shared", "strategy.k=2"],
        ["strategy=pdr", "strategy.widths=[4,2]", "strategy.distill=global_summary"],
        ["strategy=pdr", "strategy.widths=[4,2]", "strategy.distill=top_k_per_sample", "strategy.k=2"],
        ["strategy=pdr", "strategy.widths=[4,2]", "strategy.distill=random_k", "strategy.k=2"],
        ["strategy=sr", "strategy.rounds=2"],  # the previous solution
    ],
    ids=["top_k_shared", "global_summary", "top_k_per_sample", "random_k", "sr_previous_solution"],
)
def test_workspace_bound_respected_for_long_drafts(overrides):
    # Every call returns ~3,000 tokens, three times kappa: each workspace must be cut to kappa,
    # both as logged and inside the prompts the refining calls actually received.
    eng = ScriptedEngine(words=3000)
    out, _, cfg = run([*overrides, "strategy.workspace_tokens=1000"], eng)
    assert out.state.workspaces_log
    for entry in out.state.workspaces_log:
        for ws in entry.get("workspaces") or [entry["workspace"]]:
            assert eng.count_tokens(ws) <= 1000
            assert "tokens omitted" in ws and "\\boxed{" in ws  # the tail with the answer survives
    assert all(0 < r.workspace_tokens <= 1000 for r in out.state.rounds[1:])
    template_words = eng.count_tokens(cfg.prompts.refine) + eng.count_tokens(cfg.prompts.sr_refine)
    for r in eng.requests:
        if r.tag.kind == "refine":
            assert eng.count_tokens(r.messages[-1].content) <= 1000 + template_words + eng.count_tokens(PROBLEM.problem)


def test_trim_tokens_exact_bound():
    text = " ".join(str(i) for i in range(5000))
    for limit in (50, 200, 1000, 4999):
        out = trim_tokens(text, limit, count_words)
        assert count_words(out) <= limit
        assert out.endswith("4999")
    assert trim_tokens("a b c", 10, count_words) == "a b c"


def test_normalize_answer():
    assert normalize_answer("025") == "25"
    assert normalize_answer("\\dfrac{1}{2}") == normalize_answer("\\frac{1}{2}")
    assert normalize_answer(" \\left(1, 2\\right) ") == "(1,2)"
    assert normalize_answer(None) is None


# ---- the simulated engine --------------------------------------------------------------------

def sim(**kw):
    return SimEngine(SimEngineConfig(**kw), [PROBLEM])


def test_sim_is_deterministic_per_seed():
    a, _, _ = run(["strategy=pdr", "strategy.widths=[4,2]"], sim(), seed=1)
    b, _, _ = run(["strategy=pdr", "strategy.widths=[4,2]"], sim(), seed=1)
    c, _, _ = run(["strategy=pdr", "strategy.widths=[4,2]"], sim(), seed=2)
    untimed = lambda o: [{k: v for k, v in e.items() if k not in ("started", "latency_s")} for e in o.trace]  # noqa: E731 - wall-clock fields
    assert untimed(a) == untimed(b) and budgets(a.calls) == budgets(b.calls)
    assert untimed(a) != untimed(c)


def test_sim_text_has_thinking_shape_and_truncates():
    eng = sim(think_tokens=500)
    req_cfg = compose_object(["strategy=long_cot", "sampling.max_tokens=100"])
    ex = Executor(eng, compile_graph(req_cfg.strategy), req_cfg.prompts, req_cfg.sampling, 0, extract=extract_answer)
    out = asyncio.run(ex.run_one(PROBLEM, 0))
    c = out.state.final.completion
    assert c.finish_reason == "length" and c.completion_tokens == 100
    assert out.state.final.answer is None
    ok_cfg = compose_object(["strategy=long_cot", "sampling.max_tokens=20000"])
    ex = Executor(eng, compile_graph(ok_cfg.strategy), ok_cfg.prompts, ok_cfg.sampling, 0, extract=extract_answer)
    out = asyncio.run(ex.run_one(PROBLEM, 0))
    c = out.state.final.completion
    assert c.finish_reason == "stop" and c.reasoning and "\\boxed{" in c.text
    assert c.completion_tokens == count_words(c.reasoning) + count_words(c.text) + 2


def _refine_accuracy(workspace_answers: list[str], trials: int = 300) -> float:
    from pdr.engines.base import Message, RequestTag, SamplingParams

    eng = SimEngine(SimEngineConfig(skill=0.5, anchoring=0.6), [PROBLEM])
    ws = "\n".join(f"### Candidate {i}\nblah \\boxed{{{a}}}" for i, a in enumerate(workspace_answers, 1))
    prompt = f"Problem:\n{PROBLEM.problem}\n\nWorkspace:\n{ws}"
    hits = 0
    for seed in range(trials):
        req = GenRequest((Message("user", prompt),), SamplingParams(max_tokens=100000), n=1, seed=seed * 7919,
                         tag=RequestTag("p1", 0, 2, "draft"))
        (c,) = asyncio.run(eng.generate(req))
        hits += extract_answer(c.text) == "12"
    return hits / trials


def test_sim_anchoring_correct_workspace_helps_wrong_workspace_hurts():
    base = _refine_accuracy([])
    good = _refine_accuracy(["12", "12"])
    bad = _refine_accuracy(["13", "11"])
    assert good > base + 0.2
    assert bad < base - 0.07


def test_sim_wrong_answers_recur_so_votes_can_converge_on_them():
    eng = sim(skill=0.0)
    cfg = compose_object(["strategy=majority", "strategy.n=16"])
    ex = Executor(eng, compile_graph(cfg.strategy), cfg.prompts, cfg.sampling, 0, extract=extract_answer)
    out = asyncio.run(ex.run_one(P("p1", PROBLEM.problem, "12", difficulty=0.9), 0))
    answers = out.state.rounds[0].answers
    top = max(set(answers), key=answers.count)
    assert answers.count(top) >= 5 and top != "12"


def test_prompt_templates_keep_latex_braces():
    cfg = compose_object([])
    assert "\\boxed{}" in cfg.prompts.draft
    eng = ScriptedEngine()
    run(["strategy=long_cot"], eng)
    assert "\\boxed{}" in eng.requests[0].messages[-1].content
    assert re.search(r"\{problem\}", eng.requests[0].messages[-1].content) is None


def test_generate_after_critique_sends_each_branch_its_own_critique():
    # Regression: with no workspace, a generate after a critique of 4 drafts sent ONE request
    # carrying only the first critique (an operator-precedence slip); the others were paid for
    # and dropped.
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: f"C{branch}" if kind == "critique" else str(branch))
    run_steps([{"op": "generate", "n": 4}, {"op": "critique"}, {"op": "generate", "n": 4}, {"op": "vote"}], eng)
    refines = [r for r in eng.requests if r.tag.step == 2]
    assert len(refines) == 4 and all(r.n == 1 for r in refines)
    for r in refines:
        text = r.messages[-1].content
        assert f"\\boxed{{C{r.tag.branch}}}" in text  # its own branch's critique ...
        others = [b for b in range(4) if b != r.tag.branch]
        assert not any(f"\\boxed{{C{b}}}" in text for b in others)  # ... and no other


def test_per_branch_distill_knows_the_next_width_at_compile_time():
    graph = compile_graph(compose_object(["strategy=pdr", "strategy.widths=[8,4]", "strategy.distill=top_k_per_sample",
                                          "strategy.k=2"]).strategy)
    distills = [op for op in graph.ops if op.name == "distill"]
    assert [d.branches for d in distills] == [4, 1]  # the widths of the generates they feed
    shared = compile_graph(compose_object(["strategy=pdr", "strategy.widths=[8,4]"]).strategy)
    assert [op.branches for op in shared.ops if op.name == "distill"] == [1, 1]


def test_first_drafts_are_draft_calls_and_everything_after_is_refine():
    eng = ScriptedEngine()
    run(["strategy=sr", "strategy.rounds=2"], eng)
    assert [r.tag.kind for r in eng.requests] == ["draft", "refine", "refine"]
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: str(branch))
    run_steps([{"op": "generate", "n": 2}, {"op": "critique"}, {"op": "generate", "n": 2}, {"op": "vote"}], eng)
    assert [r.tag.kind for r in eng.requests] == ["draft", "critique", "critique", "refine", "refine"]


def test_refine_seeds_match_the_draft_seeds_of_before():
    # Renaming the refine calls' kind must not change their seeds: simulated results and the call
    # cache's keys stay what they were.
    from pdr.executor import derive_seed

    eng = ScriptedEngine()
    run(["strategy=sr", "strategy.rounds=1"], eng)
    refine = eng.requests[-1]
    assert refine.tag.kind == "refine"
    assert refine.seed == derive_seed(0, PROBLEM.id, 0, refine.tag.step, "draft", 0)


def test_per_sample_judge_is_one_fork_as_wide_as_the_next_generate():
    eng = ScriptedEngine(answer_for=lambda kind, branch, prompt: "2, 1" if kind == "select" else str(branch))
    run(["strategy=pdr", "strategy.widths=[4,3]", "strategy.distill=top_k_per_sample", "strategy.k=2",
         "strategy.selection=judge"], eng)
    assert [(r.tag.kind, r.tag.step, r.n) for r in eng.requests if r.tag.kind == "select"] == [("select", 1, 3),
                                                                                                ("select", 3, 1)]
    assert [(r.tag.kind, r.n) for r in eng.requests if r.tag.step == 4] == [("refine", 1)]
