"""A run directory's identity (pdr.results.rundir) and the credential check (pdr.config.secrets)."""

from __future__ import annotations

import json
import os

import pytest

from pdr.config.secrets import check_no_secrets
from pdr.errors import ConfigError
from pdr.results import RunFailed, config_dict, find_resumable, plan_run, run_key
from tests.conftest import compose_object

BASE = ["+experiment=quickstart", "dataset.limit=2", "samples=2"]


def test_run_key_ignores_how_a_run_is_logged_not_what_it_computes():
    cfg = compose_object(BASE)
    key = run_key(config_dict(cfg))
    assert run_key(config_dict(compose_object([*BASE, "tracking.experiment=other", "progress=false"]))) == key
    assert run_key(config_dict(compose_object([*BASE, "seed=1"]))) != key


def test_find_resumable_picks_the_newest_match_across_roots(tmp_path):
    old, new, other = tmp_path / "outputs/a", tmp_path / "multirun/b/0", tmp_path / "outputs/c"
    for i, (d, key) in enumerate(((old, "k"), (new, "k"), (other, "z"))):
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({"run_key": key}))
        os.utime(d / "run.json", (1000 + i, 1000 + i))
    assert find_resumable([tmp_path / "outputs", tmp_path / "multirun"], "k") == new
    assert find_resumable([tmp_path / "outputs"], "k") == old
    assert find_resumable([tmp_path / "nowhere"], "k") is None


def test_plan_keeps_finished_rows_on_resume_and_refuses_other_runs(tmp_path):
    from pdr.data import load_problems

    cfg = compose_object(BASE)
    problems = load_problems(cfg.dataset)
    plan = plan_run(cfg, tmp_path, problems)
    assert plan.attempt == 1 and not plan.kept and len(plan.todo) == 4
    plan.write_info()
    pid = problems[0].id
    rows = [
        {"problem_id": pid, "sample": 0, "status": "correct"},
        {"problem_id": pid, "sample": 1, "status": "error"},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RunFailed, match="already has results; pass resume=true"):
        plan_run(cfg, tmp_path, problems)
    cfg.resume = True
    plan = plan_run(cfg, tmp_path, problems)
    assert plan.attempt == 2 and [r["sample"] for r in plan.kept] == [0]
    assert [(p.id, s) for p, s in plan.todo] == [(pid, 1), (problems[1].id, 0), (problems[1].id, 1)]
    assert plan.finished() == 1
    with pytest.raises(RunFailed, match="different configuration"):
        plan_run(compose_object([*BASE, "seed=3", "resume=true"]), tmp_path, problems)


def test_a_credential_in_the_config_is_refused_by_name_never_by_value():
    cfg = compose_object(BASE)
    check_no_secrets(cfg)
    cfg.extra = {"hf_token": "hf_s3cr3t"}
    with pytest.raises(ConfigError, match=r"^extra\.hf_token: looks like a credential") as err:
        check_no_secrets(cfg)
    assert "hf_s3cr3t" not in str(err.value)
    cfg.extra = {"api_key_env": "MY_VAR", "max_tokens": 5}
    check_no_secrets(cfg)
