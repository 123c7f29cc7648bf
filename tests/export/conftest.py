"""Finished sim runs to export: real runs of `pdr.run`'s runner into one SQLite MLflow store in tmp."""

from __future__ import annotations

import pytest

# (name, overrides): a PDR run whose low skill and tight cap give wrong and truncated drafts, a
# majority vote (the final is the vote's winner), critique+vote (critique calls, per-branch refines),
# SR with error analysis (previous_solution workspaces, critiques), PDR with per-branch workspaces.
RUNS = {
    "pdr": ["strategy=pdr", "engine.skill=0.25", "sampling.max_tokens=1200"],
    "majority": ["strategy=majority", "strategy.n=5", "engine.skill=0.2"],
    "critique_vote": ["strategy=critique_vote", "engine.skill=0.3"],
    "sr": ["strategy=sr", "strategy.rounds=2", "strategy.error_analysis=true"],
    "pdr_per_branch": ["strategy=pdr", "strategy.distill=top_k_per_sample", "strategy.k=2", "engine.skill=0.3"],
}


@pytest.fixture(scope="package")
def store(tmp_path_factory):
    """{name: RunResult} of the RUNS, all in one store; the launch dir holds mlflow.db."""
    from pdr.runner import run
    from tests.conftest import compose_object

    root = tmp_path_factory.mktemp("export-src")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    results = {}
    for name, overrides in RUNS.items():
        cfg = compose_object(["+experiment=quickstart", "dataset.limit=4", "samples=3", "progress=false",
                              f"tracking.uri={uri}", "tracking.traces=off", f"tracking.experiment=src-{name}",
                              *overrides])
        results[name] = run(cfg, root / "runs" / name, launch_dir=root)
    return root, uri, results
