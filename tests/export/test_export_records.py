"""An export round-trips: one record per call output of traces.jsonl under each flag, final rewards
equal to results.jsonl's grades, draft rewards equal to their own answers graded, prompts equal
to the traces' messages."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pdr.export import ExportError, Selection, export_episodes
from pdr.strategies.vote import majority_index
from tests.export.conftest import RUNS
from tests.export.runs import copy_run, rows, traces


def export(paths: list[Path], out: Path, **sel) -> tuple[dict, list[dict]]:
    m = export_episodes(paths, "jsonl", out, Selection(**sel), allow_simulated=True, mlflow=False)
    recs = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return m, recs


@pytest.fixture(scope="module")
def everything(store, tmp_path_factory):
    root, _, results = store
    out = tmp_path_factory.mktemp("all")
    return export([root / "runs"], out / "x", calls="all")


def outputs_of(run_dir: Path, kinds: tuple[str, ...] | None = None) -> int:
    return sum(len(c["outputs"]) for t in traces(run_dir) for c in t["calls"] if kinds is None or c["kind"] in kinds)


def test_one_record_per_call_output_with_the_prompt_as_the_model_saw_it(store, everything):
    root, _, results = store
    m, recs = everything
    assert len(m["sources"]) == len(RUNS)
    assert len(recs) == sum(outputs_of(r.run_dir) for r in results.values())
    assert m["counts"]["records"] == len(recs)
    assert len({r["id"] for r in recs}) == len(recs)
    by_id = {r["id"]: r for r in recs}
    for res in results.values():
        key = json.loads((res.run_dir / "run.json").read_text())["run_key"]
        for t in traces(res.run_dir):
            for c in t["calls"]:
                for j, out in enumerate(c["outputs"]):
                    rec = by_id[f"{key}:{t['problem_id']}:{t['sample']}:{c['step']}:{c['branch'] + j}"]
                    assert rec["messages"] == [{"role": role, "content": content} for role, content in c["messages"]]
                    assert (rec["kind"], rec["step"], rec["n"]) == (c["kind"], c["step"], c["n"])
                    assert rec["text"] == out["text"] and rec["reasoning"] == out["reasoning"]
                    assert rec["completion"] == f"<think>\n{out['reasoning']}\n</think>\n\n{out['text']}"
                    assert rec["completion_tokens"] == out["completion_tokens"]
                    assert rec["finish_reason"] == out["finish_reason"]
                    assert rec["source"]["run_dir"] == str(res.run_dir.resolve())
    kinds = Counter(r["kind"] for r in recs)
    assert {"draft", "refine", "summary", "critique"} <= set(kinds), kinds
    assert m["counts"]["answer_mismatches"] == 0
    assert all(r["simulated"] is True and r["source"]["simulated"] is True for r in recs)


def test_final_reward_is_the_grade_in_results_jsonl(store, everything):
    root, _, results = store
    _, recs = everything
    finals = [r for r in recs if r["is_final"]]
    for name, res in results.items():
        graded = rows(res.run_dir)
        mine = {(r["problem_id"], r["sample"]): r for r in finals if r["source"]["run_dir"] == str(res.run_dir.resolve())}
        assert set(mine) == set(graded), name  # exactly one final per problem-sample
        for key, row in graded.items():
            assert mine[key]["reward"] == (1.0 if row["correct"] else 0.0), (name, key)
            assert mine[key]["answer"] == row["answer"]
            assert mine[key]["round"] == len(row["rounds"])
    # Both grades occur, or the test could not tell a reward from a constant.
    assert {r["reward"] for r in finals} == {0.0, 1.0}


def test_draft_rewards_are_the_rounds_grades_and_agree_with_the_grader(store, everything):
    from pdr.evaluation import grade

    root, _, results = store
    _, recs = everything
    gen = [r for r in recs if r["kind"] in ("draft", "refine")]
    assert all(r["reward"] in (0.0, 1.0) for r in gen)
    for res in results.values():
        graded = rows(res.run_dir)
        for r in (r for r in gen if r["source"]["run_dir"] == str(res.run_dir.resolve())):
            rnd = graded[(r["problem_id"], r["sample"])]["rounds"][r["round"] - 1]
            i = r["branch"]  # a round's drafts are its step's outputs in branch order
            assert r["answer"] == rnd["answers"][i]
            assert r["reward"] == (1.0 if rnd["correct"][i] else 0.0)
    # pdr's grader, on the draft's own answer, says the same (no answer: 0).
    for r in gen:
        got = grade(f"\\boxed{{{r['answer']}}}", r["gold"]).correct if r["answer"] is not None else False
        assert float(got) == r["reward"], r["id"]
    assert {r["reward"] for r in gen} == {0.0, 1.0}


def test_summaries_and_critiques_carry_no_reward_but_the_workspace_context(everything):
    _, recs = everything
    others = [r for r in recs if r["kind"] not in ("draft", "refine")]
    assert others and all(r["reward"] is None and r["correct"] is None and not r["is_final"] for r in others)
    summaries = [r for r in recs if r["kind"] == "summary"]
    assert all(r["drafts_accuracy_in"] is not None and r["drafts_accuracy_out"] is not None for r in summaries)


def test_vote_final_is_the_votes_winner(store, everything):
    root, _, results = store
    _, recs = everything
    for name in ("majority", "critique_vote"):
        res = results[name]
        finals = [r for r in recs if r["is_final"] and r["source"]["run_dir"] == str(res.run_dir.resolve())]
        assert finals
        for f in finals:
            row = rows(res.run_dir)[(f["problem_id"], f["sample"])]
            assert f["branch"] == majority_index(row["rounds"][-1]["answers"])
    # The vote's winner is not always the last draft: the mapping is exercised, not trivially met.
    assert any(r["is_final"] and r["branch"] != r["n"] - 1 for r in recs
               if r["source"]["strategy"] == "majority")


def test_calls_flag_counts(store, tmp_path):
    root, _, results = store
    m, recs = export([root / "runs"], tmp_path / "f")
    assert len(recs) == sum(len(r.rows) for r in results.values()) == m["counts"]["final"]
    assert all(r["is_final"] for r in recs)
    m, recs = export([root / "runs"], tmp_path / "d", calls="drafts")
    assert len(recs) == sum(outputs_of(r.run_dir, ("draft", "refine")) for r in results.values())
    assert {r["kind"] for r in recs} == {"draft", "refine"}


def test_correct_only_and_exclude_truncated(store, everything, tmp_path):
    root, _, results = store
    _, all_recs = everything
    _, recs = export([root / "runs"], tmp_path / "c", calls="all", correct_only=True)
    assert recs and all(r["reward"] == 1.0 for r in recs)
    assert len(recs) == sum(1 for r in all_recs if r["reward"] == 1.0)
    truncated = sum(1 for r in all_recs if r["finish_reason"] == "length")
    assert truncated, "the pdr run's tight cap should truncate some drafts"
    _, recs = export([root / "runs"], tmp_path / "t", calls="all", exclude_truncated=True)
    assert len(recs) == len(all_recs) - truncated and not any(r["truncated"] for r in recs)


def test_balance_per_problem(store, everything, tmp_path):
    root, _, _ = store
    _, all_recs = everything
    run = root / "runs" / "pdr"
    _, recs = export([run], tmp_path / "b", calls="drafts", balance_per_problem=4)
    per = Counter(r["problem_id"] for r in recs)
    assert per and max(per.values()) <= 4
    pool = [r for r in all_recs if r["source"]["run_dir"] == str(run.resolve()) and r["kind"] in ("draft", "refine")]
    for pid, n in per.items():
        good = sum(1 for r in pool if r["problem_id"] == pid and r["reward"] == 1.0)
        bad = sum(1 for r in pool if r["problem_id"] == pid and r["reward"] == 0.0)
        kept_good = sum(1 for r in recs if r["problem_id"] == pid and r["reward"] == 1.0)
        assert n == min(4, good + bad)
        assert kept_good == min(good, max(2, 4 - bad)), pid
    assert any(0 < sum(1 for r in recs if r["problem_id"] == p and r["reward"] == 1.0) < per[p] for p in per)
    _, again = export([run], tmp_path / "b2", calls="drafts", balance_per_problem=4)
    assert [r["id"] for r in again] == [r["id"] for r in recs]  # deterministic


def test_nothing_selected_is_an_error(store, tmp_path):
    root, _, results = store
    run = copy_run(results["sr"].run_dir, tmp_path / "all-wrong")
    graded = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for r in graded:  # every grade "wrong": --correct-only leaves nothing
        r["correct"] = False
        for rd in r["rounds"]:
            rd["correct"] = [False] * len(rd["correct"])
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in graded))
    with pytest.raises(ExportError, match="no record left after selection"):
        export([run], tmp_path / "e", calls="all", correct_only=True)
    _, recs = export([run], tmp_path / "ok", calls="final")
    assert recs and all(r["reward"] == 0.0 for r in recs)  # the rewards follow results.jsonl
