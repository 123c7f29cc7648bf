"""Sweeps: real `python -m pdr.run -m` multiruns (basic and joblib launchers) make one MLflow parent
run per sweep and one child per job; launcher and sweep presets compose; the paper presets
validate over their whole grid; the dry run prices a grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
BOGUS_RUN_ID = "0" * 32  # exported as MLFLOW_RUN_ID: the sweep must never use it


@dataclass
class Store:
    cwd: Path
    uri: str


def run_pdr(cwd: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "pdr.run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240, env=full_env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def shared_store(tmp_path_factory) -> Store:
    """Two sim sweeps into one SQLite store, built once per test session (also used by
    test_report.py and test_notebooks.py): the basic launcher over PDR widths [2] and [4,2], then
    joblib over long CoT and majority, all in experiment `quickstart`."""
    cwd = tmp_path_factory.getbasetemp() / "pdr-sweeps"
    uri = f"sqlite:///{cwd / 'mlflow.db'}"
    if not (cwd / "done").exists():
        cwd.mkdir(exist_ok=True)
        common = ["dataset.limit=4", "samples=2", "engine.skill=0.3", "progress=false", f"tracking.uri={uri}"]
        run_pdr(cwd, ["-m", "+experiment=quickstart", "strategy.widths=[2],[4,2]", *common],
                env={"MLFLOW_RUN_ID": BOGUS_RUN_ID})
        run_pdr(cwd, ["-m", "strategy=long_cot,majority", "tracking.experiment=quickstart", *common,
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
        (cwd / "done").touch()
    return Store(cwd, uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return shared_store(tmp_path_factory)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str) -> list:
    c = _client(uri)
    exp = c.get_experiment_by_name("quickstart")
    assert exp is not None
    return c.search_runs([exp.experiment_id], max_results=1000)


def _parent(uri: str, marker: str):
    parents = [r for r in _runs(uri) if r.data.tags.get("pdr.sweep_parent") == "true"]
    assert len(parents) == 2, [p.data.tags.get("overrides") for p in parents]  # one per sweep
    (p,) = [p for p in parents if marker in p.data.tags["overrides"]]
    return p


def _assert_family(uri: str, parent, n_children: int) -> list:
    pid = parent.info.run_id
    children = [r for r in _runs(uri) if r.data.tags.get("mlflow.parentRunId") == pid]
    assert len(children) == n_children
    assert parent.info.status == "FINISHED"
    assert all(ch.info.status == "FINISHED" for ch in children)
    assert all(ch.data.params["tracking.parent_run_id"] == pid for ch in children)
    dirs = [Path(ch.data.tags["run_dir"]) for ch in children]
    assert len(set(dirs)) == n_children  # every job its own output directory ...
    sweep_dir = Path(parent.data.tags["pdr.sweep_dir"])
    for d in dirs:
        assert d.parent == sweep_dir  # ... numbered inside the sweep's directory
        assert (d / "results.jsonl").stat().st_size > 0
    assert json.loads((sweep_dir / "mlflow_parent.json").read_text())["run_id"] == pid
    # The parent's end-of-sweep summary agrees with its children.
    m = parent.data.metrics
    assert m["jobs"] == n_children and m["jobs_finished"] == n_children and m["jobs_failed"] == 0
    assert m["best_accuracy"] == pytest.approx(max(ch.data.metrics["accuracy"] for ch in children))
    assert parent.data.tags["best_run_id"] in {ch.info.run_id for ch in children}
    assert parent.data.tags["simulated"] == "true"
    arts = {a.path for a in _client(uri).list_artifacts(pid)}
    assert {"sweep_config.yaml", "sweep_summary.json", "report"} <= arts
    report = {a.path for a in _client(uri).list_artifacts(pid, "report")}
    assert {"report/pareto.html", "report/pareto_seq_tokens.png", "report/pareto_total_tokens.png"} <= report
    return children


@pytest.mark.slow
def test_basic_multirun_one_parent_per_sweep_and_one_child_per_job(store):
    parent = _parent(store.uri, "strategy.widths=[2],[4,2]")
    children = _assert_family(store.uri, parent, 2)
    assert {ch.data.params["strategy.widths"] for ch in children} == {"[2]", "[4, 2]"}
    tags = parent.data.tags
    assert tags["git_commit"] and tags["pdr.sweep_id"] and "BasicLauncher" in tags["launcher"]
    assert parent.data.params["sweep.strategy.widths"] == "[2],[4,2]"
    assert parent.data.params["sweep.jobs"] == "2"
    # MLFLOW_RUN_ID was set to a bogus id for this sweep: no run may have taken it (first-child-
    # overwrites-parent trap), and the children are not that id's children.
    assert BOGUS_RUN_ID not in {r.info.run_id for r in _runs(store.uri)}
    assert all(ch.data.tags["mlflow.parentRunId"] != BOGUS_RUN_ID for ch in children)


@pytest.mark.slow
def test_joblib_multirun_children_find_the_parent_across_processes(store):
    parent = _parent(store.uri, "strategy=long_cot,majority")
    children = _assert_family(store.uri, parent, 2)
    assert {ch.data.tags["strategy"] for ch in children} == {"long_cot", "majority"}
    assert "Joblib" in parent.data.tags["launcher"]


@pytest.mark.slow
def test_the_experiment_is_created_once(store):
    names = [e.name for e in _client(store.uri).search_experiments()]
    assert names.count("quickstart") == 1


def test_parent_run_for_job_reads_the_sweep_file_and_refuses_another_store(tmp_path, monkeypatch):
    from pdr.tracking.sweep import PARENT_FILE, PARENT_FILE_ENV, parent_run_for_job

    monkeypatch.delenv(PARENT_FILE_ENV, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert parent_run_for_job(tmp_path, uri, "e") is None  # no file: no parent
    (tmp_path / PARENT_FILE).write_text(json.dumps({"run_id": "abc", "tracking_uri": uri, "experiment": "e"}))
    assert parent_run_for_job(tmp_path, uri, "e") == "abc"
    assert parent_run_for_job(tmp_path, "sqlite:////elsewhere/mlflow.db", "e") is None
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv(PARENT_FILE_ENV, str(tmp_path / PARENT_FILE))
    assert parent_run_for_job(other, uri, "e") == "abc"  # fallback when the sweep dir has no file


@pytest.mark.slow  # ~15 s: a fresh MLflow store, two runs, the report's plots
def test_sweep_callback_in_process_parent_children_summary_and_report(tmp_path, monkeypatch):
    """The callback's whole cycle without a subprocess: parent run and file at the start, two jobs
    nesting under it through the file, summary + report logged and the parent closed at the end."""
    from omegaconf import OmegaConf

    from pdr.review.sweep import MlflowSweepCallback
    from pdr.runner import run
    from pdr.tracking.store import client
    from pdr.tracking.sweep import PARENT_FILE, PARENT_FILE_ENV, parent_run_for_job
    from tests.conftest import compose_object

    monkeypatch.chdir(tmp_path)  # the launch directory
    monkeypatch.delenv(PARENT_FILE_ENV, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "multirun" / "s1"
    job = ["+experiment=quickstart", "dataset.limit=2", "samples=1", "progress=false", f"tracking.uri={uri}"]
    config = _compose([*job, f"hydra.sweep.dir={sweep_dir}"], hydra=True)
    OmegaConf.set_readonly(config, False)
    config.hydra.overrides.task = [*job, "strategy.widths=[2],[4,2]"]  # what the launcher sees

    cb = MlflowSweepCallback()
    cb.on_multirun_start(config)
    parent_id = parent_run_for_job(sweep_dir, uri, "quickstart")
    assert parent_id and (sweep_dir / PARENT_FILE).exists()
    for i, widths in enumerate(("[2]", "[4,2]")):
        cfg = compose_object([*job, f"strategy.widths={widths}", f"tracking.parent_run_id={parent_id}"])
        run(cfg, sweep_dir / str(i), launch_dir=tmp_path)
    cb.on_multirun_end(config)

    parent = client(uri).get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["pdr.sweep_parent"] == "true"
    assert parent.data.params["sweep.strategy.widths"] == "[2],[4,2]" and parent.data.params["sweep.jobs"] == "2"
    assert parent.data.metrics["jobs"] == 2 and parent.data.metrics["jobs_finished"] == 2
    assert parent.data.tags["simulated"] == "true"
    report = {a.path for a in client(uri).list_artifacts(parent_id, "report")}
    assert {"report/pareto.html", "report/pareto_seq_tokens.png", "report/pareto.csv"} <= report
    assert (sweep_dir / "sweep_summary.json").exists()


def _compose(overrides: list[str], hydra: bool = False):
    from tests.conftest import compose

    return compose(overrides, return_hydra_config=hydra)


def test_slurm_and_local_parallel_launchers_compose():
    cfg = _compose(["+experiment=quickstart", "hydra/launcher=slurm"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.array_parallelism > 0 and launcher.timeout_min > 0 and launcher.gpus_per_node == 0
    assert "submitit" in launcher.submitit_folder
    cfg = _compose(["+experiment=quickstart", "hydra/launcher=local_parallel"], hydra=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 4
    assert cfg.hydra.callbacks.mlflow_sweep._target_ == "pdr.review.sweep.MlflowSweepCallback"
    for name in ("slurm", "local_parallel"):
        lines = (CONF / "hydra" / "launcher" / f"{name}.yaml").read_text().splitlines()
        assert lines[0] == "# @package hydra.launcher" and lines[1].startswith("# python -m pdr.run -m ")


def _command(path: Path) -> list[str]:
    """The overrides of the command on a preset's first line (after the package header)."""
    lines = path.read_text().splitlines()
    assert lines[0] == "# @package _global_", path
    assert lines[1].startswith("# python -m pdr.run -m "), path
    return [a for a in lines[1].split()[5:] if not a.startswith(("engine", "hydra/launcher"))]


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")))
def test_sweep_presets_expand_to_valid_jobs(preset):
    from pdr.dryrun import compose_job, grid

    args = _command(CONF / "sweep" / f"{preset}.yaml")
    assert f"+sweep={preset}" in args
    jobs = grid(args)
    assert len(jobs) > 1
    for job in jobs:
        compose_job(job)  # runs every schema check (e.g. k <= the smallest width)


