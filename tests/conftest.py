"""Shared fixtures: composing configs exactly as `python -m pdr.run` does, and temp run dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"  # the checkout's configs, for listing them; runs compose the installed ones
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Tests must not write to the user's persistent call cache (~/.cache/pdr).
if "PDR_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["PDR_CACHE_DIR"] = tempfile.mkdtemp(prefix="pdr-test-cache-")


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """The DictConfig that `python -m pdr.run OVERRIDES` would see (without the hydra node unless
    asked): the installed configs (pkg://pdr.conf), as the CLI composes them."""
    from pdr.config.search_path import compose as pdr_compose

    return pdr_compose(overrides, return_hydra_config=return_hydra_config)


def compose_object(overrides: list[str] | None = None):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(compose(overrides))


@pytest.fixture
def make_cfg():
    return compose_object


# Tiers that need something this machine may not have (a GPU server, the real llama.cpp server,
# a wheel built into a fresh venv). They run only when the -m expression names them, so that
# `pytest -m "not slow"` (which replaces addopts' -m) does not pull them in by accident.
OPT_IN_MARKERS = ("gpu", "real_server", "package")


def pytest_collection_modifyitems(config, items):
    expr = config.getoption("markexpr") or ""
    wanted = {m for m in OPT_IN_MARKERS if m in expr.replace("not " + m, "")}
    keep, drop = [], []
    for item in items:
        opt_in = {m for m in OPT_IN_MARKERS if item.get_closest_marker(m)}
        (drop if opt_in - wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
