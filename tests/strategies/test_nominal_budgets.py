"""Nominal budgets (caps x calls, the paper's way of stating budgets) beside the measured ones,
exact against the scripted engine's ledger."""

from __future__ import annotations

from pdr.executor import budgets
from tests.strategies.scripted import ScriptedEngine, run, run_steps


def test_pdr_nominal_is_caps_times_calls_on_the_critical_path_and_overall():
    out, _, _ = run(["strategy=pdr", "strategy.widths=[4,2]", "sampling.max_tokens=1000"], ScriptedEngine())
    b = budgets(out.calls)
    # steps: draft x4, summary, refine x2, summary, refine x1 -> 5 steps on the path, 9 completions
    assert [c.cap for c in out.calls] == [1000] * 9
    assert b["seq_tokens_nominal"] == 5 * 1000
    assert b["total_tokens_nominal"] == 9 * 1000
    # the measured budgets are what the scripted engine produced, independent of the cap
    assert b["seq_tokens"] < b["seq_tokens_nominal"]


def test_nominal_uses_each_call_own_cap():
    steps = [{"op": "generate", "n": 3, "max_tokens": 300}, {"op": "distill", "type": "previous_solution", "workspace_tokens": 4096},
             {"op": "generate", "n": 1}]
    out, _ = run_steps(steps, ScriptedEngine())
    b = budgets(out.calls)
    assert b["seq_tokens_nominal"] == 300 + 4096  # the config's default sampling.max_tokens is 4096
    assert b["total_tokens_nominal"] == 3 * 300 + 4096


def test_paper_sr_nominal_matches_the_paper_figures():
    # SR with 6 generations at 24K thinking + 2K buffer: 6 x 26,624 = 159,744 (the paper: "~156K" = 6 x 26K)
    out, _, _ = run(["+experiment=paper_sr", "strategy.rounds=5", "sampling.max_tokens=26624"], ScriptedEngine())
    b = budgets(out.calls)
    assert b["seq_tokens_nominal"] == b["total_tokens_nominal"] == 6 * 26624


def test_token_matched_sr_preset_is_17_calls_of_the_24k_cap():
    out, graph, cfg = run(["+experiment=paper_sr_token_matched"], ScriptedEngine())
    b = budgets(out.calls)
    assert b["engine_calls"] == 17
    assert b["seq_tokens_nominal"] == b["total_tokens_nominal"] == 17 * 26624 == 452_608
