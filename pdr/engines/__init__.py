"""Engines by name: `engine=sim|sglang|openai` (see `pdr.engines.registry`). Engine modules are
imported only when chosen."""

from __future__ import annotations

from pdr.engines.registry import engine_names, make_engine, register_engine

__all__ = ["engine_names", "make_engine", "register_engine"]
