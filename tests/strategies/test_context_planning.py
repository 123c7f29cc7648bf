"""Context planning before any call: every step's worst-case prompt + generation against the
model's context length; the summarizer and judge read *all* drafts. Realistic sizes: the paper's
presets against Qwen3-8B's 40,960 tokens."""

from __future__ import annotations

import json

import pytest

from pdr.errors import ConfigError
from pdr.strategies.graph import compile_graph
from pdr.strategies.plan import check_context, plan_context
from tests.conftest import compose_object
from tests.strategies.scripted import PROBLEM, ScriptedEngine, run

QWEN3_8B = 40960


def _check(overrides, context_length=QWEN3_8B):
    cfg = compose_object(overrides)
    return check_context(compile_graph(cfg.strategy), cfg.prompts, cfg.sampling.max_tokens, context_length,
                         [PROBLEM.problem])


def test_paper_summary_reading_all_drafts_fails_fast_naming_the_step_numbers_and_fix():
    with pytest.raises(ConfigError) as err:
        _check(["+experiment=paper_pdr_distill", "strategy.distill_input_tokens=null"])
    msg = str(err.value)
    assert "\n" not in msg
    assert "step 1 distill(global_summary) over 16 drafts" in msg
    assert "read 425,984" in msg and "generation 26,624" in msg and "engine.context_length=40,960" in msg
    assert "strategy.distill_input_tokens<=" in msg


def test_judge_reads_all_drafts_too():
    with pytest.raises(ConfigError, match=r"distill\(top_k_per_sample, judge\) over 16 drafts"):
        _check(["+experiment=paper_pdr", "strategy.selection=judge", "strategy.distill_input_tokens=null"])


@pytest.mark.parametrize("preset", ["paper_long_cot", "paper_sr", "paper_pdr", "paper_pdr_distill",
                                    "paper_oracle_correct", "paper_sr_token_matched"])
def test_paper_presets_fit_a_40960_token_model_at_their_largest_cap(preset):
    needs = _check([f"+experiment={preset}"])
    assert max(n.total for n in needs) <= QWEN3_8B


def test_the_24k_refine_is_prompt_plus_kappa_plus_cap():
    cfg = compose_object(["+experiment=paper_pdr"])
    needs = plan_context(compile_graph(cfg.strategy), cfg.prompts, cfg.sampling.max_tokens, ["x"], lambda t: 0)
    refine = [n for n in needs if n.what.startswith("generate(1)")][0]
    assert (refine.reads, refine.generation) == (8192, 26624)


def test_a_workspace_too_large_for_the_context_names_workspace_tokens():
    with pytest.raises(ConfigError, match=r"generate\(8\) \[prompt refine\].*strategy.workspace_tokens<="):
        _check(["+experiment=paper_pdr", "strategy.workspace_tokens=20000"])


def test_the_summarizer_input_bound_is_applied_and_kappa_is_in_the_prompt():
    eng = ScriptedEngine(words=200)
    run(["strategy=pdr", "strategy.widths=[4]", "strategy.distill_input_tokens=200",
         "prompts.summary='{problem} {candidates} within {kappa} tokens'"], eng)
    summary = eng.requests[1].messages[-1].content
    assert "within 2048 tokens" in summary
    cands = summary.split("within")[0]
    assert "tokens omitted" in cands and len(cands.split()) < 4 * 230


def test_the_runner_fails_before_any_call(tmp_path):
    from pdr.runner import run as run_pdr

    cfg = compose_object(["+experiment=paper_pdr_distill", "strategy.distill_input_tokens=null",
                          "engine.context_length=40960", "tracking.enabled=false", "progress=false",
                          "dataset.limit=1", "samples=1"])
    with pytest.raises(ConfigError, match="context planning"):
        run_pdr(cfg, tmp_path / "run", launch_dir=tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_fitting_paper_preset_runs_within_the_context(tmp_path):
    from pdr.runner import run as run_pdr

    cfg = compose_object(["+experiment=paper_pdr_distill", "engine.context_length=40960", "tracking.enabled=false",
                          "progress=false", "dataset.limit=1", "samples=1", "engine.think_tokens=20000"])
    result = run_pdr(cfg, tmp_path / "run", launch_dir=tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert result.summary["max_context_tokens"] <= 40960 and rows[0]["status"] != "error"


def test_the_servers_context_length_is_checked_after_start_before_any_request(tmp_path):
    from pdr.runner import run as run_pdr
    from tests.fakes import FakeSGLangServer

    with FakeSGLangServer(context_length=QWEN3_8B) as srv:
        cfg = compose_object(["+experiment=paper_pdr_distill", "strategy.distill_input_tokens=null",
                              "engine=sglang", f"engine.url={srv.url}", "engine.timeout_s=5",
                              "engine.ready_timeout_s=5", "tracking.enabled=false", "progress=false",
                              "dataset.limit=1", "samples=1", "cache.mode=off"])
        with pytest.raises(ConfigError, match="the server's context_length=40,960"):
            run_pdr(cfg, tmp_path / "run", launch_dir=tmp_path)
        assert srv.count("/generate") == 0


def test_a_width_no_schedule_could_serve_is_refused_before_any_call_without_a_context_length(tmp_path):
    """widths=[4096] with a summarizer: its one call reads 4096 drafts (~16.8M tokens). Forks split
    into requests of engine.max_n; a single prompt cannot be split, so no schedule serves it."""
    from pdr.runner import run as run_pdr

    cfg = compose_object(["+experiment=quickstart", "strategy.widths=[4096]", "tracking.enabled=false",
                          "progress=false", "dataset.limit=1", "samples=1"])
    assert cfg.engine.context_length is None
    with pytest.raises(ConfigError) as err:
        run_pdr(cfg, tmp_path / "run", launch_dir=tmp_path)
    msg = str(err.value)
    assert "distill(global_summary) over 4096 drafts" in msg and "no schedule can serve it" in msg
    assert "a narrower strategy.widths than 4096" in msg and "top_k_shared" in msg
    assert not (tmp_path / "run").exists()


def test_a_wide_fork_with_an_extractive_distill_is_servable():
    # 4096 drafts are 64 requests of engine.max_n=64; top-k shows the refine only k of them.
    needs = _check(["+experiment=quickstart", "strategy.widths=[4096]", "strategy.distill=top_k_shared"], None)
    assert max(n.total for n in needs) < 100_000


def test_a_declared_context_length_beyond_the_ceiling_is_believed():
    _check(["+experiment=quickstart", "strategy.widths=[4096]"], 20_000_000)
