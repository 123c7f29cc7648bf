"""Secrets: an API key comes only from the environment variable named by engine.api_key_env, and
appears nowhere pdr writes: MLflow store (params, tags, metrics: the SQLite file's bytes) and
artifacts, the run directory (results, traces, summary, config, journal, Hydra's files and log),
the persistent call cache, stdout and stderr, even at DEBUG log level."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.fakes.fake_sglang import FakeSGLangServer

pytestmark = pytest.mark.slow  # python -m pdr.run subprocesses


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            hits.append(path)
    return hits


@pytest.mark.parametrize("engine", ["sglang", "openai"])
def test_planted_api_key_is_used_but_never_recorded(tmp_path, engine):
    secret = f"sk-planted-{uuid.uuid4().hex}"
    with FakeSGLangServer(api_key=secret, latency_base_ms=5) as srv:
        url = srv.url if engine == "sglang" else f"{srv.url}/v1"
        env = {**os.environ, "PDR_TEST_KEY": secret, "PDR_CACHE_DIR": str(tmp_path / "cache")}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pdr.run",
                "+experiment=quickstart",
                f"engine={engine}",
                f"engine.url={url}",
                "engine.api_key_env=PDR_TEST_KEY",
                "cache.mode=on",
                "samples=1",
                "dataset.limit=3",
                f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                "hydra.verbose=true",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        route = "/generate" if engine == "sglang" else "/v1/chat/completions"
        auth = {h.get("authorization") for h in srv.headers(route)}
    assert auth == {f"Bearer {secret}"}, "the key from the environment was not used"

    # Everything that was written exists (so that the scan below means something) ...
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/summary.json")]
    for name in ("results.jsonl", "traces.jsonl", "summary.json", "config.json", "run.json", "run.log"):
        assert (run_dir / name).exists(), name
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "cache" / "calls.sqlite").exists()
    assert list((tmp_path / "mlartifacts").rglob("results.jsonl")), "no MLflow artifacts logged"
    assert "DEBUG" in proc.stdout + proc.stderr or list(run_dir.glob("*.log")), "no debug logging captured"
    # ... and the name of the variable is recorded, as it should be.
    assert b"PDR_TEST_KEY" in (tmp_path / "mlflow.db").read_bytes()

    needle = secret.encode()
    assert _files_containing(tmp_path, needle) == []
    assert secret not in proc.stdout and secret not in proc.stderr
    # The key's distinctive half alone (a redaction that kept a prefix would still leak it).
    half = secret[len("sk-planted-") :].encode()
    assert _files_containing(tmp_path, half) == []


def _pdr(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PDR_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "pdr.run", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_a_password_in_the_engine_url_is_masked_everywhere(tmp_path):
    """Issue 12 item 2: `engine.url=http://user:PASSWORD@host` (and a token in its query string)
    reached MLflow params and tags, config.json, summary.json, Hydra's files, run.log, stdout and
    error messages. The engine still uses the real URL; everything shown or stored masks it. Also
    a failing run (unreachable server): its message, log and Hydra files."""
    password = f"pw-planted-{uuid.uuid4().hex}"
    token = f"tok-planted-{uuid.uuid4().hex}"
    with FakeSGLangServer(latency_base_ms=5) as srv:
        url = srv.url.replace("://", f"://pdruser:{password}@")  # (a query string would break its paths)
        common = [
            "+experiment=quickstart", "engine=sglang", "cache.mode=on", "samples=1", "dataset.limit=3",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "hydra.verbose=true",
        ]  # fmt: skip
        ok = _pdr([*common, f"engine.url={url}"], tmp_path)
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert srv.count("/generate") > 0
    # quoted: "=" in an override's value
    dead = _pdr([*common, f"engine.url='http://pdruser:{password}@127.0.0.1:9/?token={token}'",
                 "engine.ready_timeout_s=1", "engine.connect_timeout_s=1"], tmp_path)  # fmt: skip
    assert dead.returncode == 1 and "could not start" in dead.stderr, dead.stderr[-3000:]
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/summary.json")]
    assert "pdruser" not in (run_dir / "config.json").read_text()  # masked, not dropped:
    assert "://***@127.0.0.1" in (run_dir / "config.json").read_text()
    for needle in (password, token):
        assert _files_containing(tmp_path, needle.encode()) == [], needle
        for proc in (ok, dead):
            assert needle not in proc.stdout + proc.stderr, needle
