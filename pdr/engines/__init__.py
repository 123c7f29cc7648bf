"""Engines by name: `engine=sim|sglang|openai`. Modules are imported only when chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pdr.errors import ConfigError, did_you_mean

ENGINES = ("sim", "sglang", "openai")


def make_engine(cfg: Any, problems: Any = (), run_dir: Path | None = None) -> Any:
    """Build the engine named by `cfg.name` (an EngineConfig subclass instance)."""
    name = cfg.name
    if name == "sim":
        from pdr.engines.sim import SimEngine

        return SimEngine(cfg, problems)
    if name == "sglang":
        from pdr.engines.sglang import SGLangEngine

        return SGLangEngine(cfg, run_dir=run_dir)
    if name == "openai":
        from pdr.engines.openai import OpenAIEngine

        return OpenAIEngine(cfg, run_dir=run_dir)
    raise ConfigError(f"engine.name={name!r}: unknown engine{did_you_mean(name, ENGINES)} (choose one of {', '.join(ENGINES)})")
