"""trace_view.html: rounds, workspaces and final output of chosen problem-samples; escaped; bounded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdr.results.trace_view import FILENAME, choose, clip, write_trace_html

EVIL = "<script>alert('x')</script> & \\boxed{1<2}"


def _out(text: str, answer: str, tokens: int = 50, finish: str = "stop", reasoning: str = "thinking...") -> dict:
    return {"text": f"{text} \\boxed{{{answer}}}", "reasoning": reasoning, "finish_reason": finish,
            "prompt_tokens": 20, "completion_tokens": tokens, "cached_tokens": 0}


def _pdr_trace(pid: str, sample: int, status: str, final: str) -> tuple[dict, dict]:
    """A PDR trace: 2 drafts -> per-branch workspaces -> 1 refine; and its results row."""
    trace = {
        "problem_id": pid, "sample": sample, "problem": f"Problem {pid}: {EVIL}", "gold": "7", "status": status,
        "answer": final,
        "calls": [
            # completion order in the file; the view sorts by (step, branch)
            {"step": 2, "kind": "draft", "branch": 0, "n": 1,
             "messages": [["user", "refine with workspace"]], "outputs": [_out("final", final, 30)]},
            {"step": 0, "kind": "draft", "branch": 0, "n": 2, "messages": [["user", f"solve {EVIL}"]],
             "outputs": [_out("draft A " + EVIL, "7", 111), _out("draft B", "8", 222, finish="length")]},
        ],
        "workspaces": [{"step": 1, "type": "top_k_per_sample", "workspaces": ["WS-ONE " + EVIL]}],
    }
    row = {"problem_id": pid, "sample": sample, "status": status, "answer": final, "gold": "7",
           "correct": status == "correct", "seq_tokens": 400.0, "total_tokens": 700.0,
           "rounds": [{"round": 1, "width": 2, "answers": ["7", "8"], "correct": [True, False], "draft_accuracy": 0.5,
                       "truncated": 1, "workspace_tokens": 0.0},
                      {"round": 2, "width": 1, "answers": [final], "correct": [status == "correct"],
                       "draft_accuracy": 1.0 if status == "correct" else 0.0, "truncated": 0, "workspace_tokens": 33.0}]}
    return trace, row


def _write_run(run_dir: Path, pairs: list[tuple[dict, dict]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t, _ in pairs))
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for _, r in pairs))
    (run_dir / "summary.json").write_text(json.dumps({
        "simulated": True, "graph": "generate(2) -> distill -> generate(1)",
        "metrics": {"accuracy": 0.5, "problems": 2},
        "config": {"strategy": {"name": "pdr"}, "dataset": {"name": "tiny"}, "engine": {"name": "sim", "model": "m"},
                   "samples": 1}}))


def test_rounds_workspaces_and_final_output_are_shown_and_escaped(tmp_path):
    _write_run(tmp_path, [_pdr_trace("p1", 0, "correct", "7"), _pdr_trace("p2", 0, "wrong", "9")])
    path = write_trace_html(tmp_path)
    assert path == tmp_path / FILENAME
    html = path.read_text()
    assert "<script>" not in html and "alert(&#x27;x&#x27;)" in html and "&lt;script&gt;" in html
    assert "1&lt;2" in html and "&amp;" in html
    assert "<link" not in html and "src=" not in html  # self-contained
    assert html.count("Round 1: 2 drafts") == 2 and html.count("Round 2: 1 draft") == 2
    assert "workspace 33 tokens" in html
    # the round-1 draft table: answers, correctness, token lengths, finish reasons
    row_a = re.search(r"<tr><td>1</td><td>7</td><td><span class=\"ok\">✓</span></td><td>111</td><td>stop</td>", html)
    row_b = re.search(r"<tr><td>2</td><td>8</td><td><span class=\"bad\">✗</span></td><td>222</td><td>length</td>", html)
    assert row_a and row_b
    assert "Workspace given to round 2" in html and "WS-ONE &lt;script&gt;" in html
    assert "Final answer:</b> 9" in html and "b-wrong" in html
    assert "SIMULATED engine — not model results" in html
    assert html.index("Round 1") < html.index("Workspace given") < html.index("Round 2")  # step order


def test_every_problem_sample_failures_first_with_navigation_and_size_bounds(tmp_path):
    pairs = [_pdr_trace(f"q{i}", s, "correct", "7") for i in range(1, 13) for s in range(2)]
    pairs.append(_pdr_trace("q11", 2, "wrong", "9"))  # the failing sample of a problem beyond the first N
    long_text = "x" * 50_000 + " THE-END"
    pairs[0][0]["calls"][1]["outputs"][0]["reasoning"] = long_text
    _write_run(tmp_path, pairs)
    html = write_trace_html(tmp_path, max_chars=2000).read_text()
    shown = re.findall(r'<div class="entry" id="p-([^"]+)">', html)
    # every problem-sample, failures first, then natural id order and sample order
    assert shown[0] == "q11-2" and len(shown) == 25 and shown[1:5] == ["q1-0", "q1-1", "q2-0", "q2-1"]
    assert all(f"href='#p-{s}'" in html for s in shown)  # each one reachable from the index
    assert "next &rarr;" in html and "&larr; previous" in html and "href='#top'" in html
    assert "characters left out here" in html and "THE-END" in html and "x" * 2500 not in html
    small = write_trace_html(tmp_path, max_chars=2000, max_bytes=12_000).read_text()
    assert "Page size limit reached" in small and "compact" in small
    assert len(re.findall(r'<div class="entry" id="p-', small)) == 25  # compact entries still reach all
    assert len(small) < len(html)


def test_choose_orders_failures_by_severity():
    traces = [{"problem_id": "a", "sample": 0, "status": "correct"}, {"problem_id": "b", "sample": 0, "status": "wrong"},
              {"problem_id": "c", "sample": 1, "status": "error"}, {"problem_id": "c", "sample": 0, "status": "wrong"}]
    assert [(t["problem_id"], t["sample"]) for t in choose(traces, 1, 5)] == [("a", 0), ("c", 1), ("b", 0)]
    assert clip("abc", 10) == "abc"


def test_no_traces_no_page(tmp_path):
    assert write_trace_html(tmp_path) is None
    (tmp_path / "traces.jsonl").write_text("")
    assert write_trace_html(tmp_path) is None


@pytest.mark.slow
def test_renders_a_real_sim_run(tmp_path):
    """The page of an actual `pdr.run` (sim engine, SR with error analysis: drafts, workspaces, critiques)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pdr.run", "strategy=sr", "strategy.rounds=2", "strategy.error_analysis=true",
         "dataset.limit=2", "samples=1", "progress=false", "tracking=off", f"output_dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "DO_NOT_TRACK": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = write_trace_html(tmp_path / "run").read_text()
    assert html.count('<div class="entry"') == 2
    assert "Round 1: 1 draft" in html and "Round 3: 1 draft" in html
    assert "<b>critique</b> call" in html and "Workspace given to round 2" in html
    assert "Final answer:" in html
