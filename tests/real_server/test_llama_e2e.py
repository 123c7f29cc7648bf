"""pdr end to end over `engine=openai` against a real llama.cpp server with a real model (CPU).

These catch what a fake written against pdr's own reading of the protocol cannot: a server that
drops a field, answers one choice where n were asked, keeps generating after the client left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_server


def pdr_run(cwd: Path, server, *overrides: str, timeout: float = 900) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "-m", "pdr.run", "+experiment=quickstart",
        "engine=openai", f"engine.url={server.url}", "engine.api_key_env=null",
        "dataset=tiny", "dataset.limit=2", "samples=1", "tracking=off", "progress=false",
        "sampling.temperature=0.8", "sampling.max_tokens=48",
        *overrides,
    ]  # fmt: skip
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


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
    assert all(o["completion_tokens"] <= 48 for o in outs), [o["completion_tokens"] for o in outs]
    assert all(r["status"] != "error" for r in rows(tmp_path))


def test_pdr_with_width_two_runs_on_a_server_without_n(tmp_path, llama_server):
    proc = pdr_run(tmp_path, llama_server, "strategy.widths=[2]", "strategy.workspace_tokens=256", "strategy.distill=top_k_shared", "strategy.k=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = rows(tmp_path)
    assert len(got) == 2 and all(r["status"] != "error" for r in got)
    # 2 drafts + 1 final refine per problem-sample, each within its cap.
    outs = completions(tmp_path)
    assert len(outs) == 2 * 3
    assert all(o["completion_tokens"] <= 48 for o in outs)


def test_majority_vote(tmp_path, llama_server):
    proc = pdr_run(tmp_path, llama_server, "strategy=majority", "strategy.n=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(completions(tmp_path)) == 2 * 3