@pytest.mark.slow
def test_paper_presets_follow_the_paper_settings_and_validate_over_their_grids():
    from pdr.dryrun import compose_job, grid

    expected_jobs = {"paper_pdr": 18, "paper_pdr_distill": 12, "paper_long_cot": 3, "paper_sr": 6}
    for name, n in expected_jobs.items():
        path = CONF / "experiment" / f"{name}.yaml"
        args = _command(path)
        assert f"+experiment={name}" in args and "dataset=aime2024,aime2025" in path.read_text().splitlines()[1]
        assert "/engine" not in path.read_text()  # the engine is chosen on the command line
        jobs = grid([f"+experiment={name}", "dataset=aime2024"])
        assert len(jobs) == n, name
        budgets = set()
        for job in jobs:
            cfg = compose_job(job)
            assert cfg.samples == 16 and cfg.sampling.temperature == 1.0 and cfg.sampling.top_p == 1.0
            assert cfg.dataset.name == "aime2024"
            budgets.add(cfg.sampling.max_tokens)
        assert budgets == {10240, 18432, 26624}
    pdr_jobs = [" ".join(j) for j in grid(["+experiment=paper_pdr"])]
    for w in ("[8]", "[16,8]", "[16,8,4]"):
        assert sum(f"strategy.widths={w} " in j for j in pdr_jobs) == 6
    distill = " ".join(" ".join(j) for j in grid(["+experiment=paper_pdr_distill"]))
    for d in ("global_summary", "top_k_shared", "top_k_per_sample", "random_k"):
        assert f"strategy.distill={d}" in distill


