"""Every preset composes; every validation error names the key, the value and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from pdr.config.strategy import PDRStrategyConfig
from pdr.errors import ConfigError
from pdr.strategies.graph import compile_graph
from tests.conftest import CONF, REPO, compose, compose_object

STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))
ENGINES = sorted(p.stem for p in (CONF / "engine").glob("*.yaml"))


def _error(overrides: list[str]) -> str:
    """The ConfigError a user sees for `overrides`: from composing, or from compiling the strategy
    graph, which the runner does first thing (k, widths and workspace_tokens are checked there)."""
    with pytest.raises(Exception) as info:
        compile_graph(compose_object(overrides).strategy)
    exc: BaseException | None = info.value
    while exc is not None and not isinstance(exc, ConfigError):
        exc = exc.__cause__ or exc.__context__
    return str(exc) if exc is not None else str(info.value)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes(experiment):
    cfg = compose_object([f"+experiment={experiment}"])
    assert compile_graph(cfg.strategy).ops


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_composes_and_compiles(strategy):
    cfg = compose_object([f"strategy={strategy}"])
    graph = compile_graph(cfg.strategy)
    assert graph.ops
    assert cfg.strategy.name == strategy


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_preset_composes(dataset):
    overrides = [f"dataset={dataset}"]
    if dataset == "local":
        overrides.append("dataset.path=/tmp/x.jsonl")
    cfg = compose_object(overrides)
    assert cfg.dataset.name


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_preset_composes(engine):
    cfg = compose_object([f"engine={engine}"])
    assert cfg.engine.name == engine


@pytest.mark.parametrize("distill", ["global_summary", "top_k_shared", "top_k_per_sample", "random_k"])
def test_every_distill_type_compiles(distill):
    cfg = compose_object(["strategy=pdr", f"strategy.distill={distill}", "strategy.widths=[8,4]", "strategy.k=2"])
    graph = compile_graph(cfg.strategy)
    assert graph.describe().startswith("generate(8) -> distill(" + distill)
    assert [op.n for op in graph.generate_steps] == [8, 4, 1]


def test_quickstart_is_pdr_4_2_global_summary():
    cfg = compose_object(["+experiment=quickstart"])
    assert cfg.engine.name == "sim" and cfg.dataset.name == "tiny"
    assert compile_graph(cfg.strategy).describe() == (
        "generate(4) -> distill(global_summary) -> generate(2) -> distill(global_summary) -> generate(1)"
    )


def test_experiment_is_not_in_primary_defaults():
    text = (CONF / "config.yaml").read_text()
    assert "experiment" not in [line.strip(" -").split(":")[0] for line in text.splitlines() if line.startswith("  -")]


def test_sr_with_error_analysis_adds_critique_steps():
    plain = compile_graph(compose_object(["strategy=sr", "strategy.rounds=2"]).strategy)
    ea = compile_graph(compose_object(["strategy=sr", "strategy.rounds=2", "strategy.error_analysis=true"]).strategy)
    assert plain.describe() == (
        "generate(1) -> distill(previous_solution) -> generate(1) -> distill(previous_solution) -> generate(1)"
    )
    assert ea.describe().count("critique") == 2


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["strategy.widths=[]"], "strategy.widths=[]"),
        (["strategy.widths=[4,0]"], "widths must be >= 1"),
        (["strategy.distill=top_k_shared", "strategy.k=5", "strategy.widths=[8,4]"], "strategy.k=5: must be <= the smallest width 4"),
        (["strategy.distill=top_k_shard"], "did you mean 'top_k_shared'"),
        (["strategy.distill=random_k", "strategy.widths=[8,4]", "strategy.k=4", "strategy.workspace_tokens=300"], "too small for strategy.k=4"),
        (["strategy.workspace_tokens=10"], "strategy.workspace_tokens=10"),
        (["strategy.selection=judg"], "did you mean 'judge'"),
        (["sampling.max_tokens=0"], "sampling.max_tokens=0: must be >= 1"),
        (["sampling.top_p=1.5"], "sampling.top_p=1.5"),
        (["sampling.temperature=-1"], "sampling.temperature=-1"),
        (["samples=0"], "samples=0: must be >= 1"),
        (["engine.max_concurrency=0"], "engine.max_concurrency=0"),
        (["engine.timeout_s=0"], "engine.timeout_s=0"),
        (["strategy=sr", "strategy.rounds=0"], "strategy.rounds=0"),
        (["strategy=majority", "strategy.n=0"], "strategy.n=0"),
        (["cache.mode=sometimes"], "cache.mode='sometimes'"),
        (["metrics.seq_branch=fastest"], "metrics.seq_branch='fastest'"),
    ],
)
def test_validation_errors_name_key_value_and_fix(overrides, expected):
    assert expected in _error(overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy.no_such_key=1"],  # unknown key
        ["strategy=sr", "strategy.widths=[8]"],  # a key of another strategy is not silently ignored
        ["sampling.max_tokens=lots"],  # wrong type
        ["samples=abc"],
    ],
)
def test_unknown_keys_and_wrong_types_fail_at_compose(overrides):
    with pytest.raises(Exception) as info:
        compose_object(overrides)
    text = str(info.value)
    assert any(word in text for word in ("no_such_key", "widths", "lots", "abc")), text


def _steps(steps):
    return PDRStrategyConfig(steps=steps, widths=[4], distill="global_summary")


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"op": "generat", "n": 2}], "unknown op (did you mean 'generate'?)"),
        ([{"op": "generate", "n": 0}], "strategy.steps[0].n=0: must be >= 1"),
        ([{"op": "generate", "n": 4}], "the last step generates 4 drafts"),
        ([{"op": "distill", "type": "previous_solution"}, {"op": "generate", "n": 1}], "distill before any generate"),
        ([{"op": "generate", "n": 4}, {"op": "distill", "type": "top_k_shared", "k": 5}, {"op": "generate", "n": 1}],
         "k=5 is larger than the 4 drafts"),
        ([{"op": "generate", "n": 4}, {"op": "distill", "type": "global_summry"}, {"op": "generate", "n": 1}],
         "did you mean 'global_summary'"),
        ([{"op": "generate", "n": 1}, {"op": "distill", "type": "previous_solution"}], "ends with a distill step"),
        ([{"op": "generate", "n": 1, "temprature": 0.5}], "unknown key 'temprature'"),
        ([{"op": "repeat", "steps": [{"op": "generate", "n": 1}]}], "exactly one of 'times' or 'over'"),
        ([{"op": "generate", "n": "$item"}], "$item used outside a repeat step"),
        ([{"op": "generate", "n": 1, "prompt": "drafty"}], "did you mean 'draft'"),
    ],
)
def test_graph_errors(steps, expected):
    with pytest.raises(ConfigError) as info:
        compile_graph(_steps(steps))
    assert expected in str(info.value)


def test_composite_majority_of_refinements_is_yaml_only():
    graph = compile_graph(compose_object(["strategy=pdr_vote", "strategy.widths=[8,4]"]).strategy)
    assert graph.describe().endswith("generate(4) -> vote")


@pytest.mark.slow
def test_cli_reports_unknown_group_option_with_suggestion(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdr.run", "strategy=pdrr", "tracking=off"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "strategy=pdrr" in proc.stderr and "did you mean 'pdr'" in proc.stderr


@pytest.mark.slow
def test_cli_reports_validation_error_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdr.run", "+experiment=quickstart", "strategy.k=9",
                           "strategy.distill=top_k_shared", "tracking=off"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "strategy.k=9: must be <= the smallest width 2" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_resolved_config_is_plain_yaml():
    text = OmegaConf.to_yaml(compose(["+experiment=quickstart"]), resolve=True)
    assert "widths:" in text and str(REPO) not in text


@pytest.mark.slow
def test_cli_rejects_keys_appended_with_plus(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdr.run", "+experiment=quickstart", "+engine.timeout=5",
                           "tracking=off"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "engine.timeout: unknown key (did you mean 'timeout_s'?)" in proc.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").glob("*/*/results.jsonl"))


def test_mlflow_params_keep_token_budgets_but_not_secrets():
    from pdr.tracking.mlflow_run import loggable_params

    params = loggable_params({"sampling": {"max_tokens": 5}, "strategy": {"workspace_tokens": 3},
                              "engine": {"api_key_env": "X", "api_key": "s", "hf_token": "t"}})
    assert params == {"sampling.max_tokens": "5", "strategy.workspace_tokens": "3", "engine.api_key_env": "X"}


def test_composite_with_its_own_params_composes_and_runs_on_sim():
    import asyncio

    from pdr.engines.sim import SimEngine
    from pdr.evaluation import extract_answer
    from pdr.executor import Executor
    from tests.strategies.scripted import PROBLEM

    cfg = compose_object(["strategy=critique_vote", "strategy.params.drafts=3", "strategy.params.rounds=2"])
    assert cfg.strategy.params == {"drafts": 3, "rounds": 2}
    graph = compile_graph(cfg.strategy)
    assert graph.describe() == "generate(3) -> critique -> generate(3) -> critique -> generate(3) -> vote"
    engine = SimEngine(cfg.engine, [PROBLEM])
    out = asyncio.run(Executor(engine, graph, cfg.prompts, cfg.sampling, 0, extract=extract_answer).run_one(PROBLEM, 0))
    assert out.error is None and out.state.final is not None
    assert [c.kind for c in out.calls].count("critique") == 6
    assert [rd.width for rd in out.state.rounds] == [3, 3, 3]
    assert "strategy.params.drafts=0: must be >= 1" in _error(["strategy=critique_vote", "strategy.params.drafts=0"])


def test_distill_type_all_was_renamed_previous_solution():
    steps = [{"op": "generate", "n": 1}, {"op": "distill", "type": "all"}, {"op": "generate", "n": 1}]
    with pytest.raises(ConfigError, match="renamed to 'previous_solution'"):
        compile_graph(_steps(steps))


def test_a_distill_whose_workspace_no_generate_reads_is_an_error():
    steps = [{"op": "generate", "n": 4}, {"op": "distill", "type": "global_summary"}, {"op": "vote"}]
    with pytest.raises(ConfigError, match="no generate step follows this distill"):
        compile_graph(_steps(steps))


def test_config_does_not_import_the_strategies():
    # Data flows config -> strategy graph: the schemas must not reach up into pdr.strategies.
    code = ("import sys; import pdr.config.schema; "
            "sys.exit(sorted(m for m in sys.modules if m.startswith('pdr.strategies')) or 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
