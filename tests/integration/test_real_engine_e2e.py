"""`python -m pdr.run` end to end against the fake SGLang server, through the real HTTP engines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fakes.fake_sglang import FakeSGLangServer

pytestmark = pytest.mark.slow  # python -m pdr.run subprocesses against fake servers


def _run(cwd, args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", "pdr.run", "+experiment=quickstart", "dataset.limit=3", "samples=2",
                           f"tracking.uri=sqlite:///{cwd}/mlflow.db", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = list(cwd.glob("outputs/*/*/summary.json"))
    return proc, summary.parent


@pytest.mark.parametrize("api", ["native", "chat"])
def test_pdr_run_against_fake_sglang(tmp_path, api):
    with FakeSGLangServer(model_path="Qwen/Qwen3-8B") as srv:
        proc, run_dir = _run(tmp_path, ["engine=sglang", f"engine.url={srv.url}", "engine.model=Qwen/Qwen3-8B",
                                        f"engine.api={api}"])
        route = "/generate" if api == "native" else "/v1/chat/completions"
        bodies = srv.bodies(route)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(r["status"] != "error" for r in rows)
    # Each problem-sample: fork of 4, summary, fork of 2, summary, final = 5 requests; forks use n.
    assert len(bodies) == 6 * 5
    ns = sorted(b["sampling_params"].get("n", 1) if api == "native" else b.get("n", 1) for b in bodies)
    assert ns.count(4) == 6 and ns.count(2) == 6
    if api == "native":
        assert all(b["sampling_params"]["max_new_tokens"] == 4096 for b in bodies)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["simulated"] is False
    assert summary["engine_info"].get("version") == "0.5.23"
    assert summary["metrics"]["total_tokens"] > summary["metrics"]["seq_tokens"] > 0
    assert "SIMULATED" not in proc.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert run.data.tags["simulated"] == "false" and run.data.tags["engine"] == "sglang"


def test_pdr_run_against_fake_openai_routes(tmp_path):
    with FakeSGLangServer(model_path="Qwen/Qwen3-8B") as srv:
        _, run_dir = _run(tmp_path, ["engine=openai", f"engine.url={srv.url}/v1", "engine.model=Qwen/Qwen3-8B",
                                     "engine.api_key_env=null"])
        assert srv.count("/v1/chat/completions") == 6 * 5
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["status"] != "error" for r in rows)


def test_unreachable_server_fails_fast_with_the_url(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pdr.run", "+experiment=quickstart", "engine=sglang",
                           "engine.url=http://127.0.0.1:9", "engine.model=Qwen/Qwen3-8B", "engine.ready_timeout_s=2",
                           "tracking=off"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
