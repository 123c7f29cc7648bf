"""The command line's guards, as a user meets them: a credential in an override is refused before
Hydra composes or writes anything (the value is never echoed, never on disk), and a run that fails
validation leaves no `outputs/<date>/<time>/` behind. Each is one quick `python -m pdr.run`
subprocess (it fails before the runner is imported)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

BASE = ["+experiment=quickstart", "progress=false"]


def _pdr(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PDR_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "pdr.run", *BASE, f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize(
    "override",
    ["+engine.api_key={}", "engine.api_key={}", "++engine.api_key={}", "+launch_env.HF_TOKEN={}",
     "+tracking.password={}"],
)  # fmt: skip
def test_a_credential_override_is_refused_before_hydra_writes_or_echoes_it(tmp_path, override):
    secret = f"sk-planted-{uuid.uuid4().hex}"
    proc = _pdr([override.format(secret)], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    key = override.split("=")[0].lstrip("+")
    assert f"pdr: error: {key}: looks like a credential" in proc.stderr
    assert "api_key_env" in proc.stderr and "Traceback" not in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, secret.encode()) == []
    assert not (tmp_path / "outputs").exists()  # Hydra never started


def test_the_variable_name_of_a_key_is_not_a_credential(tmp_path):
    """`engine.api_key_env=NAME` names the variable; it passes the guard (and the run then fails
    at the config check, on purpose, with exit code 2)."""
    proc = _pdr(["engine=sglang", "engine.api_key_env=MY_VAR", "engine.max_concurrency=0"], tmp_path)
    assert proc.returncode == 2 and "max_concurrency" in proc.stderr, proc.stderr[-2000:]
    assert "looks like a credential" not in proc.stderr


@pytest.mark.parametrize(
    "args", [["engine.max_concurrency=0"], ["strategy.widthz=[4,2]"], ["dataset.path=/nonexistent.jsonl"]]
)
def test_a_run_that_fails_validation_leaves_no_output_directory(tmp_path, args):
    proc = _pdr(args, tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not list(tmp_path.glob("outputs/*/*")), list(tmp_path.rglob("*"))
