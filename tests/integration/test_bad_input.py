"""Bad input, as a user meets it: `python -m pdr.run ...` with a broken dataset, a missing file, an
unreachable server, a wrong or missing API key, an over-long prompt, an invalid override or a
credential in the config. Each exits non-zero with a one-line message naming the problem (no
traceback), as early as possible, and loses nothing that finished.

The cases run as parallel subprocesses (one module fixture) to keep the wall time low.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.fake_sglang import FakeSGLangServer

pytestmark = pytest.mark.slow  # python -m pdr.run subprocesses, one per case

BASE = ["+experiment=quickstart", "progress=false"]
WRONG_KEY = "sk-wrong-key-0123456789"
PLANTED = "sk-planted-in-config-9876543210"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Every case's CompletedProcess-like (returncode, stdout, stderr, cwd), run concurrently."""
    root = tmp_path_factory.mktemp("bad_input")
    data = root / "data"
    data.mkdir()
    good = [
        json.dumps({"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)})
        for i in range(1, 4)
    ]
    broken_json = _write(data / "broken.jsonl", [good[0], '{"id": "q2", "problem": "What is', good[2]])
    no_answer = _write(
        data / "no_answer.jsonl", [good[0], json.dumps({"id": "q2", "problem": "What is 1+1?"})]
    )
    long_prompt = _write(
        data / "long.jsonl",
        [
            *good,
            json.dumps(
                {
                    "id": "huge",
                    "problem": "Consider " + "the sequence " * 400 + "What is 1 + 1?",
                    "answer": "2",
                }
            ),
        ],
    )
    unreachable = f"http://127.0.0.1:{_free_port()}"

    with FakeSGLangServer(api_key="the-right-key") as keyed, FakeSGLangServer(context_length=300) as small:
        sglang = ["engine=sglang", "engine.max_retries=0", "engine.ready_timeout_s=2"]
        specs: dict[str, tuple[list[str], dict[str, str]]] = {
            "broken_row": (["dataset=local", f"dataset.path={broken_json}"], {}),
            "missing_field": (["dataset=local", f"dataset.path={no_answer}"], {}),
            "missing_file": (["dataset=local", f"dataset.path={data / 'nope.jsonl'}"], {}),
            "unreachable": ([*sglang, f"engine.url={unreachable}", "engine.ready_timeout_s=1"], {}),
            "wrong_key": (
                [*sglang, f"engine.url={keyed.url}", "engine.api_key_env=PDR_TEST_KEY"],
                {"PDR_TEST_KEY": WRONG_KEY},
            ),
            "unset_key": ([*sglang, f"engine.url={keyed.url}", "engine.api_key_env=PDR_UNSET_KEY_VAR"], {}),
            # A declared context longer than the server's: planning passes, the server refuses the
            # over-long prompt, and that one problem-sample is an error row.
            "long_prompt": (
                [
                    *sglang,
                    f"engine.url={small.url}",
                    "engine.context_length=100000",
                    "dataset=local",
                    f"dataset.path={long_prompt}",
                    "sampling.max_tokens=60",
                    "samples=1",
                    "engine.max_error_rate=0",
                    "tracking.enabled=false",
                ],
                {},
            ),
            # The server's own context length: context planning refuses before the first request.
            "long_prompt_planned": (
                [
                    *sglang,
                    f"engine.url={small.url}",
                    "dataset=local",
                    f"dataset.path={long_prompt}",
                    "sampling.max_tokens=60",
                    "samples=1",
                    "tracking.enabled=false",
                ],
                {},
            ),
            "bad_value": (["engine.max_concurrency=0"], {}),
            "bad_cross_field": (["strategy.distill=top_k_shared", "strategy.k=99"], {}),
            "bad_choice": (["strategy=pdrr"], {}),
            "unknown_key": (["strategy.widthz=[4,2]"], {}),
            "secret_in_config": (["+engine.api_key=" + PLANTED], {}),
        }
        procs = {}
        for name, (args, env_extra) in specs.items():
            cwd = root / name
            cwd.mkdir()
            env = {**os.environ, "PDR_CACHE_DIR": str(cwd / "cache"), **env_extra}
            env.pop("PDR_UNSET_KEY_VAR", None)
            procs[name] = (
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pdr.run",
                        *BASE,
                        f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}",
                        *args,
                    ],
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
                cwd,
            )
        results = {}
        for name, (proc, cwd) in procs.items():
            out, err = proc.communicate(timeout=600)
            results[name] = (proc.returncode, out, err, cwd)
        results["_generate_requests"] = (keyed.count("/generate"), small.count("/generate"))
    return results


