"""Simulated and real results never mix by accident: a paper preset's sim runs log to
`<experiment>-sim` by default, and every row says whether it is simulated."""

from __future__ import annotations

import asyncio

import pytest

from pdr.engines.sim import SimEngine
from pdr.evaluation import extract_answer
from pdr.executor import Executor, Outcome, outcome_row
from pdr.strategies.graph import compile_graph
from tests.conftest import compose_object
from tests.strategies.scripted import PROBLEM

PAPER = ["paper_long_cot", "paper_sr", "paper_pdr", "paper_pdr_distill", "paper_sr_token_matched"]


@pytest.mark.parametrize("preset", PAPER)
def test_paper_presets_log_sim_runs_to_their_own_experiment(preset):
    assert compose_object([f"+experiment={preset}"]).tracking.experiment == "paper-aime-sim"
    real = compose_object([f"+experiment={preset}", "engine=sglang", "engine.url=http://127.0.0.1:1"])
    assert real.tracking.experiment == "paper-aime"
    # an explicit name is taken as given
    assert compose_object([f"+experiment={preset}", "tracking.experiment=mine"]).tracking.experiment == "mine"


@pytest.mark.parametrize("preset", ["paper_oracle_correct", "paper_oracle_incorrect"])
def test_oracle_presets_are_oracle_and_separate(preset):
    cfg = compose_object([f"+experiment={preset}"])
    assert cfg.tracking.experiment == "paper-aime-oracle-sim"
    assert compile_graph(cfg.strategy).oracle


def test_every_row_carries_simulated():
    cfg = compose_object(["strategy=long_cot"])
    engine = SimEngine(cfg.engine, [PROBLEM])
    ex = Executor(engine, compile_graph(cfg.strategy), cfg.prompts, cfg.sampling, 0, extract=extract_answer)
    out = asyncio.run(ex.run_one(PROBLEM, 0))
    from pdr.evaluation.grading import grade

    final = out.final_answer
    row = outcome_row(out, PROBLEM, {}, grade(f"\\boxed{{{final}}}", PROBLEM.answer) if final else None, "slowest")
    assert row["simulated"] is True and row["oracle"] is False
    failed = Outcome.failed(PROBLEM.id, 0, RuntimeError("x"), simulated=True)
    assert outcome_row(failed, PROBLEM, {}, None, "slowest")["simulated"] is True
