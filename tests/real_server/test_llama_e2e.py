"""pdr end to end over `engine=openai` against a real llama.cpp server with a real model (CPU).

These catch what a fake written against pdr's own reading of the protocol cannot: a server that
drops a field, answers one choice where n were asked, keeps generating after the client left,
restarts mid-run. Caps and data are tiny: the machine may be shared, and a token can take 1 s.
"""

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

from pdr.config.engines import OpenAIEngineConfig
from pdr.engines.base import GenRequest, Message, SamplingParams
from pdr.engines.openai import OpenAIEngine
from pdr.errors import ContextLengthError, EngineRequestError
from tests.fakes import run_with_engine

pytestmark = pytest.mark.real_server
CAP = 48


def pdr_args(server, *overrides: str) -> list[str]:
    return [
        sys.executable, "-m", "pdr.run", "+experiment=quickstart",
        "engine=openai", f"engine.url={server.url}", "engine.api_key_env=null",
        "dataset=tiny", "dataset.limit=2", "samples=1", "tracking=off", "progress=false",
        "sampling.temperature=0.8", f"sampling.max_tokens={CAP}",
        *overrides,
    ]  # fmt: skip


def env(cwd: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PDR_CACHE_DIR"] = str(cwd / "cache")  # a fresh call cache: every call reaches the server
    return e


def pdr_run(cwd: Path, server, *overrides: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        pdr_args(server, *overrides), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(cwd)
    )


def engine(server, **kw) -> OpenAIEngine:
    return OpenAIEngine(OpenAIEngineConfig(url=server.url, api_key_env=None, **kw))


def ask(content: str, n: int = 1, max_tokens: int = 8) -> GenRequest:
    return GenRequest(
        (Message("user", content),), SamplingParams(max_tokens=max_tokens, temperature=0.8), n=n
    )


def run_dir(cwd: Path) -> Path:
    (summary,) = list(cwd.glob("outputs/*/*/summary.json"))
    return summary.parent


def rows(cwd: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir(cwd) / "results.jsonl").read_text().splitlines()]


def completions(cwd: Path) -> list[dict]:
    out = []
    for line in (run_dir(cwd) / "traces.jsonl").read_text().splitlines():
        for call in json.loads(line)["calls"]:
            out.extend(call["outputs"])
    return out


def test_long_cot_honours_the_generation_cap(tmp_path, llama_server):
    proc = pdr_run(tmp_path, llama_server, "strategy=long_cot")
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = completions(tmp_path)
    assert outs, "no completions recorded"
    assert all(o["completion_tokens"] <= CAP for o in outs), [o["completion_tokens"] for o in outs]
    assert all(r["status"] != "error" for r in rows(tmp_path))


def test_pdr_with_width_two_runs_on_a_server_without_n(tmp_path, llama_server):
    proc = pdr_run(
        tmp_path,
        llama_server,
        "strategy.widths=[2]",
        "strategy.workspace_tokens=256",
        "strategy.distill=top_k_shared",
        "strategy.k=1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = rows(tmp_path)
    assert len(got) == 2 and all(r["status"] != "error" for r in got)
    # 2 drafts + 1 final refine per problem-sample, each within its cap.
    outs = completions(tmp_path)
    assert len(outs) == 2 * 3
    assert all(o["completion_tokens"] <= CAP for o in outs)


def test_majority_vote(tmp_path, llama_server):
    proc = pdr_run(tmp_path, llama_server, "strategy=majority", "strategy.n=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(completions(tmp_path)) == 2 * 3


# ------------------------------------------------------------------ engine-level, no subprocess


def test_the_engine_reads_what_the_server_is(llama_server):
    """Cap field, capacity and n support as pdr finds them on this server."""

    async def go(e: OpenAIEngine):
        out = await e.generate(ask("Count to twenty.", n=2))
        return out, e.info()

    out, info = run_with_engine(engine(llama_server), go)
    assert len(out) == 2 and all(c.completion_tokens <= 8 for c in out)
    assert info["max_tokens_field"] == "max_tokens"
    assert info["max_concurrency"] == 1 and info["server_kind"] == "llama-cpp-python server"
    assert info["n_fallback"] is True


def test_an_ignored_cap_field_is_an_error_naming_the_fix(llama_server):
    # llama.cpp drops max_completion_tokens. A grammar bounds the answer to ~15 tokens (more than
    # the cap of 8) so that the ignored cap does not cost a generation to the context limit.
    grammar = 'root ::= "one two three four five six seven eight nine ten eleven twelve"'
    with pytest.raises(EngineRequestError, match="ignored the generation cap.*max_tokens_field=max_tokens"):
        run_with_engine(
            engine(llama_server, max_tokens_field="max_completion_tokens", extra_body={"grammar": grammar}),
            lambda e: e.generate(ask("Count.")),
        )


def test_a_prompt_longer_than_the_context_is_a_clear_error(llama_server):
    long_prompt = "apple " * (llama_server.n_ctx + 200)
    with pytest.raises(ContextLengthError, match="the prompt alone is .* cannot help") as info:
        run_with_engine(engine(llama_server), lambda e: e.generate(ask(long_prompt)))
    assert "lower sampling.max_tokens" not in str(info.value)


# ------------------------------------------------------------------ faults


def _calls(cwd: Path) -> int:
    found = list(cwd.glob("outputs/*/*/calls.sqlite"))
    if not found:
        return 0
    try:
        conn = sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {what} in {timeout} s")


def test_a_server_killed_and_restarted_mid_run_leaves_no_error_rows(tmp_path, llama_server):
    proc = subprocess.Popen(
        pdr_args(llama_server, "strategy=majority", "strategy.n=2"),
        cwd=tmp_path, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: _calls(tmp_path) >= 1, proc, "a first call")
        llama_server.kill()  # mid-run: the next request is in flight or about to be sent
        time.sleep(2.0)
        llama_server.start()
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    log = (run_dir(tmp_path) / "run.log").read_text()
    assert "unreachable" in log and "is back after" in log, log[-3000:]
    got = rows(tmp_path)
    assert len(got) == 2 and all(r["status"] != "error" for r in got), [r["status"] for r in got]


def test_resume_after_a_kill(tmp_path, llama_server):
    args = ("strategy=majority", "strategy.n=2")
    proc = subprocess.Popen(
        pdr_args(llama_server, *args),
        cwd=tmp_path, env=env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(
            lambda: bool(list(tmp_path.glob("outputs/*/*/results.jsonl"))) and _rows_written(tmp_path) >= 1,
            proc,
            "a first row",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = _rows_written(tmp_path)
    again = pdr_run(tmp_path, llama_server, *args, "resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    if kept < 2:
        assert f"resumed:  kept {kept} finished problem-samples" in again.stdout
    got = rows(tmp_path)
    assert len(got) == 2 and all(r["status"] != "error" for r in got)


def _rows_written(cwd: Path) -> int:
    found = list(cwd.glob("outputs/*/*/results.jsonl"))
    return len(found[0].read_text().splitlines()) if found else 0
