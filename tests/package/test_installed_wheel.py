"""The package as a user installs it (issue 16): `python -m build` makes the sdist and, from the
sdist, the wheel; the wheel goes into a fresh virtual environment (no system site-packages; pip's
own cache helps where the index lets it cache); the quickstart and the README's user-config example run from a
temporary directory outside the checkout; `pip check` passes.

    python -m pytest -m package --durations=5     # 4-12 min here (by load), 3-8 of them the pip install

It needs the package index (or pip's cache) for the build backend and pdr's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.package

EXAMPLE = Path(__file__).parent / "example" / "my-configs"
QUICKSTART_NUMBERS = ["accuracy      0.917", "seq tokens    4,567", "total tokens 7,549", "(240 engine calls)"]


def _env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing back at the checkout or its venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PDR_CONFIG_PATH")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MLFLOW_ENABLE_TELEMETRY="false", DO_NOT_TRACK="1")
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)
    print(f"[{time.perf_counter() - started:6.1f} s] {' '.join(cmd)} (in {cwd}) -> {proc.returncode}")
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from it (so the sdist is proven to hold what the wheel needs)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out, timeout=600)
    (wheel,) = out.glob("pdr-*.whl")
    (sdist,) = out.glob("pdr-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh virtual environment with only the wheel (and its dependencies) installed."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(root / "venv")], cwd=root)
    bin_dir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(dist["wheel"])], cwd=root, timeout=1500)
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A directory with no checkout around it: where a user runs pdr."""
    assert REPO not in tmp_path.resolve().parents
    return tmp_path


def test_wheel_holds_the_code_the_configs_and_the_data_and_nothing_else(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    shipped = {f"pdr/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")
               if "local" not in p.relative_to(REPO / "conf").parts}
    assert shipped and shipped <= names, sorted(shipped - names)
    assert "pdr/conf/config.yaml" in names and "pdr/conf/__init__.py" in names
    bundled = {f"pdr/data/bundled/{p.name}" for p in (REPO / "pdr" / "data" / "bundled").iterdir()
               if p.suffix in (".jsonl", ".md")}
    assert "pdr/data/bundled/PROVENANCE.md" in bundled and bundled <= names
    code = {f"{p.relative_to(REPO).as_posix()}" for p in (REPO / "pdr").rglob("*.py")}
    assert code <= names, sorted(code - names)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pdr", "pdr-0.1.0.dist-info"}, tops  # no tests/, conf/ at the top, experiments/ ...
    assert not [n for n in names if "/local/" in n or "__pycache__" in n or n.endswith(".pyc")]
    entry_points = zipfile.ZipFile(dist["wheel"]).read("pdr-0.1.0.dist-info/entry_points.txt").decode()
    for script in ("pdr-run = pdr.run:main", "pdr-report = pdr.report:main", "pdr-dryrun = pdr.dryrun:main"):
        assert script in entry_points


def test_sdist_holds_what_the_build_needs_and_no_tests(dist):
    names = {n.split("/", 1)[1] for n in tarfile.open(dist["sdist"]).getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "conf/config.yaml", "conf/strategy/pdr.yaml", "pdr/run.py",
            "pdr/data/bundled/PROVENANCE.md", "pdr/data/bundled/tiny.jsonl"} <= names
    assert not [n for n in names if n.startswith(("tests/", "experiments/", "notebooks/", "conf/local/"))]


def test_quickstart_runs_from_another_directory_with_its_numbers(venv, elsewhere):
    where = _run([str(venv / "python"), "-c", "import pdr, pdr.conf; print(pdr.__file__, pdr.conf.__file__)"],
                 cwd=elsewhere).stdout
    assert str(REPO) not in where and str(venv.parent) in where  # the installed copy, not the checkout
    proc = _run([str(venv / "pdr-run"), "+experiment=quickstart"], cwd=elsewhere)
    for number in QUICKSTART_NUMBERS:
        assert number in proc.stdout, proc.stdout
    assert (elsewhere / "mlflow.db").exists() and list((elsewhere / "outputs").rglob("results.jsonl"))
    # the module form and the other entry points answer too
    assert "strategy:" in _run([str(venv / "python"), "-m", "pdr.run", "+experiment=quickstart", "--cfg", "job"],
                               cwd=elsewhere).stdout
    _run([str(venv / "pdr-report"), "--help"], cwd=elsewhere)
    _run([str(venv / "pdr-dryrun"), "--help"], cwd=elsewhere)


def test_readme_user_config_example_runs_from_the_users_folder(venv, elsewhere):
    shutil.copytree(EXAMPLE, elsewhere / "my-configs")
    proc = _run([str(venv / "pdr-run"), "+experiment=my_study"], cwd=elsewhere, PDR_CONFIG_PATH="my-configs")
    assert "pdr: wide_then_deep on tiny with engine=sim" in proc.stdout and "mean@2 over 12 problems" in proc.stdout
    # the same with Hydra's --config-dir, and a knob of the user's strategy on the command line
    job = _run([str(venv / "pdr-run"), "--config-dir", "my-configs", "+experiment=my_study",
                "strategy.params.width=8", "--cfg", "job"], cwd=elsewhere).stdout
    assert "name: wide_then_deep" in job and "width: 8" in job
    # a user file of a shipped name replaces the shipped one
    pdr_yaml = (REPO / "conf" / "strategy" / "pdr.yaml").read_text().replace("widths: [4, 2]", "widths: [3]")
    (elsewhere / "my-configs" / "strategy" / "pdr.yaml").write_text(pdr_yaml)
    job = _run([str(venv / "pdr-run"), "+experiment=quickstart", "--cfg", "job"], cwd=elsewhere,
               PDR_CONFIG_PATH="my-configs").stdout
    assert "- 3" in job.split("widths:")[1].split(":")[0]
    dry = _run([str(venv / "pdr-dryrun"), "+experiment=my_study", "--config-dir", "my-configs",
                "--problems", "2", "--samples", "1"], cwd=elsewhere).stdout
    assert "1 jobs" in dry


def test_pip_check_finds_no_broken_requirements(venv, elsewhere):
    _run([str(venv / "python"), "-m", "pip", "check"], cwd=elsewhere)
