"""MLflow's start overlaps the run's first calls (issue 14, start-up): rows never wait for it; a run
killed before run.json names its MLflow run resumes into that run (found by its pdr.run_uid tag),
never a second one; live points from before the run existed are logged once it does; an MLflow
start that fails leaves the results and summary on disk and says how to log them. Real SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import compose_object

BASE = ["+experiment=quickstart", "dataset.limit=3", "samples=2", "progress=false"]


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for_rows(proc: subprocess.Popen, tmp_path: Path, created: Path, what: str) -> list[Path]:
    """Wait until the stuck MLflow run was created and the run has written 2 rows; its results file."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        results = list(tmp_path.glob("outputs/*/*/results.jsonl"))
        if created.exists() and results and _lines(results[0]) >= 2:
            return results
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be {what}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no MLflow run / no rows in 300 s")


def test_rows_are_written_before_the_mlflow_run_exists_and_early_live_points_are_kept(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    import pdr.runner as runner

    real = runner.start_tracking
    seen: dict = {}

    def slow_start(*args, run_dir: Path, **kw):
        # MLflow's start held until rows are on disk: with a start in front of the calls (as before)
        # no row could ever come, and this gives up after 60 s with rows_before = 0.
        deadline = time.monotonic() + 60
        while _lines(run_dir / "results.jsonl") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["rows_before"] = _lines(run_dir / "results.jsonl")
        seen["run_json_id"] = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
        return real(*args, run_dir=run_dir, **kw)

    monkeypatch.setattr(runner, "start_tracking", slow_start)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_object([*BASE, "engine.latency_base_ms=60", f"tracking.uri={uri}", "tracking.live_interval_s=0.05"])
    result = runner.run(cfg, tmp_path / "run", launch_dir=tmp_path)

    assert seen["rows_before"] >= 3, "rows waited for the MLflow run"
    assert seen["run_json_id"] is None  # the MLflow run did not exist yet
    assert json.loads((tmp_path / "run" / "run.json").read_text())["mlflow_run_id"] == result.mlflow_run_id
    client = MlflowClient(uri)
    mrun = client.get_run(result.mlflow_run_id)
    assert mrun.info.status == "FINISHED"
    assert mrun.data.metrics["accuracy"] == pytest.approx(result.summary["accuracy"])
    assert mrun.data.tags["pdr.run_uid"] == json.loads((tmp_path / "run" / "run.json").read_text())["run_uid"]
    # Live points logged while the MLflow run did not exist (step 0 on, 0.05 s apart) are in it.
    steps = sorted(m.step for m in client.get_metric_history(result.mlflow_run_id, "live/calls"))
    assert steps[0] == 0 and len(steps) >= 3


def test_an_mlflow_start_that_fails_keeps_the_results_and_resume_logs_them(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    import pdr.runner as runner
    from pdr.results import RunFailed

    real = runner.start_tracking

    def broken(*args, **kw):
        raise RuntimeError("store unreachable (test)")

    monkeypatch.setattr(runner, "start_tracking", broken)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_object([*BASE, f"tracking.uri={uri}"])
    run_dir = tmp_path / "run"
    with pytest.raises(RunFailed) as info:
        runner.run(cfg, run_dir, launch_dir=tmp_path)
    msg = str(info.value)
    assert "MLflow tracking could not start (RuntimeError: store unreachable (test))" in msg
    assert str(run_dir) in msg and "resume=true" in msg and "tracking.enabled=false" in msg
    assert _lines(run_dir / "results.jsonl") == 6
    first = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert json.loads((run_dir / "run.json").read_text())["mlflow_run_id"] is None

    # The documented way to log it later: the same command plus resume=true; no call is sent.
    monkeypatch.setattr(runner, "start_tracking", real)
    again = runner.run(compose_object([*BASE, f"tracking.uri={uri}", "resume=true"]), run_dir, launch_dir=tmp_path)
    assert again.summary["engine_calls_sent"] == 0
    assert again.summary["accuracy"] == pytest.approx(first["accuracy"])
    mrun = MlflowClient(uri).get_run(again.mlflow_run_id)
    assert mrun.info.status == "FINISHED" and mrun.data.metrics["accuracy"] == pytest.approx(first["accuracy"])


# A pdr.run process whose MLflow start blocks right after the MLflow run is created (before its
# params, before run.json can name it): the window a kill during start-up hits.
_STUCK = textwrap.dedent("""
    import os, runpy, sys, time
    import pdr.tracking.mlflow_run as m

    def stuck(self, params):
        with open(os.environ["PDR_TEST_CREATED"], "w") as f:
            f.write(self.run_id)
        time.sleep(3600)

    m.MlflowRun.log_params = stuck
    sys.argv = ["pdr.run", *sys.argv[1:]]
    runpy.run_module("pdr.run", run_name="__main__")
""")


@pytest.mark.slow
def test_sigkill_during_a_slow_mlflow_start_then_resume_continues_one_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # 12 problems x 2 samples, 2 calls at a time: ~4 s of calls, longer than MLflow's start.
    args = ["+experiment=quickstart", "samples=2", "progress=false", "engine.latency_base_ms=60",
            "engine.max_concurrency=2", f"tracking.uri={uri}"]
    created = tmp_path / "created.txt"
    env = dict(os.environ, PDR_CACHE_DIR=str(tmp_path / "cache"), PDR_TEST_CREATED=str(created))
    proc = subprocess.Popen([sys.executable, "-c", _STUCK, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = _wait_for_rows(proc, tmp_path, created, "killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run_dir = results[0].parent
    killed_rows = _lines(results[0])
    # Rows were written while MLflow's start was stuck; under heavy load all 24 may be (the calls
    # then outran the start): the window tested, a created MLflow run run.json does not name, is the same.
    assert killed_rows >= 2
    info = json.loads((run_dir / "run.json").read_text())
    assert info["mlflow_run_id"] is None  # killed before run.json could name the MLflow run
    created_id = created.read_text()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("quickstart").experiment_id
    assert [r.info.run_id for r in client.search_runs([exp])] == [created_id]  # RUNNING, orphaned

    proc2 = subprocess.run([sys.executable, "-m", "pdr.run", *args, "resume=true"], cwd=tmp_path,
                           env=dict(env, PDR_TEST_CREATED=""), capture_output=True, text=True, timeout=600)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    runs = client.search_runs([exp])
    assert [r.info.run_id for r in runs] == [created_id], "the resume made a second MLflow run"
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["strategy.name"] == "pdr"  # the params the killed attempt never logged
    assert runs[0].data.tags["attempts"] == "2"
    assert json.loads((run_dir / "run.json").read_text())["mlflow_run_id"] == created_id
    assert _lines(run_dir / "results.jsonl") >= 24


@pytest.mark.slow
def test_sigterm_during_a_stuck_mlflow_start_stops_as_before_and_resume_continues_its_run(tmp_path):
    """SIGTERM while the MLflow run is being created: rows kept, the resume command printed, exit
    code 1, no traceback (as before); the interrupted run waits INTERRUPT_WAIT_S (here 1 s) for the
    MLflow run, then leaves it to the resume, which continues it (one run in the store)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["+experiment=quickstart", "samples=2", "progress=false", "engine.latency_base_ms=60",
            "engine.max_concurrency=2", f"tracking.uri={uri}"]
    created = tmp_path / "created.txt"
    env = dict(os.environ, PDR_CACHE_DIR=str(tmp_path / "cache"), PDR_TEST_CREATED=str(created))
    script = _STUCK.replace("m.MlflowRun.log_params = stuck",
                            "m.MlflowRun.log_params = stuck\nimport pdr.runner\npdr.runner.INTERRUPT_WAIT_S = 1.0")
    out = (tmp_path / "stdout.txt").open("w")  # pdr's log lines
    proc = subprocess.Popen([sys.executable, "-c", script, *args], cwd=tmp_path, env=env,
                            stdout=out, stderr=subprocess.PIPE, text=True)
    results = _wait_for_rows(proc, tmp_path, created, "stopped")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = proc.stderr.read()
    assert proc.returncode == 1, err[-3000:]
    assert "interrupted" in err and "resume=true" in err and "Traceback" not in err, err[-3000:]
    out.close()
    log = (tmp_path / "stdout.txt").read_text()
    assert "it stays RUNNING in MLflow until resume=true continues it" in log, log[-3000:]
    run_dir = results[0].parent
    assert _lines(run_dir / "results.jsonl") >= 2
    created_id = created.read_text()

    proc2 = subprocess.run([sys.executable, "-m", "pdr.run", *args, "resume=true"], cwd=tmp_path,
                           env=dict(env, PDR_TEST_CREATED=""), capture_output=True, text=True, timeout=600)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert [r.info.run_id for r in runs] == [created_id]
    assert runs[0].info.status == "FINISHED"