def _check(cases, name: str, *needles: str, code: int | None = None) -> tuple[str, Path]:
    rc, out, err, cwd = cases[name]
    assert rc != 0, f"{name}: exit 0\n{out[-2000:]}"
    if code is not None:
        assert rc == code, err
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    for needle in needles:
        assert needle in err, f"{name}: {needle!r} not in stderr:\n{err[-3000:]}"
    return err, cwd


def _no_mlflow_run(cwd: Path) -> None:
    """Failed before any MLflow run was created (the store was never even opened)."""
    assert not (cwd / "mlflow.db").exists()


def test_malformed_dataset_row_names_file_and_line(cases):
    _, cwd = _check(cases, "broken_row", "broken.jsonl", "line 2")
    _no_mlflow_run(cwd)


def test_row_without_an_answer_names_the_field(cases):
    _, cwd = _check(cases, "missing_field", "no_answer.jsonl", "answer")
    _no_mlflow_run(cwd)


def test_missing_dataset_file(cases):
    _, cwd = _check(cases, "missing_file", "nope.jsonl", "no such file")
    _no_mlflow_run(cwd)


def test_unreachable_server_fails_at_start_with_url_and_hint(cases):
    err, cwd = _check(cases, "unreachable", "could not start", "http://127.0.0.1:", "is it running")
    _no_mlflow_run(cwd)
    assert not list(cwd.glob("outputs/*/*/results.jsonl"))


def test_wrong_api_key_fails_at_start_and_never_prints_the_key(cases):
    rc, out, err, cwd = cases["wrong_key"]
    _check(cases, "wrong_key", "401", "PDR_TEST_KEY")
    assert WRONG_KEY not in out + err
    _no_mlflow_run(cwd)
    assert cases["_generate_requests"][0] == 0  # not a single generation was attempted


def test_unset_api_key_variable_is_named(cases):
    _check(cases, "unset_key", "PDR_UNSET_KEY_VAR", "not set")


def test_a_graph_that_cannot_fit_the_servers_context_fails_before_any_request(cases):
    err, cwd = _check(cases, "long_prompt_planned", "context planning", "context_length=300", "fix:")
    assert not list(cwd.glob("outputs/*/*/results.jsonl"))  # nothing ran


def test_over_long_prompt_is_a_clear_per_problem_error_and_finished_rows_are_kept(cases):
    err, cwd = _check(cases, "long_prompt", "ContextLengthError", "context", "resume=true")
    (results,) = cwd.glob("outputs/*/*/results.jsonl")
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    errors = [r for r in rows if r["status"] == "error"]
    assert [r["problem_id"] for r in errors] == ["huge"] and errors[0]["error_type"] == "ContextLengthError"
    summary = json.loads((results.parent / "summary.json").read_text())
    assert summary["status"] == "FAILED" and summary["errors"]["by_type"] == {"ContextLengthError": 1}
    assert "sampling.max_tokens" in summary["errors"]["hints"]["ContextLengthError"]


@pytest.mark.parametrize(
    "name, needles",
    [
        ("bad_value", ("engine.max_concurrency=0", ">= 1")),
        ("bad_cross_field", ("strategy.k",)),
        ("bad_choice", ("strategy=pdrr", "did you mean 'pdr'")),
        ("unknown_key", ("widthz",)),
    ],
)
def test_invalid_overrides_fail_before_anything_runs(cases, name, needles):
    _, cwd = _check(cases, name, *needles)
    _no_mlflow_run(cwd)
    assert not list(cwd.glob("outputs/*/*/results.jsonl"))


def test_a_credential_in_the_config_is_refused_without_echoing_it(cases):
    rc, out, err, cwd = cases["secret_in_config"]
    _check(cases, "secret_in_config", "engine.api_key", "api_key_env")
    assert PLANTED not in out + err
    _no_mlflow_run(cwd)
    assert not list(cwd.glob("outputs/*/*/config.json"))
