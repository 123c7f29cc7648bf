"""The engine registry: `engine.name` -> (engine class, config schema). One entry per engine.

An engine module registers its class with one decorator line:

    @register_engine("sglang", SGLangEngineConfig)
    class SGLangEngine(HttpEngine): ...

`make_engine(cfg)` finds the entry by `cfg.name`. Engines are imported only when chosen (the HTTP
engines pull in aiohttp; a sim run never loads it): a name the registry does not hold yet but
whose schema is in `pdr.config.engines.ENGINE_SCHEMAS` is imported from `pdr.engines.<name>`
(module = YAML option = registry key). The schemas live in the config layer because Hydra needs
them at compose time, before (and without) any engine import; `pdr/config` never imports
`pdr.engines`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pdr.config.engines import ENGINE_SCHEMAS, EngineConfig
from pdr.engines.base import Engine
from pdr.errors import ConfigError, did_you_mean

E = TypeVar("E", bound=type)


@dataclass(frozen=True)
class EngineEntry:
    name: str
    schema: type[EngineConfig]
    cls: type  # constructed as cls(cfg, problems, run_dir=run_dir)


_ENGINES: dict[str, EngineEntry] = {}


def register_engine(name: str, schema: type[EngineConfig]) -> Callable[[E], E]:
    """Class decorator: register an engine under `name` with its config schema.

    The class is constructed as `cls(cfg, problems, run_dir=run_dir)` (`problems`: the run's
    problems, the answer key of a simulated engine; `run_dir`: where it may write logs) and must
    satisfy `pdr.engines.base.Engine` (subclass `BaseEngine`). A schema not yet known to the
    config layer (an engine defined outside pdr) is added to `ENGINE_SCHEMAS`, so that
    `register_configs()` called afterwards offers it to Hydra as `<name>_schema`.
    """
    if not (isinstance(schema, type) and issubclass(schema, EngineConfig)):
        raise TypeError(
            f"register_engine({name!r}): the schema must be an EngineConfig subclass, not {schema!r}"
        )
    known = ENGINE_SCHEMAS.get(name)
    if known is not None and known is not schema:
        raise ValueError(
            f"engine {name!r}: schema {schema.__name__} differs from the registered {known.__name__}"
        )

    def decorate(cls: E) -> E:
        entry = _ENGINES.get(name)
        if entry is not None and entry.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"engine {name!r} is already registered ({entry.cls.__qualname__})")
        _ENGINES[name] = EngineEntry(name, schema, cls)
        ENGINE_SCHEMAS.setdefault(name, schema)
        return cls

    return decorate


def engine_names() -> list[str]:
    """Every engine name: registered, or known by its schema and importable on demand."""
    return sorted(set(ENGINE_SCHEMAS) | set(_ENGINES))


def engine_entry(name: str) -> EngineEntry:
    """The registry entry of `name`, importing `pdr.engines.<name>` if needed; ConfigError
    (with a did-you-mean) for an unknown name."""
    entry = _ENGINES.get(name)
    if entry is None and name in ENGINE_SCHEMAS:
        importlib.import_module(f"pdr.engines.{name}")
        entry = _ENGINES.get(name)
    if entry is None:
        names = engine_names()
        raise ConfigError(
            f"engine.name={name!r}: unknown engine{did_you_mean(name, names)} (choose one of {', '.join(names)})"
        )
    return entry


def make_engine(cfg: Any, problems: Sequence[Any] = (), run_dir: Path | None = None) -> Engine:
    """Build the engine named by `cfg.name` from its config (an instance of its schema).

    Not started: the caller awaits `start()` (and `close()` at the end)."""
    entry = engine_entry(cfg.name)
    if isinstance(cfg, EngineConfig) and not isinstance(cfg, entry.schema):
        raise ConfigError(
            f"engine.name={cfg.name!r}: the config is a {type(cfg).__name__}, the engine needs a {entry.schema.__name__}"
        )
    return entry.cls(cfg, problems, run_dir=run_dir)