@pytest.mark.slow
def test_dry_run_prices_the_grid_and_flags_repeated_configs(capsys):
    from pdr.dryrun import main

    rc = main(["--experiments", "paper_pdr,paper_pdr_distill", "dataset=aime2024", "engine=sglang",
               "engine.url=http://example:30000", "--problems", "2", "--samples", "1", "--tokens-per-s", "10000"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "+experiment=paper_pdr dataset=aime2024 engine=sglang engine.url=http://example:30000`: 18 jobs" in out
    assert "paper_pdr_distill" in out and ": 12 jobs" in out
    assert "ignored for the estimate (the dry run uses engine=sim): engine=sglang engine.url=http://example:30000" in out
    # [16,8,4] per-sample top-2 at each of the 3 budgets is in both presets: 30 jobs, 27 configs.
    assert "all jobs (30)" in out and "unique configs (27)" in out
    assert "same config as job" in out and "GPU time at 10,000 generated tokens/s" in out


def test_dry_run_measures_one_job_through_the_runner_and_scales_it():
    from pdr.dryrun import estimate

    (cost,) = estimate(["+experiment=quickstart"], problems=3, samples=2)
    assert (cost.problems, cost.samples, cost.measured) == (12, 4, 6)
    assert cost.total("total_tokens") == pytest.approx(cost.per_ps["total_tokens"] * 48)
    assert 0 < cost.per_ps["seq_tokens"] < cost.per_ps["total_tokens"]
    # Cap: widths [4,2] + the final refine = 7 drafts + 2 summaries per problem-sample, each at most 4096.
    assert cost.per_ps["cap_total_output_tokens"] == 9 * 4096
    assert cost.per_ps["total_output_tokens"] <= cost.per_ps["cap_total_output_tokens"]


def test_the_grid_is_the_basic_sweepers_product():
    """Hydra's basic sweeper semantics: one axis per key in order of first appearance, a later
    override of a key replacing the earlier one where it stood; plain overrides are 1-value axes."""
    from pdr.dryrun import expand
    from pdr.errors import ConfigError

    assert expand(["a=1,2", "b=x", "+c=[1,2]", "a=3,4,5"]) == [
        [f"a={a}", "b=x", "+c=[1,2]"] for a in (3, 4, 5)]
    assert expand(["x=1,2", "y=a,b"]) == [["x=1", "y=a"], ["x=1", "y=b"], ["x=2", "y=a"], ["x=2", "y=b"]]
    assert expand(["n=range(1,4)"]) == [["n=1"], ["n=2"], ["n=3"]]
    assert expand([]) == [[]]
    with pytest.raises(ConfigError, match=r"lr=interval\(0,1\)"):
        expand(["lr=interval(0,1)"])


def test_store_writes_retry_only_on_sqlite_lock_contention():
    from pdr.tracking.store import is_locked_error, with_store_retry

    calls = []

    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return x * 2

    assert with_store_retry(flaky, 21, base_delay_s=0.001) == 42 and len(calls) == 3
    wrapped = ValueError("outer")
    wrapped.__cause__ = RuntimeError("database is locked")
    assert is_locked_error(wrapped) and not is_locked_error(ValueError("no such table"))

    def broken() -> None:
        calls.append(0)
        raise ValueError("no such table: runs")

    calls.clear()
    with pytest.raises(ValueError, match="no such table"):
        with_store_retry(broken, base_delay_s=0.001)
    assert len(calls) == 1  # other errors are not retried
    with pytest.raises(RuntimeError, match="locked"):
        with_store_retry(lambda: (_ for _ in ()).throw(RuntimeError("database is locked")), attempts=2,
                         base_delay_s=0.001)



def _pid_alive(pid: int) -> bool:
    """Running (a zombie nobody reaped, e.g. under a container's PID 1, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return "\nState:\tZ" not in status


@pytest.mark.slow
def test_a_killed_joblib_sweep_stops_its_workers_and_resumes_under_the_same_parent(tmp_path):
    """Issue 12 item 7: after the launcher was SIGKILLed its joblib workers ran on for minutes, the
    parent run stayed RUNNING, `resume=true` made a second parent and its report covered 2 of 6
    jobs. Now the workers stop (their runs end KILLED, rows kept), and the resumed sweep continues
    the same parent: every job a FINISHED child of it, the report over all of them."""
    import signal
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "+experiment=quickstart",
            "strategy.widths=[2],[3,2],[4,2]", "dataset.limit=4", "samples=2", "engine.latency_base_ms=300",
            "engine.max_concurrency=1", "progress=false", f"tracking.uri={uri}"]  # fmt: skip
    env = {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "PDR_CACHE_DIR": str(tmp_path / "cache")}
    launcher = subprocess.Popen([sys.executable, "-m", "pdr.run", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size for p in tmp_path.glob("multirun/*/*/*/results.jsonl")):
        assert launcher.poll() is None and time.monotonic() < deadline, "the sweep ended before it was killed"
        time.sleep(0.05)
    locks = list(tmp_path.glob("multirun/*/*/*/run.lock"))
    workers = {json.loads(p.read_text())["pid"] for p in locks}
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(timeout=60)
    assert workers and launcher.pid not in workers  # the jobs ran in worker processes
    deadline = time.monotonic() + 120  # generous: the workers poll their parent once a second
    while any(_pid_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [p for p in workers if _pid_alive(p)]
    for p in alive:  # never leave them behind, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not alive, "orphaned sweep workers kept running after their launcher was killed"
    (first_sweep,) = tmp_path.glob("multirun/*/*")
    parent_file = json.loads((first_sweep / "mlflow_parent.json").read_text())
    parent_id, exp_id = parent_file["run_id"], parent_file["experiment_id"]
    statuses = {r.info.status for r in _client(uri).search_runs(
        [exp_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")}  # fmt: skip
    # every job that had a run ended it: KILLED if its worker stopped it mid-way (FINISHED if it
    # was done before the launcher died); never left RUNNING by a worker that vanished
    assert statuses and "RUNNING" not in statuses, statuses

    run_pdr(tmp_path, [*args, "resume=true"], env={"PDR_CACHE_DIR": str(tmp_path / "cache")})
    runs = _client(uri).search_runs([exp_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("pdr.sweep_parent") == "true"]
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["pdr.sweep_attempts"] == "2"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(children) == 3 and {ch.info.status for ch in children} == {"FINISHED"}
    for ch in children:  # one row per problem-sample
        assert len((Path(ch.data.tags["run_dir"]) / "results.jsonl").read_text().splitlines()) == 8
    # the jobs that had started were continued in their first directories (a job the killed sweep
    # never reached ran in the new sweep's)
    assert {p.parent for p in locks} <= {Path(ch.data.tags["run_dir"]) for ch in children}
    second_sweep = next(p for p in tmp_path.glob("multirun/*/*") if p != first_sweep)
    assert json.loads((second_sweep / "sweep_summary.json").read_text())["jobs"] == 3
    assert parents[0].data.metrics["jobs_finished"] == 3
