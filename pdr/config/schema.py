"""The root config schema and its registration in Hydra's ConfigStore.

Schema first, YAML second: these dataclasses define every key and type; the YAML under `conf/`
supplies values. `OmegaConf.to_object(cfg)` runs each `__post_init__` (pure checks, no I/O), so a
bad value fails before any engine call, with a message naming the override key, value and fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from omegaconf import MISSING

from pdr.config.dataset import DatasetConfig
from pdr.config.engines import ENGINE_SCHEMAS, EngineConfig
from pdr.config.strategy import (
    LongCoTStrategyConfig,
    MajorityStrategyConfig,
    PDRStrategyConfig,
    SRStrategyConfig,
    StrategyConfig,
)
from pdr.errors import ConfigError, check_choice, did_you_mean

BUDGET_FORCING = ("continue", "logit_processor")
PAPER_ANSWER_TOKENS = 2048  # the paper's answer buffer after the thinking cap


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    # The per-call generation cap (thinking + answer). With thinking_tokens set it is derived
    # (thinking_tokens + answer_tokens): leave it null, or equal to that sum.
    max_tokens: int | None = 4096
    # A thinking model's cap on its reasoning; when it is hit the model is made to close its think
    # block and answer within answer_tokens ("budget forcing", pdr/engines/thinking.py). null: one
    # cap (max_tokens) for everything, as for a model that does not think.
    thinking_tokens: int | None = None
    answer_tokens: int | None = None  # the buffer after the thinking cap (null with thinking: 2048)
    # How the thinking cap is enforced on SGLang (docs/real-servers.md, "Thinking budget"):
    #   continue:        cut at thinking_tokens, then a second request that extends the same sequence
    #                    with "</think>" (prefix-cached: no prefill repeated); any SGLang server.
    #   logit_processor: SGLang's thinking-budget custom logit processor in one request (server
    #                    flag --enable-custom-logit-processor; sampling.logit_processor holds it).
    budget_forcing: str = "continue"
    logit_processor: str | None = None  # the processor's serialised form (its to_str())

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ConfigError(f"sampling.temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p={self.top_p}: must be in (0, 1]")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"sampling.top_k={self.top_k}: must be >= 1, or null for the whole vocabulary")
        check_choice("sampling.budget_forcing", self.budget_forcing, BUDGET_FORCING)
        if self.thinking_tokens is None:
            if self.answer_tokens is not None:
                raise ConfigError(
                    f"sampling.answer_tokens={self.answer_tokens}: is the buffer after a thinking cap; set "
                    "sampling.thinking_tokens too, or use sampling.max_tokens alone for a model that does not think"
                )
            if self.max_tokens is None:
                raise ConfigError("sampling.max_tokens=null: set it, or set sampling.thinking_tokens (+ answer_tokens)")
        else:
            if self.thinking_tokens < 1:
                raise ConfigError(f"sampling.thinking_tokens={self.thinking_tokens}: must be >= 1")
            if self.answer_tokens is None:
                self.answer_tokens = PAPER_ANSWER_TOKENS
            if self.answer_tokens < 1:
                raise ConfigError(f"sampling.answer_tokens={self.answer_tokens}: must be >= 1")
            total = self.thinking_tokens + self.answer_tokens
            if self.max_tokens is not None and self.max_tokens != total:
                raise ConfigError(
                    f"sampling.max_tokens={self.max_tokens} contradicts sampling.thinking_tokens="
                    f"{self.thinking_tokens} + sampling.answer_tokens={self.answer_tokens} = {total}: "
                    f"set sampling.max_tokens=null (or {total})"
                )
            self.max_tokens = total
        if self.budget_forcing == "logit_processor" and self.thinking_tokens is not None and not self.logit_processor:
            raise ConfigError(
                "sampling.budget_forcing=logit_processor: needs sampling.logit_processor (the processor's "
                "to_str(), see docs/real-servers.md), or use sampling.budget_forcing=continue"
            )
        if self.max_tokens < 1:
            raise ConfigError(f"sampling.max_tokens={self.max_tokens}: must be >= 1 (the per-call generation cap)")


@dataclass
class TrackingConfig:
    enabled: bool = True
    # MLflow tracking URI; null = a SQLite file `mlflow.db` in the directory pdr.run was started from.
    uri: str | None = None
    experiment: str = "pdr"
    run_name: str | None = None
    # Parent run for this job's run (set by the multirun callback; never via MLFLOW_RUN_ID).
    parent_run_id: str | None = None
    # Problem-samples logged as MLflow traces (spans per step and call; pdr/tracking/traces.py),
    # built from the run's files after the run: off | all | failures | sample:N (N problem-samples,
    # failures first). sample:8 keeps a paper-scale run's traces to a few MB in the store.
    traces: str = "sample:8"
    # Live metrics (problem-samples done, running accuracy, calls, tokens, tokens/s, errors) are
    # logged every this many seconds while the run goes (pdr/tracking/live.py); 0 = off.
    live_interval_s: float = 5.0

    def __post_init__(self) -> None:
        import re

        m = re.fullmatch(r"off|all|failures|sample:(\d+)", str(self.traces))
        if m is None or (m.group(1) is not None and int(m.group(1)) < 1):
            raise ConfigError(f"tracking.traces={self.traces}: choose off, all, failures or sample:N "
                              "(N >= 1 problem-samples, failures first)")
        if self.live_interval_s < 0:
            raise ConfigError(f"tracking.live_interval_s={self.live_interval_s}: must be >= 0 (0 = no live metrics)")


# Each prompt's placeholders: (those it must contain, those it may contain). Only these names are
# substituted (pdr.strategies.state.render), so a misspelt one would reach the model verbatim and a
# dropped one would silently withhold the problem or the workspace: both fail at compose time.
PROMPT_PLACEHOLDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "system": ((), ()),
    "draft": (("problem",), ()),
    "refine": (("problem", "workspace"), ()),
    "summary": (("problem", "candidates"), ("kappa",)),
    "select": (("problem", "candidates"), ("k",)),
    "sr_refine": (("problem", "workspace"), ()),
    "critique": (("problem", "solution"), ()),
    "critique_block": (("critique",), ()),
    "candidate": (("solution",), ("index",)),
}
# A `{name}` that is not a LaTeX argument: not right after a letter (`\boxed{x}`), a backslash,
# `}` (`\frac{a}{b}`), `^` or `_` (`x^{n}`). Those are left alone by render() and need no check.
_BRACED_NAME = re.compile(r"(?<![A-Za-z\\}^_])\{([A-Za-z_][A-Za-z0-9_]*)\}")


def check_prompt(name: str, template: str | None) -> None:
    """ConfigError (one line, naming `prompts.<name>` and the placeholder) if `template` lacks a
    placeholder the prompt needs or holds one it does not take."""
    if template is None or template == MISSING or name not in PROMPT_PLACEHOLDERS:
        return  # MISSING: the schema alone, before the YAML's values
    required, optional = PROMPT_PLACEHOLDERS[name]
    allowed = (*required, *optional)
    takes = ", ".join(f"{{{p}}}" for p in allowed) or "no placeholders"
    # A known name is substituted wherever it stands (render() has no LaTeX rule); an unknown one
    # is reported only where it cannot be a LaTeX argument.
    found = {p for p in allowed if f"{{{p}}}" in template}
    for p in _BRACED_NAME.findall(template):
        if p not in allowed:
            hint = did_you_mean(p, allowed).replace("'", "")
            hint = re.sub(r"did you mean (\w+)", r"did you mean {\1}", hint)
            raise ConfigError(f"prompts.{name}: unknown placeholder {{{p}}}{hint}; the {name} prompt takes {takes}")
    for p in required:
        if p not in found:
            raise ConfigError(f"prompts.{name}: missing placeholder {{{p}}}; the {name} prompt needs {takes}")


@dataclass
class PromptsConfig:
    """Prompt templates. Placeholders per prompt: `PROMPT_PLACEHOLDERS` (checked at compose time).
    Only these names are substituted, so LaTeX braces in templates are safe."""

    system: str | None = None
    draft: str = MISSING
    refine: str = MISSING
    summary: str = MISSING
    select: str = MISSING
    sr_refine: str = MISSING
    critique: str = MISSING
    critique_block: str = MISSING
    candidate: str = MISSING  # how one candidate is shown inside {candidates} / an extractive workspace

    def __post_init__(self) -> None:
        for name in PROMPT_PLACEHOLDERS:
            check_prompt(name, getattr(self, name))


@dataclass
class CacheConfig:
    # on: read and write; read_only: reuse, never write; off: no cache.
    # auto: on for real engines, off for the simulated one (its calls cost nothing).
    mode: str = "auto"
    path: str | None = None  # null = ~/.cache/pdr/calls.sqlite (or $PDR_CACHE_DIR/calls.sqlite)

    def __post_init__(self) -> None:
        check_choice("cache.mode", self.mode, ("auto", "on", "off", "read_only"))


@dataclass
class GradingConfig:
    timeout_s: float = 5.0  # hard wall-clock limit per equivalence check
    workers: int = 1  # grading worker processes (killable on timeout)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"grading.timeout_s={self.timeout_s}: must be > 0")
        if self.workers < 0:
            raise ConfigError(f"grading.workers={self.workers}: must be >= 0 (0 = in-process, no hard timeout)")


@dataclass
class MetricsConfig:
    # Which branch of a parallel step is charged to the sequential budget. The paper leaves it
    # open; "slowest" is the latency-critical path of a real system, "mean" the average branch.
    seq_branch: str = "slowest"
    bootstrap_samples: int = 2000
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        check_choice("metrics.seq_branch", self.seq_branch, ("slowest", "mean"))
        if not 0.5 <= self.ci_level < 1:
            raise ConfigError(f"metrics.ci_level={self.ci_level}: must be in [0.5, 1)")
        if self.bootstrap_samples < 100:
            raise ConfigError(f"metrics.bootstrap_samples={self.bootstrap_samples}: must be >= 100")


@dataclass
class Config:
    engine: EngineConfig = MISSING
    strategy: StrategyConfig = MISSING
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    dataset: DatasetConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    samples: int = 1  # independent runs per problem; accuracy is mean@samples
    seed: int = 0  # all randomness derives from it
    # Continue the newest earlier run with the same config (or the run directory given in
    # output_dir): finished (problem, sample) rows are kept, nothing finished is re-sent.
    resume: bool = False
    output_dir: str | None = None  # null = Hydra's run directory
    progress: bool = True  # progress bar on stderr
    # Free-form notes logged as an MLflow tag (what this run is for).
    notes: str | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"samples={self.samples}: must be >= 1 (mean@samples accuracy)")


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("pdr_rand"):
        import uuid

        # A short random id for output directories; cached so one run resolves one value.
        OmegaConf.register_new_resolver("pdr_rand", lambda: uuid.uuid4().hex[:6], use_cache=True)
    if not OmegaConf.has_resolver("pdr_sim_suffix"):
        # `experiment: paper-aime${pdr_sim_suffix:${engine.name}}`: a preset's simulated runs log to
        # `<name>-sim`, so that they never mix with a model's results in one MLflow experiment.
        OmegaConf.register_new_resolver("pdr_sim_suffix", lambda engine: "-sim" if engine == "sim" else "")
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for engine_name, engine_schema in ENGINE_SCHEMAS.items():
        cs.store(group="engine", name=f"{engine_name}_schema", node=engine_schema)
    cs.store(group="strategy", name="pdr_schema", node=PDRStrategyConfig)
    cs.store(group="strategy", name="sr_schema", node=SRStrategyConfig)
    cs.store(group="strategy", name="majority_schema", node=MajorityStrategyConfig)
    cs.store(group="strategy", name="long_cot_schema", node=LongCoTStrategyConfig)
    cs.store(group="strategy", name="graph_schema", node=StrategyConfig)
    cs.store(group="dataset", name="dataset_schema", node=DatasetConfig)
    cs.store(group="sampling", name="sampling_schema", node=SamplingConfig)
    cs.store(group="tracking", name="tracking_schema", node=TrackingConfig)
    cs.store(group="prompts", name="prompts_schema", node=PromptsConfig)
