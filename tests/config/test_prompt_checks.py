"""Prompt templates declare their placeholders; overrides that drop, misspell or add one fail at
compose time (before any engine call), in one line naming the prompt and the placeholder."""

from __future__ import annotations

import logging

import pytest

from pdr.errors import ConfigError
from pdr.strategies.graph import compile_graph
from tests.conftest import compose_object


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("prompts.draft='Solve {problm}'", "prompts.draft: unknown placeholder {problm} (did you mean {problem}?)"),
        ("prompts.draft='Solve it'", "prompts.draft: missing placeholder {problem}"),
        ("prompts.refine='{problem} and nothing else'", "prompts.refine: missing placeholder {workspace}"),
        ("prompts.summary='{problem} {candidates} {workspace}'", "prompts.summary: unknown placeholder {workspace}"),
        ("prompts.critique_block='{solution}'", "prompts.critique_block: unknown placeholder {solution}"),
        ("prompts.system='You solve {problem}'", "prompts.system: unknown placeholder {problem}"),
    ],
)
def test_bad_placeholder_fails_at_compose_in_one_line(override, expected):
    with pytest.raises(ConfigError) as err:
        compose_object([override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value).split("\n    full_key")[0]  # OmegaConf appends its key lines


def test_latex_braces_and_known_placeholders_pass():
    cfg = compose_object(
        [r"prompts.draft='Solve {problem}. Answer as \boxed{answer}; \frac{a}{b}, x^{n}, a_{i}.'",
         "prompts.select='{problem}{candidates} pick {k}'", "prompts.summary='{problem} {candidates} in {kappa} tokens'"]
    )
    assert "{problem}" in cfg.prompts.draft


def test_default_prompts_pass():
    compose_object([])


def test_k_with_global_summary_is_warned_once(caplog):
    cfg = compose_object(["strategy=pdr", "strategy.distill=global_summary", "strategy.k=3"])
    with caplog.at_level(logging.WARNING, logger="pdr.strategies"):
        compile_graph(cfg.strategy)
        compile_graph(cfg.strategy)
    msgs = [r.getMessage() for r in caplog.records if "does nothing" in r.getMessage()]
    assert msgs == ["strategy.k=3 does nothing with distill type global_summary (it keeps no k drafts); drop it"]


def test_default_k_is_silent_and_means_two_for_top_k(caplog):
    with caplog.at_level(logging.WARNING, logger="pdr.strategies"):
        compile_graph(compose_object(["strategy=pdr"]).strategy)
    assert not [r for r in caplog.records if "does nothing" in r.getMessage()]
    graph = compile_graph(compose_object(["strategy=pdr", "strategy.distill=top_k_shared"]).strategy)
    assert "distill(top_k_shared, k=2)" in graph.describe()
