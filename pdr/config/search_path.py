"""Where pdr's configs come from: the shipped ones and the user's own folders in front of them.

The shipped configs are the repository's `conf/`, installed as the package `pdr.conf` (pyproject.toml
maps the folder there at build time; an editable install maps it to the checkout's `conf/`, so edits
show at once). Hydra reads them as `pkg://pdr.conf`, from a wheel as from a checkout.

A user's own presets, strategies, prompts ... live in folders laid out like `conf/`
(`experiment/NAME.yaml`, `strategy/NAME.yaml`, `prompts/NAME.yaml`, `local/default.yaml`, ...).
They are searched in this order, first match wins, so a user file replaces a shipped one of the
same name and a new name simply adds an option:

1. `--config-dir DIR` (`-cd DIR`) on the command line of `python -m pdr.run` / `pdr-run` / `pdr.dryrun`;
2. `hydra.searchpath=[DIR,...]` on the command line, in its order;
3. `PDR_CONFIG_PATH`: directories separated by `os.pathsep` (`:` on Linux and macOS), in order;
4. `pkg://pdr.conf`, the shipped configs.

Hydra itself puts 1 and 2 *after* the primary config's directory (they can add names, not replace
shipped ones); `UserConfigSearchPath`, a Hydra SearchPathPlugin registered by `register()`, puts
them in front as well, before Hydra composes anything (the entries after `pkg://pdr.conf` that
Hydra adds stay; they are then never reached first). Every file found this way is composed and
checked against the schemas exactly like a shipped one.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from pdr.errors import ConfigError, PdrError

PACKAGE = "pdr.conf"
PRIMARY = f"pkg://{PACKAGE}"  # the shipped configs, as Hydra names them
ENV_VAR = "PDR_CONFIG_PATH"
PROVIDER = "pdr user configs"  # shown by `python -m pdr.run --info searchpath`

# Set from the command line by `use_command_line` (the entry points call it before Hydra runs).
_command_line: list[str] = []


def _file_entry(path: str, what: str) -> str:
    p = Path(path).expanduser().absolute()
    if not p.is_dir():
        raise ConfigError(f"{what}: {path}: no such directory (a folder laid out like conf/, e.g. with strategy/ "
                          "and experiment/ inside)")
    return f"file://{p}"


def _entry(value: str, what: str) -> str:
    """A search-path entry as Hydra writes it: `pkg://module`, or `file://` + an absolute path."""
    if value.startswith("pkg://"):
        return value
    return _file_entry(value.removeprefix("file://"), what)


def env_entries() -> list[str]:
    """The `PDR_CONFIG_PATH` directories as search-path entries, in order (empty parts skipped)."""
    raw = os.environ.get(ENV_VAR, "")
    return [_file_entry(part, ENV_VAR) for part in raw.split(os.pathsep) if part.strip()]


def use_command_line(argv: list[str]) -> None:
    """Take `--config-dir`/`-cd` and a `hydra.searchpath=[...]` override from `argv` (a command line
    of `python -m pdr.run`) so that they go in front of the shipped configs. `argv` is not changed:
    Hydra still sees both and adds them behind the shipped configs, where they are never reached first."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    entries: list[str] = []
    config_dir = None
    for i, arg in enumerate(argv):
        for flag in ("--config-dir", "-cd"):
            if arg == flag and i + 1 < len(argv):
                config_dir = argv[i + 1]
            elif arg.startswith(flag + "="):
                config_dir = arg.split("=", 1)[1]
    if config_dir is not None:
        entries.append(_entry(config_dir, "--config-dir"))
    for arg in argv:
        if arg.startswith("hydra.searchpath="):
            try:
                value = OverridesParser.create().parse_override(arg).value()
            except Exception:  # noqa: BLE001 - malformed: Hydra reports it with its own message
                continue
            if isinstance(value, list):
                entries += [_entry(str(v), "hydra.searchpath") for v in value]
    _command_line[:] = entries


def user_entries() -> list[str]:
    """The user's search-path entries, highest priority first (see the module docstring)."""
    return [*_command_line, *env_entries()]


class UserConfigSearchPath(SearchPathPlugin):
    """Puts the user's config folders in front of `pkg://pdr.conf`. Does nothing for other Hydra apps."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(element.path == PRIMARY for element in search_path.get_path()):
            return
        for entry in user_entries():  # each goes right before the shipped configs: order is kept
            search_path.prepend(PROVIDER, entry, anchor=SearchPathQuery(provider=None, path=PRIMARY))


def register() -> None:
    """Register `UserConfigSearchPath` with Hydra (idempotent). Called by the entry points and
    `compose`; a plugin registered this way affects only the process that imports pdr."""
    Plugins.instance().register(UserConfigSearchPath)


def shipped() -> Traversable:
    """The shipped config folder (a real directory for wheel and editable installs)."""
    try:
        return resources.files(PACKAGE)
    except ModuleNotFoundError as exc:
        raise PdrError(
            f"pdr's configs are not installed (no package {PACKAGE}). Reinstall pdr: `pip install .`, or in a "
            'checkout `pip install -e ".[dev]"` (an editable install made before the configs were packaged '
            "does not map conf/ to pdr.conf)"
        ) from exc


def _folders() -> list[Traversable]:
    out: list[Traversable] = []
    for entry in user_entries():
        if entry.startswith("pkg://"):
            try:
                out.append(resources.files(entry.removeprefix("pkg://")))
            except ModuleNotFoundError:
                continue
        else:
            out.append(Path(entry.removeprefix("file://")))
    out.append(shipped())
    return out


def group_options(group: str) -> list[str] | None:
    """The options of config group `group` (e.g. "strategy") over the user's folders and the shipped
    configs, sorted; None when no folder has the group."""
    found = False
    options: set[str] = set()
    for folder in _folders():
        node = folder
        for part in group.split("/"):
            node = node.joinpath(part)
        if not node.is_dir():
            continue
        found = True
        options.update(p.name[: -len(".yaml")] for p in node.iterdir() if p.name.endswith(".yaml"))
    return sorted(options) if found else None


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False) -> Any:
    """The DictConfig that `python -m pdr.run OVERRIDES` composes (schemas registered, the user's
    folders in front), through Hydra's compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from pdr.config.schema import register_configs

    register_configs()  # idempotent; without it the YAML's `*_schema` defaults do not resolve
    register()
    shipped()  # a clear error when the configs are not installed
    with initialize_config_module(config_module=PACKAGE, version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides or []), return_hydra_config=return_hydra_config)
