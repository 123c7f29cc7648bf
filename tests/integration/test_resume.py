"""Resume: a run killed at any point (SIGKILL included) and started again with resume=true re-sends
no finished engine call and ends with the results of an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import compose_object

# The quickstart, slowed down (simulated latency, few slots) so that there is time to kill it:
# 48 problem-samples x 5 calls, ~3 s. Latency is not part of the sim's call identity, so the
# in-process reference run below (no latency) computes exactly the same calls.
BASE = ["+experiment=quickstart", "progress=false"]
SLOW = ["engine.latency_base_ms=60", "engine.max_concurrency=8"]
TOTAL_ROWS = 12 * 4


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PDR_CACHE_DIR"] = str(tmp / "cache")  # never the user's ~/.cache
    return env


def _pdr(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdr.run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(cwd),
        **kw,
    )


def _rows(path: Path) -> dict[tuple[str, int], dict]:
    """Final rows by (problem, sample), without the wall-clock field."""
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        r.pop("wall_s", None)
        out[(r["problem_id"], r["sample"])] = r
    return out


def _journal_count(run_dir: Path) -> int:
    conn = sqlite3.connect(f"file:{run_dir / 'calls.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def _kill_when(proc: subprocess.Popen, cwd: Path, min_rows: int, sig: int) -> Path:
    """Send `sig` to `proc` once its results.jsonl has `min_rows` rows; return its run dir."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list(cwd.glob("outputs/*/*/results.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= min_rows:
            proc.send_signal(sig)
            proc.wait(timeout=300)
            return found[0].parent
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended before it could be interrupted: {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the run wrote no rows in 300 s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the same experiment and seed, in-process; its calls per problem-sample."""
    from pdr.runner import run

    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run(compose_object([*BASE, "tracking.enabled=false"]), run_dir)
    calls = {
        (t["problem_id"], t["sample"]): len(t["calls"])
        for t in map(json.loads, (run_dir / "traces.jsonl").read_text().splitlines())
    }
    return _rows(run_dir / "results.jsonl"), result.summary, calls


@pytest.mark.slow
def test_sigkill_then_resume_resends_nothing_finished_and_matches_an_uninterrupted_run(tmp_path, reference):
    ref_rows, ref_summary, ref_calls = reference
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*BASE, *SLOW, f"tracking.uri={uri}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdr.run", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = _kill_when(proc, tmp_path, min_rows=6, sig=signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL

    killed = _rows(run_dir / "results.jsonl")
    assert 6 <= len(killed) < TOTAL_ROWS, "killed too late to test anything"
    kept = {k for k, r in killed.items() if r["status"] != "error"}
    journal_before = _journal_count(run_dir)
    # The MLflow run is created beside the first calls (rows never wait for it): a kill this early
    # may come before run.json names it; the resume then finds it by its pdr.run_uid tag.
    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    assert not (run_dir / "summary.json").exists()

    proc2 = _pdr([*args, "resume=true"], tmp_path)  # finds the killed run by its run key
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert f"resumed:  kept {len(kept)} finished problem-samples" in proc2.stdout
    assert len(list(tmp_path.glob("outputs/*/*/summary.json"))) == 1  # continued in place, no new run dir

    # Same final results as the uninterrupted run, row for row.
    resumed = _rows(run_dir / "results.jsonl")
    assert resumed == ref_rows

    # No finished call re-sent: the calls this attempt sent plus those the killed one finished
    # (its journal) are exactly the calls of an uninterrupted run; every journal entry of a
    # re-run problem-sample came back from the journal.
    s = json.loads((run_dir / "summary.json").read_text())
    m = s["metrics"]
    assert ref_summary["engine_calls_sent"] == sum(ref_calls.values())
    assert m["engine_calls_sent"] + journal_before == ref_summary["engine_calls_sent"]
    needed = sum(n for k, n in ref_calls.items() if k not in kept)
    assert m["engine_calls_sent"] + m["cache_hits_journal"] == needed
    assert m["cache_hits_journal"] == journal_before - sum(ref_calls[k] for k in kept)
    assert m["cache_hits_journal"] > 0, "no in-flight call was recovered (killed between problem-samples?)"
    assert s["resume"] == {
        "attempt": 2,
        "kept_rows": len(kept),
        "ran": TOTAL_ROWS - len(kept),
        "journal_calls_before": journal_before,
    }
    assert m["resumed_rows"] == len(kept)
    assert m["accuracy"] == pytest.approx(ref_summary["accuracy"])

    # The same MLflow run, continued and FINISHED: exactly one in the store.
    final_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    assert final_id and (run_id is None or final_id == run_id)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [final_id]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["accuracy"] == pytest.approx(ref_summary["accuracy"])
    assert runs[0].data.metrics["engine_calls_sent"] == m["engine_calls_sent"]
    assert runs[0].data.tags["attempts"] == "2"


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resume_with_explicit_output_dir(tmp_path, reference):
    ref_rows, _, _ = reference
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*BASE, *SLOW, f"tracking.uri={uri}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdr.run", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = _kill_when(proc, tmp_path, min_rows=3, sig=signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.returncode == 1, err
    assert "interrupted" in err and "resume=true" in err and "Traceback" not in err
    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "KILLED"

    # resume=true output_dir=PATH: continue exactly that directory (from another cwd).
    other = tmp_path / "elsewhere"
    other.mkdir()
    proc2 = _pdr([*BASE, f"tracking.uri={uri}", *SLOW, "resume=true", f"output_dir={run_dir}"], other)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert _rows(run_dir / "results.jsonl") == ref_rows
    assert client.get_run(run_id).info.status == "FINISHED"


def test_resuming_a_finished_run_starts_no_engine(tmp_path, monkeypatch):
    from pdr.runner import run

    cfg = compose_object([*BASE, "tracking.enabled=false", "dataset.limit=2", "samples=1"])
    run(cfg, tmp_path)
    import pdr.engines.sim

    def refuse(self):  # noqa: ANN001
        raise AssertionError("engine started although nothing was left to do")

    monkeypatch.setattr(pdr.engines.sim.SimEngine, "start", refuse)
    cfg.resume = True
    result = run(cfg, tmp_path)
    assert result.resumed_rows == 2 and result.summary["engine_calls_sent"] == 0


def test_a_directory_of_another_run_is_refused_even_with_resume(tmp_path):
    from pdr.runner import RunFailed, run

    run(compose_object([*BASE, "tracking.enabled=false", "dataset.limit=1", "samples=1"]), tmp_path)
    before = (tmp_path / "results.jsonl").read_bytes()
    for extra in ([], ["resume=true"]):
        cfg = compose_object(
            [*BASE, "tracking.enabled=false", "dataset.limit=1", "samples=1", "seed=1", *extra]
        )
        with pytest.raises(RunFailed, match="different configuration"):
            run(cfg, tmp_path)
    assert (tmp_path / "results.jsonl").read_bytes() == before


def test_error_rows_are_rerun_on_resume_and_finished_calls_come_from_the_journal(tmp_path, monkeypatch):
    """A run that failed above max_error_rate keeps its rows; resume re-runs only the error rows."""
    from pdr.engines.sim import SimEngine
    from pdr.errors import EngineUnavailable
    from pdr.runner import RunFailed, run

    real = SimEngine._generate

    async def flaky(self, request):  # noqa: ANN001
        # Every second-round draft of problem-sample samples 0 fails: their first calls finished.
        if request.tag.sample == 0 and request.tag.step == 2:
            raise EngineUnavailable("503 Service Unavailable (after 3 retries)")
        return await real(self, request)

    monkeypatch.setattr(SimEngine, "_generate", flaky)
    args = [*BASE, "tracking.enabled=false", "engine.max_error_rate=0.1"]
    with pytest.raises(RunFailed, match=r"max_error_rate.*resume=true"):
        run(compose_object(args), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "FAILED" and "max_error_rate" in summary["failure"]
    assert summary["errors"]["by_type"] == {"EngineUnavailable": summary["errors"]["count"]}
    assert "EngineUnavailable" in summary["errors"]["hints"]
    errors_log = [json.loads(x) for x in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert errors_log and all(
        e["attempt"] == 1 and e["error_type"] == "EngineUnavailable" for e in errors_log
    )

    monkeypatch.setattr(SimEngine, "_generate", real)  # the server is back
    result = run(compose_object([*args, "resume=true"]), tmp_path)
    rows = result.rows
    assert len(rows) == TOTAL_ROWS and not any(r["status"] == "error" for r in rows)
    m = result.summary
    assert m["cache_hits_journal"] >= 2 * len(errors_log)  # each failed sample's draft + summary calls
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "FINISHED" and summary["errors"]["count"] == 0
    assert summary["errors"]["all_attempts"]["count"] == len(errors_log)
    # Issue 12 item 6: the file holds exactly one row per problem-sample (the error rows of the
    # first attempt are gone from it; errors.jsonl keeps them), as do the traces.
    lines = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == TOTAL_ROWS == len({(r["problem_id"], r["sample"]) for r in lines})
    assert not any(r["status"] == "error" for r in lines)
    traces = (tmp_path / "traces.jsonl").read_text().splitlines()
    assert len(traces) == TOTAL_ROWS


# ---- what a resume starts from: rows written off the loop, never ahead of their calls' journal ----


def test_rows_are_written_only_after_their_calls_are_journaled(tmp_path, monkeypatch):
    """Journal writes are not awaited by the calls, so a slow journal lags behind; a row must still
    never reach results.jsonl before every call of its problem-sample is committed to the journal
    (else a kill right then, and a resume, would find a kept row whose calls are gone)."""
    from pdr.engines.cache import CallStore, count_entries
    from pdr.results import ResultsWriter
    from pdr.runner import run

    real_put = CallStore.put_many

    def slow_journal(self, entries):  # noqa: ANN001
        if self.label == "journal":
            time.sleep(0.02)
        return real_put(self, entries)

    monkeypatch.setattr(CallStore, "put_many", slow_journal)
    checked: list[tuple[int, int]] = []
    real_batch = ResultsWriter._write_batch

    def checking(self, rows):  # noqa: ANN001
        for _row, trace, _attempt, before in rows:
            if before is not None:
                before()
            needed = (checked[-1][0] if checked else 0) + len(trace["calls"])
            checked.append((needed, count_entries(self.run_dir / "calls.sqlite")))
        return real_batch(self, rows)

    monkeypatch.setattr(ResultsWriter, "_write_batch", checking)
    cfg = compose_object([*BASE, "tracking.enabled=false", "engine.latency_base_ms=5", "cache.mode=off"])
    result = run(cfg, tmp_path)
    assert len(result.rows) == TOTAL_ROWS and len(checked) == TOTAL_ROWS
    late = [(needed, journaled) for needed, journaled in checked if journaled < needed]
    assert not late, f"rows written before their calls were journaled: {late[:5]}"


def test_results_writer_queues_writes_and_close_makes_them_durable(tmp_path):
    import threading

    from pdr.results import ERRORS, RESULTS, TRACES, ResultsWriter

    gate = threading.Event()
    released: list[bool] = []
    synced: list[int] = []
    writer = ResultsWriter(tmp_path, on_durable=synced.append)
    rows = [{"problem_id": f"p{i}", "sample": 0, "status": "correct"} for i in range(5)]
    rows[2] = {
        "problem_id": "p2",
        "sample": 0,
        "status": "error",
        "error_type": "EngineUnavailable",
        "error": "503",
    }
    # write() only queues: these return while the writer thread waits in the first row's `before()`
    # (were write() synchronous, it would wait there for the 60 s and `released` would be [False]).
    writer.write(rows[0], {"problem_id": "p0"}, attempt=1, before=lambda: released.append(gate.wait(60)))
    for r in rows[1:]:
        writer.write(r, {"problem_id": r["problem_id"]}, attempt=1)
    assert (tmp_path / RESULTS).read_text() == ""  # nothing before `before()` returned
    gate.set()
    writer.close()
    assert released == [True]
    assert [json.loads(x) for x in (tmp_path / RESULTS).read_text().splitlines()] == rows  # order kept
    assert [json.loads(x)["problem_id"] for x in (tmp_path / TRACES).read_text().splitlines()] == [
        r["problem_id"] for r in rows
    ]
    (error,) = [json.loads(x) for x in (tmp_path / ERRORS).read_text().splitlines()]
    assert (
        error["problem_id"] == "p2" and error["attempt"] == 1 and error["error_type"] == "EngineUnavailable"
    )
    assert sum(synced) == 5
    writer.close()  # idempotent


def test_results_writer_repairs_a_torn_last_line(tmp_path):
    from pdr.results import RESULTS, ResultsWriter, read_jsonl

    (tmp_path / RESULTS).write_text('{"problem_id": "a", "sample": 0}\n{"problem_id": "b", "sam')
    writer = ResultsWriter(tmp_path)
    writer.write({"problem_id": "c", "sample": 0, "status": "correct"}, None)
    writer.close()
    assert [r["problem_id"] for r in read_jsonl(tmp_path / RESULTS)] == ["a", "c"]


def test_a_failing_results_writer_fails_the_caller(tmp_path, monkeypatch):
    """A full disk on the writer thread is raised where rows are handed over (and by close)."""
    import pdr.results.writer
    from pdr.results import ResultsWriter

    def no_space(fd):  # noqa: ANN001
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pdr.results.writer.os, "fsync", no_space)
    writer = ResultsWriter(tmp_path)
    writer.write({"problem_id": "a", "sample": 0, "status": "correct"}, None)
    writer.flush()
    with pytest.raises(OSError, match="No space"):
        writer.write({"problem_id": "b", "sample": 0, "status": "correct"}, None)
    writer.close()  # already reported: closes quietly

    other = ResultsWriter(tmp_path / "other")
    other.write({"problem_id": "a", "sample": 0, "status": "correct"}, None)
    with pytest.raises(OSError, match="No space"):
        other.close()


def test_resume_logs_into_the_resumed_directory_and_leaves_no_stray_one(tmp_path):
    """Item 10 of issue 12: `resume=true` used to leave a fresh outputs/<date>/<time>/ holding only
    Hydra's files and a run.log; its log belongs to the run it continues."""
    args = [*BASE, "tracking.enabled=false", "dataset.limit=2", "samples=1"]
    first = _pdr(args, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = _pdr([*args, "resume=true", "hydra.verbose=true"], tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    dirs = [p for p in tmp_path.glob("outputs/*/*") if p.is_dir()]
    assert len(dirs) == 1, dirs
    log_text = (dirs[0] / "run.log").read_text()
    assert "resume: 2 finished problem-samples kept" in log_text


# ---- one process per run directory (issue 12 item 5) ----

_HOLD = """
import sys, time
from pathlib import Path
from pdr.results.lock import RunDirLock
with RunDirLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def test_a_second_process_in_a_locked_run_directory_is_refused_naming_the_holder(tmp_path):
    """Two resumes at once both used to run (twice the calls, 50 rows for 30): the second is now
    refused, with the holder's pid and host; once the holder is gone the resume runs normally."""
    run_dir = tmp_path / "run"
    args = [*BASE, "tracking.enabled=false", "dataset.limit=2", "samples=2", f"output_dir={run_dir}"]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=_env(tmp_path),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = _pdr([*args, "resume=true"], tmp_path)
        assert refused.returncode == 1, refused.stderr[-2000:]
        assert f"is in use by another process (pid {holder.pid} on host " in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (run_dir / "results.jsonl").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    done = _pdr([*args, "resume=true"], tmp_path)  # the lock died with its holder
    assert done.returncode == 0, done.stderr[-2000:]
    assert len((run_dir / "results.jsonl").read_text().splitlines()) == 4


def test_the_lock_is_released_after_a_run_and_an_in_process_second_run_is_refused(tmp_path):
    from pdr.results.lock import RunDirBusy, RunDirLock
    from pdr.runner import run

    cfg = compose_object([*BASE, "tracking.enabled=false", "dataset.limit=1", "samples=1"])
    with RunDirLock(tmp_path):
        # flock is per open file description: the same process opening it again is refused too.
        with pytest.raises(RunDirBusy, match=rf"pid {os.getpid()} on host"):
            run(cfg, tmp_path)
    run(cfg, tmp_path)
    with RunDirLock(tmp_path):  # released when run() returned
        pass


def test_after_a_resume_the_file_the_summary_and_the_mlflow_artifact_agree(tmp_path, monkeypatch):
    """Issue 12 item 6, with MLflow on: the results.jsonl artifact of the continued MLflow run is
    the compacted file (one row per problem-sample), and summary.json counts the same rows."""
    from mlflow.tracking import MlflowClient

    from pdr.engines.sim import SimEngine
    from pdr.errors import EngineUnavailable
    from pdr.runner import RunFailed, run

    real = SimEngine._generate

    async def flaky(self, request):  # noqa: ANN001
        if request.tag.sample == 0 and request.tag.step == 2:
            raise EngineUnavailable("503 Service Unavailable (after 3 retries)")
        return await real(self, request)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    args = [*BASE, f"tracking.uri={uri}", "engine.max_error_rate=0.9", "dataset.limit=3", "samples=2"]
    monkeypatch.setattr(SimEngine, "_generate", flaky)
    first = run(compose_object(args), run_dir, launch_dir=tmp_path)
    assert first.summary["frac_error"] == 0.5  # sample 0 of every problem failed, the run finished
    monkeypatch.setattr(SimEngine, "_generate", real)
    with pytest.raises(RunFailed):  # a finished run with errors and no resume: refused, not appended
        run(compose_object(args), run_dir, launch_dir=tmp_path)
    result = run(compose_object([*args, "resume=true"]), run_dir, launch_dir=tmp_path)
    assert result.mlflow_run_id == first.mlflow_run_id
    on_disk = (run_dir / "results.jsonl").read_text().splitlines()
    assert len(on_disk) == 6 and not any(json.loads(x)["status"] == "error" for x in on_disk)
    assert json.loads((run_dir / "summary.json").read_text())["metrics"]["problem_samples"] == 6
    got = MlflowClient(uri).download_artifacts(result.mlflow_run_id, "results.jsonl", str(tmp_path / "dl"))
    assert Path(got).read_text().splitlines() == on_disk
