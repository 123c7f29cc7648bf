"""The quickstart end to end, as a user runs it: files on disk and the MLflow run read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

STATUSES = {"correct", "wrong", "no_answer", "truncated", "error"}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("qs")
    proc = subprocess.run([sys.executable, "-m", "pdr.run", "+experiment=quickstart"], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, proc


def _run_dir(cwd: Path) -> Path:
    (summary,) = list(cwd.glob("outputs/*/*/summary.json"))
    return summary.parent


@pytest.mark.slow
def test_quickstart_writes_results_summary_and_traces(quickstart):
    cwd, proc = quickstart
    run_dir = _run_dir(cwd)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 * 4  # tiny has 12 problems, the preset 4 samples
    for r in rows:
        for key in ("problem_id", "sample", "answer", "gold", "correct", "status", "seq_tokens", "total_tokens",
                    "max_context_tokens", "wall_s", "rounds"):
            assert key in r
        assert r["status"] in STATUSES
        assert r["correct"] == (r["status"] == "correct")
        assert [rd["width"] for rd in r["rounds"]] == [4, 2, 1]
        assert 0 < r["seq_tokens"] < r["total_tokens"]
    summary = json.loads((run_dir / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["simulated"] is True
    assert 0 <= m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"] <= 1
    assert m["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
    assert {"round_1_draft_accuracy", "round_2_draft_accuracy", "round_3_draft_accuracy"} <= set(m)
    assert summary["config"]["strategy"]["widths"] == [4, 2]
    traces = [json.loads(line) for line in (run_dir / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == len(rows)
    kinds = [c["kind"] for c in traces[0]["calls"]]
    assert kinds == ["draft", "summary", "refine", "summary", "refine"]
    assert traces[0]["calls"][0]["outputs"][0]["reasoning"]  # thinking kept in the trace


@pytest.mark.slow
def test_quickstart_prints_table_and_mlflow_command(quickstart):
    _, proc = quickstart
    out = proc.stdout
    assert "accuracy" in out and "CI" in out and "seq tokens" in out and "total tokens" in out
    assert "SIMULATED" in out
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out


@pytest.mark.slow
def test_quickstart_logs_one_mlflow_run(quickstart):
    from mlflow.tracking import MlflowClient

    cwd, _ = quickstart
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["simulated"] == "true" and tags["engine"] == "sim" and tags["dataset"] == "tiny"
    assert tags["strategy"] == "pdr" and tags["model"] == "sim-reasoner" and tags["git_commit"]
    params = run.data.params
    assert params["strategy.widths"] == "[4, 2]" and params["samples"] == "4" and params["engine.name"] == "sim"
    metrics = run.data.metrics
    for key in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "seq_tokens", "total_tokens",
                "max_context_tokens", "wall_time_s", "round_1_draft_accuracy", "round_2_draft_accuracy"):
        assert key in metrics
    summary = json.loads((_run_dir(cwd) / "summary.json").read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(summary["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.jsonl", "summary.json", "config.json", "trace_view.html"} <= artifacts
    # Traces are stored once: a local artifact store leaves them in the run directory, and says so.
    assert "traces.jsonl" not in artifacts
    assert run.data.tags["pdr.traces_file"] == str((_run_dir(cwd) / "traces.jsonl").resolve())


def test_repo_readme_states_the_commands():
    readme = (REPO / "README.md").read_text()
    assert 'pip install -e ".[dev]"' in readme
    assert "python -m pdr.run +experiment=quickstart" in readme
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "pytest" in ci
