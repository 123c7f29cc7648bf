"""Processes started together (issue 12 item 1): two or three `pdr.run` in a directory without
`mlflow.db` crashed in 7 of 7 trials while MLflow created the store (`table latest_metrics already
exists`, `duplicate column name: step`); a store left half-created was unusable until deleted. The
call cache's first creation is serialized the same way."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

BASE = ["+experiment=quickstart", "progress=false", "dataset.limit=2", "samples=1"]


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_three_runs_started_together_in_a_fresh_directory_all_succeed(tmp_path, trial):
    env = {**os.environ, "PDR_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pdr.run", *BASE, f"seed={i}", "cache.mode=on"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(3)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc == 0 and "Traceback" not in err, err[-3000:]
    conn = sqlite3.connect(tmp_path / "mlflow.db")
    try:
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0] == 3
    finally:
        conn.close()
    # the three runs shared the persistent call cache, created concurrently too
    conn = sqlite3.connect(tmp_path / "cache" / "calls.sqlite")
    try:
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] > 0
    finally:
        conn.close()


def test_a_half_created_store_without_runs_is_moved_aside_and_recreated(tmp_path):
    """What a process killed half-way through MLflow's migrations leaves: tables without a schema
    version, which MLflow then refuses ("out-of-date database schema") for every later run."""
    from pdr.tracking.mlflow_run import MlflowRun

    db = tmp_path / "mlflow.db"
    make = "from mlflow.tracking import MlflowClient; import sys; MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run([sys.executable, "-c", make, f"sqlite:///{db}"], check=True, capture_output=True)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM alembic_version")
    conn.commit()
    conn.close()
    uri = f"sqlite:///{db}"
    run = MlflowRun(uri, "pdr", None, {"a": "1"}, {})
    run.end()
    assert len(list(tmp_path.glob("mlflow.db.broken-*"))) == 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    conn.close()


def test_an_unopenable_store_with_runs_is_left_alone_with_a_clear_error(tmp_path):
    from pdr.tracking.store import StoreError, prepare_store

    db = tmp_path / "mlflow.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (run_uuid TEXT)")
    conn.execute("CREATE TABLE metrics (key TEXT)")
    conn.execute("INSERT INTO runs VALUES ('r1')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"holds 1 runs.*mlflow db upgrade"):
        prepare_store(f"sqlite:///{db}")
    conn = sqlite3.connect(db)  # still there, run included
    assert conn.execute("SELECT run_uuid FROM runs").fetchall() == [("r1",)]
    conn.close()


def test_call_cache_first_creation_is_serialized(tmp_path):
    """Several processes opening one new cache file at the same moment all get a working store."""
    path = tmp_path / "calls.sqlite"
    go = time.time() + 3
    script = (
        "import sys, time\n"
        "from pdr.engines.call_store import CallStore\n"
        f"while time.time() < {go}: time.sleep(0.001)\n"
        "s = CallStore(sys.argv[1]); assert s.put('k' + sys.argv[2], b'[]', 0, 'sim'); s.close(); print('ok')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(i)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(o.strip() == "ok" for o, _ in outs), [e[-2000:] for _, e in outs]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 4
    conn.close()
    assert Path(str(path) + ".lock").exists()
