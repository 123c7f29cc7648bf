"""Names that become paths stay inside their roots (issue 12 item 4): an MLflow experiment called
`../../x` or `/abs/x` keeps its artifacts under `<launch dir>/mlartifacts/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import compose_object


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["../../escaped", "ABS", "a/../../../escaped", "..", "sub/dir"])
def test_an_experiment_name_never_puts_artifacts_outside_the_launch_directory(tmp_path, name):
    from mlflow.tracking import MlflowClient

    from pdr.runner import run

    launch = tmp_path / "a" / "b" / "launch"
    launch.mkdir(parents=True)
    if name == "ABS":
        name = str(tmp_path / "abs")
    uri = f"sqlite:///{launch / 'mlflow.db'}"
    cfg = compose_object(
        ["+experiment=quickstart", "progress=false", "dataset.limit=1", f"tracking.uri={uri}",
         f"tracking.experiment={name}"]
    )  # fmt: skip
    result = run(cfg, launch / "run", launch_dir=launch)
    outside = {p for p in _all_files(tmp_path) if launch not in p.parents}
    assert outside == set()
    exp = MlflowClient(uri).get_experiment_by_name(name)  # the name itself is kept as given
    assert exp is not None
    root = (launch / "mlartifacts").resolve()
    assert Path(exp.artifact_location.removeprefix("file://")).resolve().is_relative_to(root)
    arts = MlflowClient(uri).list_artifacts(result.mlflow_run_id)
    assert "results.jsonl" in {a.path for a in arts}
