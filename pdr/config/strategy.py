"""Strategy config schemas, one per strategy preset (`strategy=pdr|sr|long_cot|majority`).

A strategy is a graph of steps (`steps`, see pdr/strategies/graph.py) plus the few knobs that its
YAML interpolates into the steps (`${strategy.widths}` ...). Each schema holds only the knobs its
strategy uses, so `strategy.widths=[8]` with `strategy=sr` fails at compose time.

Choice-valued knobs are plain strings validated here (not Enums) so that a typo gets a
"did you mean" suggestion rather than OmegaConf's bare list of options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdr.errors import ConfigError, did_you_mean

DISTILL_TYPES = ("global_summary", "top_k_shared", "top_k_per_sample", "random_k")
SELECTION_RULES = ("agreement", "judge")
# An extractive workspace gives each of its k candidates workspace_tokens / k tokens; below this a
# candidate cannot hold a worked solution and its final answer.
MIN_TOKENS_PER_CANDIDATE = 128


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: unknown{did_you_mean(value, choices)} (choose one of {', '.join(choices)})")


@dataclass
class StrategyConfig:
    name: str = "custom"
    # The graph: a list of steps, each a dict with an `op` (generate, distill, critique, vote,
    # repeat). Validated and compiled by pdr.strategies.graph.compile_graph.
    steps: list[Any] = field(default_factory=list)

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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.workspace_tokens < MIN_TOKENS_PER_CANDIDATE:
            raise ConfigError(
                f"strategy.workspace_tokens={self.workspace_tokens}: must be >= {MIN_TOKENS_PER_CANDIDATE} "
                "(the workspace must hold at least one worked solution)"
            )


@dataclass
class PDRStrategyConfig(WorkspaceStrategyConfig):
    name: str = "pdr"
    widths: list[int] = field(default_factory=lambda: [4, 2])  # drafts per round before the final refine
    distill: str = "global_summary"
    k: int = 2  # candidates kept by the extractive distill types
    # How top-k candidates are scored (the paper leaves this open):
    #   agreement: by how many drafts share the candidate's final answer (no extra calls)
    #   judge:     the model ranks the candidates (one extra call per selection)
    selection: str = "agreement"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("strategy.distill", self.distill, DISTILL_TYPES)
        check_choice("strategy.selection", self.selection, SELECTION_RULES)
        if not self.widths:
            raise ConfigError("strategy.widths=[]: needs at least one round, e.g. strategy.widths=[8] or [16,8,4]")
        for i, w in enumerate(self.widths):
            if w < 1:
                raise ConfigError(f"strategy.widths={list(self.widths)}: round {i + 1} has width {w}; widths must be >= 1")
        if self.distill != "global_summary":
            if self.k < 1:
                raise ConfigError(f"strategy.k={self.k}: must be >= 1")
            smallest = min(self.widths)
            if self.k > smallest:
                raise ConfigError(
                    f"strategy.k={self.k}: must be <= the smallest width {smallest} of strategy.widths="
                    f"{list(self.widths)} (lower strategy.k or raise the widths)"
                )
            per = self.workspace_tokens // self.k
            if per < MIN_TOKENS_PER_CANDIDATE:
                raise ConfigError(
                    f"strategy.workspace_tokens={self.workspace_tokens}: too small for strategy.k={self.k} "
                    f"({per} tokens per candidate, need >= {MIN_TOKENS_PER_CANDIDATE}): raise "
                    f"strategy.workspace_tokens to >= {self.k * MIN_TOKENS_PER_CANDIDATE} or lower strategy.k"
                )


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
