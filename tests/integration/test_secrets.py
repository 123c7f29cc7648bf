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
