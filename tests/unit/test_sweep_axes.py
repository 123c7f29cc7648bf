"""A sweep axis that cannot change a simulated result is named, once, before any job runs."""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from pdr.review.sweep import MlflowSweepCallback
from pdr.tracking.sweep import LAUNCHER_PID_ENV, inert_sim_axes


def _multirun_config(engine: str, task: list[str], params: dict | None = None):
    return OmegaConf.create(
        {
            "engine": {"name": engine},
            "tracking": {"enabled": False},
            "hydra": {"overrides": {"task": task}, "sweeper": {"params": params or {}}},
        }
    )


def test_inert_axes_are_found_only_for_the_simulated_engine():
    task = ["sampling.temperature=0.6,1.0", "strategy.k=1,2", "engine.max_concurrency=8,64", "seed=0"]
    assert inert_sim_axes(_multirun_config("sim", task)) == ["engine.max_concurrency", "sampling.temperature"]
    assert inert_sim_axes(_multirun_config("sglang", task)) == []  # a real model's outputs do change
    # An axis from a sweep preset (hydra.sweeper.params) counts too; a single value is no axis.
    cfg = _multirun_config("sim", ["sampling.top_p=0.9"], {"sampling.top_k": "20,40"})
    assert inert_sim_axes(cfg) == ["sampling.top_k"]


def test_the_sweep_callback_warns_once_per_inert_axis(caplog, monkeypatch):
    monkeypatch.delenv(LAUNCHER_PID_ENV, raising=False)
    cfg = _multirun_config("sim", ["sampling.temperature=0.6,1.0", "strategy.k=1,2"])
    with caplog.at_level(logging.WARNING, logger="pdr.review.sweep"):
        MlflowSweepCallback().on_multirun_start(cfg)
    warned = [r.getMessage() for r in caplog.records if "cannot change a simulated result" in r.getMessage()]
    assert len(warned) == 1 and "sampling.temperature" in warned[0]
    monkeypatch.delenv(LAUNCHER_PID_ENV, raising=False)
