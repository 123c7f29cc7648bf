"""Strategy config schemas, one per strategy preset (`strategy=pdr|sr|long_cot|majority`).

A strategy is a graph of steps (`steps`, see pdr/strategies/graph.py) plus the few knobs that its
YAML interpolates into the steps (`${strategy.widths}` ...). Each schema holds only the knobs its
strategy uses, so `strategy.widths=[8]` with `strategy=sr` fails at compose time. A strategy
written in YAML only keeps its own knobs in `params` (`${strategy.params.pairs}`).

Checks here concern one knob at a time. Names (distill types, selection rules, prompts) and the
rules that tie knobs to the graph (k <= the widths, the workspace_tokens share per candidate) are
checked by the graph compiler, `pdr.strategies.graph.compile_graph`, against its registries: the
runner compiles the graph first thing, before any engine call, and the compiler's errors still
name these keys (`strategy.k=5: must be <= the smallest width 4 ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdr.errors import ConfigError


@dataclass
class StrategyConfig:
    name: str = "custom"
    # The graph: a list of steps, each a dict with an `op` (generate, distill, critique, vote,
    # repeat). Validated and compiled by pdr.strategies.graph.compile_graph.
    steps: list[Any] = field(default_factory=list)
    # A composite strategy's own knobs, for its steps to interpolate: `params: {pairs: 2}` and
    # `n: ${strategy.params.pairs}`; override with `strategy.params.pairs=3`.
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError(f"strategy.steps is empty for strategy {self.name!r}: a strategy needs at least one step")


@dataclass
class WorkspaceStrategyConfig(StrategyConfig):
    """Knobs shared by strategies that carry a bounded textual workspace between rounds."""

    workspace_tokens: int = 4096  # kappa: the bound on the workspace, in tokens
    # Whether drafts enter the workspace with their thinking (<think>...</think>) or only the
    # visible solution text. The paper's APIs (o3-mini, gemini) expose no raw thoughts.
    include_thinking: bool = False


@dataclass
class PDRStrategyConfig(WorkspaceStrategyConfig):
    name: str = "pdr"
    widths: list[int] = field(default_factory=lambda: [4, 2])  # drafts per round before the final refine
    distill: str = "global_summary"  # a distill type (pdr/strategies/distill.py)
    # Candidates kept by the top-k and random-k distill types (null: 2). Other types keep no k:
    # setting it with them does nothing and is warned about.
    k: int | None = None
    # How top-k candidates are scored (the paper leaves this open):
    #   agreement: by how many drafts share the candidate's final answer (no extra calls)
    #   judge:     the model ranks the candidates (one extra call per selection)
    selection: str = "agreement"
    # The bound on what a summarizer / judge call reads (it reads *all* drafts of the round): each
    # draft is cut to an equal share. null: drafts in full (checked against the context length
    # before the first call, pdr/strategies/plan.py).
    distill_input_tokens: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.widths:
            raise ConfigError("strategy.widths=[]: needs at least one round, e.g. strategy.widths=[8] or [16,8,4]")
        for i, w in enumerate(self.widths):
            if w < 1:
                raise ConfigError(f"strategy.widths={list(self.widths)}: round {i + 1} has width {w}; widths must be >= 1")


@dataclass
class SRStrategyConfig(WorkspaceStrategyConfig):
    name: str = "sr"
    rounds: int = 3  # refinements after the first draft
    error_analysis: bool = False  # an explicit error-analysis call before each revision

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 1:
            raise ConfigError(f"strategy.rounds={self.rounds}: must be >= 1 (use strategy=long_cot for no refinement)")


@dataclass
class MajorityStrategyConfig(StrategyConfig):
    name: str = "majority"
    n: int = 8  # independent samples voted on

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ConfigError(f"strategy.n={self.n}: must be >= 1")


@dataclass
class LongCoTStrategyConfig(StrategyConfig):
    name: str = "long_cot"
