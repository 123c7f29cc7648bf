"""Every strategy, distill type and data set runs end to end on the sim engine (in-process)."""

from __future__ import annotations

import json

import pytest

from pdr.runner import run
from tests.conftest import compose_object

BASE = ["+experiment=quickstart", "tracking=off", "progress=false", "samples=2"]


def _run(tmp_path, overrides):
    cfg = compose_object(BASE + overrides)
    result = run(cfg, tmp_path / "run", launch_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert rows and len(rows) == len(result.rows)
    assert all(r["status"] in ("correct", "wrong", "no_answer", "truncated") for r in rows)
    assert (tmp_path / "run" / "summary.json").exists()
    return result, rows


@pytest.mark.parametrize("strategy", ["pdr", "sr", "long_cot", "majority", "pdr_vote"])
def test_every_strategy(tmp_path, strategy):
    result, rows = _run(tmp_path, [f"strategy={strategy}", "dataset.limit=3"])
    m = result.summary
    assert 0 <= m["accuracy"] <= 1
    if strategy in ("sr", "long_cot"):
        assert all(r["seq_tokens"] == r["total_tokens"] for r in rows)
    else:
        assert all(r["seq_tokens"] < r["total_tokens"] for r in rows)


@pytest.mark.parametrize("distill", ["global_summary", "top_k_shared", "top_k_per_sample", "random_k"])
@pytest.mark.parametrize("selection", ["agreement", "judge"])
def test_every_distill_type(tmp_path, distill, selection):
    if distill in ("global_summary", "random_k") and selection == "judge":
        pytest.skip("selection applies to the top-k types only")
    result, rows = _run(tmp_path, [f"strategy.distill={distill}", f"strategy.selection={selection}", "dataset.limit=3"])
    assert [rd["width"] for rd in rows[0]["rounds"]] == [4, 2, 1]
    assert result.summary["round_2_draft_accuracy"] >= 0


@pytest.mark.parametrize("dataset", ["aime2024", "aime2025", "math500", "hmmt_feb2025", "amc2023", "tiny"])
def test_every_dataset(tmp_path, dataset):
    result, rows = _run(tmp_path, [f"dataset={dataset}", "dataset.limit=4"])
    assert len({r["problem_id"] for r in rows}) == 4


def test_sr_with_error_analysis_runs(tmp_path):
    _, rows = _run(tmp_path, ["strategy=sr", "strategy.error_analysis=true", "strategy.rounds=2", "dataset.limit=2"])
    assert len(rows[0]["rounds"]) == 3


def test_same_seed_same_results_other_seed_differs(tmp_path):
    def answers(sub, seed):
        cfg = compose_object(BASE + ["dataset=aime2025", "dataset.limit=5", f"seed={seed}"])
        res = run(cfg, tmp_path / sub, launch_dir=tmp_path)
        return sorted((r["problem_id"], r["sample"], r["answer"], r["total_tokens"]) for r in res.rows)

    assert answers("a", 1) == answers("b", 1)
    assert answers("a2", 1) != answers("c", 2)
