"""The engine registry: built-ins by name, did-you-mean, a new engine registered in a few lines,
and the layering (the config layer never imports engines; HTTP engines load only when chosen)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pdr.config.engines import (
    ENGINE_SCHEMAS,
    EngineConfig,
    OpenAIEngineConfig,
    SGLangEngineConfig,
    SimEngineConfig,
)
from pdr.engines import make_engine, register_engine
from pdr.engines import registry as registry_module
from pdr.engines.base import BaseEngine, Completion, Engine, GenRequest, Message, SamplingParams
from pdr.errors import ConfigError


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Engines registered by a test disappear after it (the tables are copied, then restored)."""
    monkeypatch.setattr(registry_module, "_ENGINES", dict(registry_module._ENGINES))
    saved = dict(ENGINE_SCHEMAS)
    yield
    ENGINE_SCHEMAS.clear()
    ENGINE_SCHEMAS.update(saved)


@pytest.mark.parametrize(
    ("cfg", "cls_name"),
    [
        (SimEngineConfig(), "SimEngine"),
        (SGLangEngineConfig(), "SGLangEngine"),
        (OpenAIEngineConfig(), "OpenAIEngine"),
    ],
)
def test_builtin_engines_by_name(cfg: EngineConfig, cls_name: str, tmp_path: Any) -> None:
    engine = make_engine(cfg, (), tmp_path)  # not started: no server needed
    assert type(engine).__name__ == cls_name and engine.name == cfg.name
    assert isinstance(engine, Engine)
    assert registry_module.engine_entry(cfg.name).schema is type(cfg)


def test_unknown_engine_is_a_config_error_with_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"engine.name='sglng': unknown engine \(did you mean 'sglang'\?\)"):
        make_engine(SimEngineConfig(name="sglng"))


def test_config_of_another_engine_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs a SimEngineConfig"):
        make_engine(OpenAIEngineConfig(name="sim"))


# A complete engine, as docs/extending.md describes it: a schema, a class, one decorator line
# (`@register_engine("echo_test", EchoEngineConfig)` above the class in a module of its own; applied
# inside the tests here, so that the session's registry holds only the built-ins afterwards).


@dataclass
class EchoEngineConfig(EngineConfig):
    name: str = "echo_test"
    model: str = "echo"
    prefix: str = "You said: "


class EchoEngine(BaseEngine):
    """Answers each prompt with its last message; branch i appends its index."""

    name = "echo_test"

    def __init__(self, cfg: EchoEngineConfig, problems: Any = (), *, run_dir: Any = None):
        super().__init__(cfg.max_concurrency)
        self.cfg = cfg

    async def _generate(self, request: GenRequest) -> list[Completion]:
        last = request.messages[-1].content
        return [
            Completion(text=f"{self.cfg.prefix}{last} #{i}", completion_tokens=self.count_tokens(last))
            for i in range(request.n)
        ]


def test_a_new_engine_registered_from_a_test_file(clean_registry: None) -> None:
    register_engine("echo_test", EchoEngineConfig)(EchoEngine)
    assert ENGINE_SCHEMAS["echo_test"] is EchoEngineConfig  # offered to Hydra by register_configs
    assert "echo_test" in registry_module.engine_names()

    engine = make_engine(EchoEngineConfig(prefix="> "))
    assert isinstance(engine, EchoEngine) and isinstance(engine, Engine)

    async def go() -> list[Completion]:
        await engine.start()
        try:
            req = GenRequest((Message("user", "hello there"),), SamplingParams(max_tokens=16), n=3, seed=1)
            return await engine.generate(req)
        finally:
            await engine.close()

    out = asyncio.run(go())
    assert [c.text for c in out] == ["> hello there #0", "> hello there #1", "> hello there #2"]
    assert engine.calls == 1 and out[0].completion_tokens == 3  # BaseEngine's 4-characters estimate


def test_register_configs_stores_every_engine_schema(clean_registry: None) -> None:
    from hydra.core.config_store import ConfigStore

    from pdr.config.schema import register_configs

    register_engine("echo_test", EchoEngineConfig)(EchoEngine)
    register_configs()
    stored = ConfigStore.instance().list("engine")
    for name in ("sim", "sglang", "openai", "echo_test"):
        assert f"{name}_schema.yaml" in stored


def test_a_second_engine_under_a_taken_name_is_refused(clean_registry: None) -> None:
    with pytest.raises(ValueError, match="schema EchoEngineConfig differs"):
        register_engine("sim", EchoEngineConfig)

    class Other(BaseEngine):
        pass

    registry_module.engine_entry("sim")  # the built-in is loaded (imported on demand)

    with pytest.raises(ValueError, match="already registered"):
        register_engine("sim", SimEngineConfig)(Other)


def test_layering_config_imports_no_engine_and_sim_loads_no_http() -> None:
    code = (
        "import sys\n"
        "import pdr.config.schema\n"
        "assert not [m for m in sys.modules if m.startswith('pdr.engines')], 'config imported engines'\n"
        "from pdr.config.engines import SimEngineConfig\n"
        "from pdr.engines import make_engine\n"
        "make_engine(SimEngineConfig())\n"
        "assert 'aiohttp' not in sys.modules and 'tenacity' not in sys.modules, 'sim loaded the HTTP stack'\n"
        "assert 'pdr.engines.sglang' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo_root()))


def _repo_root() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parents[2]
