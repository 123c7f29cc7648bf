"""Oracle workspaces (the paper's verification-ability analysis): selection=oracle_correct /
oracle_incorrect builds the workspace from the gold-correct / gold-incorrect drafts only, falls
back to all drafts when none is of the wanted kind, and marks every row `oracle: true`."""

from __future__ import annotations

import re

import pytest

from pdr.executor import outcome_row
from pdr.strategies.graph import compile_graph
from tests.conftest import compose_object
from tests.strategies.scripted import PROBLEM, ScriptedEngine, run


def _engine(draft_answers):
    # drafts: branch i answers draft_answers[i]; everything else answers 12 (the gold answer)
    return ScriptedEngine(answer_for=lambda kind, branch, prompt: draft_answers[branch] if kind == "draft" else "12")


def _boxes(text):
    return re.findall(r"\\boxed\{(\d+)\}", text)


@pytest.mark.parametrize("distill", ["top_k_shared", "top_k_per_sample", "random_k"])
@pytest.mark.parametrize(("selection", "expected"), [("oracle_correct", {"12"}), ("oracle_incorrect", {"7", "8"})])
def test_oracle_workspace_holds_only_drafts_of_the_wanted_kind(distill, selection, expected):
    eng = _engine(["7", "12", "8", "12"])
    out, graph, _ = run(["strategy=pdr", "strategy.widths=[4]", f"strategy.distill={distill}", "strategy.k=2",
                         f"strategy.selection={selection}"], eng)
    assert graph.oracle and selection in graph.describe()
    refine = eng.requests[-1].messages[-1].content
    workspace = refine.split("Workspace:")[1]
    assert set(_boxes(workspace)) <= expected and _boxes(workspace)
    assert "oracle_fallback" not in out.notes
    assert out.oracle is True


def test_oracle_global_summary_summarises_only_the_wanted_drafts():
    eng = _engine(["7", "12", "8", "12"])
    run(["strategy=pdr", "strategy.widths=[4]", "strategy.selection=oracle_incorrect"], eng)
    summary_prompt = eng.requests[1].messages[-1].content
    assert eng.requests[1].tag.kind == "summary"
    assert sorted(_boxes(summary_prompt.split("Candidate solutions:")[1])) == ["7", "8"]


def test_oracle_fallback_when_no_draft_is_of_the_wanted_kind():
    eng = _engine(["7", "7", "8", "8"])
    out, _, _ = run(["strategy=pdr", "strategy.widths=[4]", "strategy.distill=top_k_shared",
                     "strategy.selection=oracle_correct"], eng)
    assert out.notes["oracle_fallback"] == 1
    assert set(_boxes(eng.requests[-1].messages[-1].content.split("Workspace:")[1])) <= {"7", "8"}


def test_rows_carry_oracle_and_simulated():
    from pdr.evaluation.grading import Grade

    eng = _engine(["7", "12", "8", "12"])
    out, _, _ = run(["strategy=pdr", "strategy.widths=[4]", "strategy.selection=oracle_correct"], eng)
    row = outcome_row(out, PROBLEM, {}, Grade(True, "correct", "12"), "slowest")
    assert row["oracle"] is True and row["simulated"] is False
    out2, _, _ = run(["strategy=pdr", "strategy.widths=[4]"], _engine(["7", "12", "8", "12"]))
    assert outcome_row(out2, PROBLEM, {}, Grade(True, "correct", "12"), "slowest")["oracle"] is False


def test_non_oracle_graphs_are_not_oracle():
    assert not compile_graph(compose_object(["strategy=pdr"]).strategy).oracle
    assert not compile_graph(compose_object(["strategy=sr"]).strategy).oracle
