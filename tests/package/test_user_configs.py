"""The user's own config folders (pdr/config/search_path.py) and the packaging layout, in-process.

Fast, so in the default suite; the built wheel in a fresh virtual environment is
test_installed_wheel.py (`pytest -m package`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pdr.config import search_path
from pdr.errors import ConfigError
from tests.conftest import REPO, compose

EXAMPLE = Path(__file__).parent / "example" / "my-configs"
EXAMPLE_FILES = ["strategy/wide_then_deep.yaml", "experiment/my_study.yaml"]


@pytest.fixture(autouse=True)
def _no_user_dirs(monkeypatch):
    monkeypatch.delenv(search_path.ENV_VAR, raising=False)
    search_path.use_command_line([])
    yield
    search_path.use_command_line([])


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return root


def test_every_pdr_subpackage_is_listed_for_the_wheel_and_conf_is_mapped_into_it():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "pdr").rglob("__init__.py")}
    assert on_disk - set(setuptools["packages"]) == set(), "add the new subpackage to pyproject.toml packages"
    assert setuptools["package-dir"] == {"pdr.conf": "conf"}
    assert "pdr.conf" in setuptools["packages"]


def test_the_shipped_configs_are_the_checkouts_conf_in_an_editable_install():
    # In a checkout (editable install) pkg://pdr.conf is conf/ itself: edits show at once.
    assert Path(str(search_path.shipped())).resolve() == (REPO / "conf").resolve()


def test_readme_example_is_the_tested_example():
    readme = (REPO / "README.md").read_text()
    for rel in EXAMPLE_FILES:
        block = re.search(rf"```yaml\n# my-configs/{re.escape(rel)}\n(.*?)```", readme, re.S)
        assert block, f"README has no ```yaml block starting with '# my-configs/{rel}'"
        assert block.group(1) == (EXAMPLE / rel).read_text(), f"README's {rel} differs from {EXAMPLE / rel}"


def test_readme_example_composes_and_validates_from_pdr_config_path(monkeypatch):
    monkeypatch.setenv(search_path.ENV_VAR, str(EXAMPLE))
    from pdr.strategies.graph import compile_graph

    cfg = OmegaConf.to_object(compose(["+experiment=my_study"]))
    assert cfg.strategy.name == "wide_then_deep" and cfg.samples == 2 and cfg.engine.name == "sim"
    compile_graph(cfg.strategy)
    assert search_path.group_options("strategy") == sorted(
        {p.stem for p in (REPO / "conf" / "strategy").glob("*.yaml")} | {"wide_then_deep"})


def test_a_user_file_overrides_the_shipped_one_of_the_same_name(monkeypatch, tmp_path):
    shipped = (REPO / "conf" / "strategy" / "pdr.yaml").read_text()
    _write(tmp_path, "strategy/pdr.yaml", shipped.replace("widths: [4, 2]", "widths: [3]"))
    assert compose(["+experiment=quickstart"]).strategy.widths == [4, 2]
    monkeypatch.setenv(search_path.ENV_VAR, str(tmp_path))
    assert compose(["+experiment=quickstart"]).strategy.widths == [3]


def test_pdr_config_path_folders_are_searched_in_order(monkeypatch, tmp_path):
    first = _write(tmp_path / "a", "sampling/mine.yaml", "defaults:\n  - sampling_schema\n  - _self_\nmax_tokens: 111\n")
    second = _write(tmp_path / "b", "sampling/mine.yaml", "defaults:\n  - sampling_schema\n  - _self_\nmax_tokens: 222\n")
    monkeypatch.setenv(search_path.ENV_VAR, os.pathsep.join([str(first), str(second)]))
    assert compose(["sampling=mine"]).sampling.max_tokens == 111


@pytest.mark.parametrize("how", ["--config-dir", "-cd", "hydra.searchpath"])
def test_config_dir_and_hydra_searchpath_also_go_before_the_shipped_configs(tmp_path, how):
    shipped = (REPO / "conf" / "strategy" / "pdr.yaml").read_text()
    _write(tmp_path, "strategy/pdr.yaml", shipped.replace("widths: [4, 2]", "widths: [5]"))
    argv = [f"hydra.searchpath=[file://{tmp_path}]"] if how == "hydra.searchpath" else [how, str(tmp_path)]
    search_path.use_command_line(argv + ["+experiment=quickstart"])
    assert compose(["+experiment=quickstart"]).strategy.widths == [5]


def test_a_user_file_is_validated_like_a_shipped_one(monkeypatch, tmp_path):
    _write(tmp_path, "strategy/typo.yaml", "defaults:\n  - pdr_schema\n  - _self_\nname: typo\nwidth: [4]\n")
    monkeypatch.setenv(search_path.ENV_VAR, str(tmp_path))
    with pytest.raises(Exception, match="width"):
        OmegaConf.to_object(compose(["strategy=typo"]))


def test_a_missing_user_folder_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv(search_path.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="PDR_CONFIG_PATH: .*nope: no such directory"):
        search_path.user_entries()
