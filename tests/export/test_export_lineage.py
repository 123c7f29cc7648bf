"""The export's MLflow run (in the source runs' SQLite store), the manifest, the command line, and
the refusals: a missing directory, a run without traces, an unfinished run, a sim run."""

from __future__ import annotations

import json

import pytest

from pdr.export import ExportError, Selection, export_episodes
from pdr.export.__main__ import main
from tests.export.conftest import RUNS
from tests.export.runs import copy_run


def test_export_is_an_mlflow_run_with_its_sources_and_numbers(store, tmp_path):
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    root, uri, results = store
    out = tmp_path / "verl"
    m = export_episodes([root / "runs"], "verl", out, Selection(calls="drafts"), allow_simulated=True)
    assert m["mlflow"]["tracking_uri"] == uri  # the source runs' store by default
    c = MlflowClient(uri)
    run = c.get_run(m["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert c.get_experiment(run.info.experiment_id).name == "pdr-export"
    tags = run.data.tags
    assert tags["pdr.kind"] == "export" and tags["simulated"] == "true" and tags["pdr.export_format"] == "verl"
    assert set(tags["pdr.source_run_ids"].split(",")) == {r.mlflow_run_id for r in results.values()}
    assert tags["pdr.export_dir"] == str(out.resolve())
    assert run.data.params["selection.calls"] == "drafts"
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == len(RUNS)
    for di in inputs:
        itags = {t.key: t.value for t in di.tags}
        assert itags["mlflow.data.context"] == "source"
        assert itags["pdr.source_run_id"] in tags["pdr.source_run_ids"]
        assert di.dataset.name == "tiny" and di.dataset.digest
    metrics = run.data.metrics
    assert metrics["records"] == m["counts"]["records"] == pq.read_table(out / "train.parquet").num_rows
    assert metrics["records_draft"] == m["counts"]["by_kind"]["draft"]
    assert metrics["reward_mean"] == pytest.approx(m["rewards"]["mean"])
    assert 0 < metrics["correct_fraction"] < 1
    artifacts = [a.path for a in c.list_artifacts(run.info.run_id)]
    assert artifacts == ["manifest.json"]  # local artifact store: the data files stay where they were written
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["mlflow"]["run_id"] == run.info.run_id
    assert [s["mlflow_run_id"] for s in on_disk["sources"]] == [results[n].mlflow_run_id for n in sorted(RUNS)]


def test_manifest_says_what_was_exported(store, tmp_path):
    root, _, results = store
    m = export_episodes([root / "runs" / "pdr"], "trl", tmp_path / "t", Selection(calls="final", correct_only=True),
                        allow_simulated=True, mlflow=False)
    on_disk = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert on_disk["counts"] == m["counts"] and on_disk["mlflow"] is None
    assert on_disk["selection"] == {"calls": "final", "correct_only": True, "exclude_truncated": False,
                                    "balance_per_problem": None, "seed": 0}
    correct = sum(1 for r in results["pdr"].rows if r["correct"])
    assert m["counts"]["records"] == m["counts"]["final"] == correct
    assert m["rewards"]["mean"] == 1.0 and m["simulated"] is True
    assert m["format_versions"]["verl"] == "0.9.1" and m["format_versions"]["trl"] == "1.16.0"
    assert {f["path"] for f in m["files"]} == {str(tmp_path / "t" / "dataset"), str(tmp_path / "t" / "train.parquet")}


def test_command_line(store, tmp_path, capsys, monkeypatch):
    root, uri, _ = store
    monkeypatch.chdir(tmp_path)
    rc = main(["episodes", str(root / "runs" / "majority"), "--format", "jsonl", "--calls", "all",
               "--allow-simulated", "--out", "x", "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}",
               "--experiment", "mine"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "SIMULATED" in out and "records" in out and "experiment 'mine'" in out
    assert (tmp_path / "x" / "episodes.jsonl").exists() and (tmp_path / "other.db").exists()
    # Refused: the simulated run without --allow-simulated (exit 2, the reason on stderr).
    assert main(["episodes", str(root / "runs" / "majority"), "--format", "jsonl", "--no-mlflow", "--out", "y"]) == 2
    err = capsys.readouterr().err
    assert "simulated engine" in err and "--allow-simulated" in err
    assert not (tmp_path / "y").exists()
    # A non-empty --out is not overwritten by accident.
    assert main(["episodes", str(root / "runs" / "majority"), "--format", "jsonl", "--allow-simulated",
                 "--no-mlflow", "--out", "x"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def _export(path, tmp_path, **kw):
    return export_episodes([path], "jsonl", tmp_path / "out", Selection(calls="all"), mlflow=False, **kw)


def test_missing_directory(tmp_path):
    with pytest.raises(ExportError, match="no such directory"):
        _export(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no pdr run directory here or below"):
        _export(tmp_path / "empty", tmp_path)


def test_run_without_traces(store, tmp_path):
    run = copy_run(store[2]["sr"].run_dir, tmp_path / "r")
    (run / "traces.jsonl").unlink()
    with pytest.raises(ExportError, match="this run has no traces.jsonl"):
        _export(run, tmp_path, allow_simulated=True)


def test_unfinished_run_refused_unless_partial(store, tmp_path):
    run = copy_run(store[2]["sr"].run_dir, tmp_path / "r")
    (run / "summary.json").unlink()
    # An interrupted run: one problem-sample's row never written (its trace was).
    lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
    (run / "results.jsonl").write_text("".join(lines[:-1]))
    with pytest.raises(ExportError, match="has not finished .*--allow-partial"):
        _export(run, tmp_path, allow_simulated=True)
    m = _export(run, tmp_path, allow_simulated=True, allow_partial=True)
    assert m["counts"]["problem_samples"] == len(lines) - 1 and m["counts"]["skipped_unfinished_samples"] == 1


def test_error_rows_are_skipped(store, tmp_path):
    run = copy_run(store[2]["sr"].run_dir, tmp_path / "r")
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    rows[0].update(status="error", correct=False, rounds=[], error="EngineUnavailable: gone")
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = _export(run, tmp_path, allow_simulated=True)
    assert m["counts"]["skipped_error_samples"] == 1 and m["counts"]["final"] == len(rows) - 1


def test_simulated_run_refused_by_default(store, tmp_path):
    with pytest.raises(ExportError, match="simulated engine.*--allow-simulated"):
        _export(store[2]["sr"].run_dir, tmp_path)


def test_traces_that_do_not_match_the_results_are_refused(store, tmp_path):
    run = copy_run(store[2]["pdr"].run_dir, tmp_path / "r")
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    rows[0]["rounds"] = rows[0]["rounds"][:-1]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ExportError, match="generate steps in traces.jsonl but"):
        _export(run, tmp_path, allow_simulated=True)


def test_oracle_runs_are_marked(store, tmp_path):
    run = copy_run(store[2]["sr"].run_dir, tmp_path / "r")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["oracle"] is False
    m = _export(run, tmp_path, allow_simulated=True)
    assert m["oracle"] is False
    summary["oracle"] = True  # what a strategy.selection=oracle_* run records
    (run / "summary.json").write_text(json.dumps(summary))
    m = export_episodes([run], "jsonl", tmp_path / "o", Selection(calls="all"), allow_simulated=True, mlflow=False)
    recs = [json.loads(line) for line in (tmp_path / "o" / "episodes.jsonl").read_text().splitlines()]
    assert m["oracle"] is True and all(r["source"]["oracle"] is True for r in recs)
