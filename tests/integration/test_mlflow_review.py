"""What a user sees in MLflow after a run: problem-samples as traces, live metrics with steps,
the data set as an input, a run name that says what ran. Against a real (SQLite) MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdr.tracking.traces import check_mode, select


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two identical sim runs into one store; each takes a few seconds (engine.latency_base_ms)."""
    from pdr.runner import run
    from tests.conftest import compose_object

    root = tmp_path_factory.mktemp("review")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = compose_object(["+experiment=quickstart", "dataset.limit=3", "samples=2", "engine.skill=0.3",
                          "engine.latency_base_ms=400", "progress=false", f"tracking.uri={uri}",
                          "tracking.traces=all", "tracking.live_interval_s=0.5"])
    results = [run(cfg, root / f"run{i}", launch_dir=root) for i in range(2)]
    return uri, results


def test_problem_samples_are_searchable_traces_linked_to_their_run(two_runs):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, (res, _) = two_runs
    mlflow.set_tracking_uri(uri)
    exp = MlflowClient(uri).get_experiment_by_name("quickstart").experiment_id
    traces = mlflow.search_traces(locations=[exp], run_id=res.mlflow_run_id, return_type="list")
    assert len(traces) == 6  # tracking.traces=all: 3 problems x 2 samples
    statuses = {r["problem_id"] + "/" + str(r["sample"]): r["status"] for r in res.rows}
    for t in traces:
        assert t.info.request_metadata["mlflow.sourceRun"] == res.mlflow_run_id
        tags = t.info.tags
        assert statuses[f"{tags['problem_id']}/{tags['sample']}"] == tags["status"]
        kinds = [s.span_type for s in t.data.spans]
        names = [s.name for s in t.data.spans]
        # quickstart PDR: 4 drafts, a summary, 2 refines, a summary, the final refine = 9 LLM spans
        assert kinds.count("LLM") == 9, names
        assert any("round 1" in n for n in names) and any("distill" in n or "summary" in n for n in names)
        llm = [s for s in t.data.spans if s.span_type == "LLM"]
        assert all(s.attributes.get("completion_tokens", 0) > 0 for s in llm)
        assert all("finish_reason" in s.attributes for s in llm)
        assert any("correct" in s.attributes for s in llm)  # drafts carry their grade
    wrong = mlflow.search_traces(locations=[exp], run_id=res.mlflow_run_id, return_type="list",
                                 filter_string="tags.status = 'wrong'")
    assert len(wrong) == sum(1 for r in res.rows if r["status"] == "wrong")


def test_live_metrics_have_several_steps_while_the_run_goes(two_runs):
    from mlflow.tracking import MlflowClient

    uri, (res, _) = two_runs
    c = MlflowClient(uri)
    done = c.get_metric_history(res.mlflow_run_id, "live/problem_samples_done")
    assert len({m.step for m in done}) > 1  # a curve, not one point
    assert done[-1].value == 6
    calls = sorted(c.get_metric_history(res.mlflow_run_id, "live/calls"), key=lambda m: m.step)
    assert calls[-1].value >= 3 * 2 * 5 and calls[0].value < calls[-1].value
    for name in ("live/tokens", "live/tokens_per_s", "live/errors", "live/accuracy"):
        assert c.get_metric_history(res.mlflow_run_id, name), name


def test_dataset_input_and_a_run_name_that_says_what_ran(two_runs):
    from mlflow.tracking import MlflowClient

    from pdr.data import dataset_fingerprint

    uri, (first, second) = two_runs
    c = MlflowClient(uri)
    r1, r2 = c.get_run(first.mlflow_run_id), c.get_run(second.mlflow_run_id)
    assert r1.info.run_name == "pdr-4x2-gsum-tiny"
    assert r2.info.run_name == "pdr-4x2-gsum-tiny-2"  # unique within the experiment
    (inp,) = r1.inputs.dataset_inputs
    assert inp.dataset.name == "tiny"
    from tests.conftest import compose_object

    fp = dataset_fingerprint(compose_object(["+experiment=quickstart"]).dataset)
    assert fp.split(":", 1)[1].startswith(inp.dataset.digest)
    assert {t.key: t.value for t in inp.tags}["pdr.fingerprint"] == fp


def test_trace_selection_modes():
    entries = [{"problem_id": f"p{i}", "sample": s, "status": st}
               for i, st in enumerate(["correct", "wrong", "error", "correct"]) for s in (0, 1)]
    assert select(entries, "off") == []
    assert len(select(entries, "all")) == 8
    assert [t["status"] for t in select(entries, "failures")] == ["error", "error", "wrong", "wrong"]
    assert [(t["problem_id"], t["sample"]) for t in select(entries, "sample:3")] == [("p2", 0), ("p2", 1), ("p1", 0)]
    assert check_mode("sample:0") and check_mode("some") and check_mode("failures") is None


def test_bad_traces_value_names_the_key(make_cfg):
    from pdr.errors import ConfigError

    with pytest.raises(Exception) as info:
        make_cfg(["+experiment=quickstart", "tracking.traces=sometimes"])
    cause: BaseException | None = info.value
    while cause is not None and not isinstance(cause, ConfigError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None and "tracking.traces=sometimes" in str(cause)


def test_progress_counts_calls_and_logs_from_its_thread():
    import time

    from pdr.tracking.live import RunProgress

    logged: list[tuple[dict, int]] = []
    p = RunProgress(lambda m, step: logged.append((m, step)), total_samples=4, calls_per_sample=5, interval_s=0.1)
    p.calls, p.tokens = 7, 700
    assert p.estimated_calls() == 20
    p.row({"correct": True, "status": "correct", "engine_calls": 4})
    assert p.estimated_calls() == 16  # refined by the finished row: 4 + 4 x 3
    time.sleep(0.8)
    p.close()
    steps = [s for _, s in logged]
    assert len(steps) > 2 and steps == sorted(set(steps))
    assert logged[-1][0]["live/accuracy"] == 1.0 and logged[-1][0]["live/calls"] == 7


def test_run_dir_is_not_polluted(two_runs):
    _, (res, _) = two_runs
    assert Path(res.run_dir, "results.jsonl").exists()


def test_a_remote_artifact_store_gets_one_compressed_copy_of_the_traces(tmp_path):
    """Traces are stored once: with a remote artifact store, only traces.jsonl.gz is uploaded."""
    import gzip
    from types import SimpleNamespace

    from pdr.tracking.mlflow_run import MlflowRun

    uploaded: dict[str, bytes] = {}
    tags: dict[str, str] = {}

    class FakeClient:
        def get_run(self, run_id):
            return SimpleNamespace(info=SimpleNamespace(artifact_uri="s3://bucket/1/abc/artifacts"))

        def log_artifact(self, run_id, path, artifact_path=None):
            uploaded[Path(path).name] = Path(path).read_bytes()

        def set_tag(self, run_id, k, v):
            tags[k] = v

    tracker = MlflowRun.__new__(MlflowRun)
    tracker.client, tracker.run_id = FakeClient(), "abc"
    lines = "".join(f'{{"problem_id": "p{i}", "text": "{"word " * 200}"}}\n' for i in range(50))
    (tmp_path / "traces.jsonl").write_text(lines)
    (tmp_path / "results.jsonl").write_text("{}\n")
    tracker.log_run_files(tmp_path, ["results.jsonl", "traces.jsonl"])
    assert set(uploaded) == {"results.jsonl", "traces.jsonl.gz"}
    assert gzip.decompress(uploaded["traces.jsonl.gz"]).decode() == lines
    assert len(uploaded["traces.jsonl.gz"]) < len(lines) / 5
    assert tags["pdr.traces_file"] == "artifact:traces.jsonl.gz"


def test_run_traces_are_chosen_on_the_rows_and_the_latest_entry_is_logged(tmp_path, monkeypatch):
    """The selection is made on results.jsonl (small), and only the chosen entries of traces.jsonl
    are kept while it streams; a resumed problem-sample's later trace entry wins."""
    import json

    import pdr.tracking.traces as traces_mod

    rows = [{"problem_id": "p1", "sample": 0, "status": "correct"},
            {"problem_id": "p2", "sample": 0, "status": "wrong"},
            {"problem_id": "p3", "sample": 0, "status": "error"}]
    entries = [{"problem_id": "p3", "sample": 0, "status": "error", "attempt": 1},
               {"problem_id": "p1", "sample": 0, "status": "correct"},
               {"problem_id": "p2", "sample": 0, "status": "wrong"},
               {"problem_id": "p3", "sample": 0, "status": "error", "attempt": 2}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "traces.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    logged = []
    monkeypatch.setattr(traces_mod, "log_trace", lambda entry, row, *a: logged.append((entry, row)))
    assert traces_mod.log_run_traces(tmp_path, "run", "0", "failures") == 2
    assert [(e["problem_id"], e.get("attempt"), r["status"]) for e, r in logged] == [("p3", 2, "error"),
                                                                                     ("p2", None, "wrong")]
    logged.clear()
    assert traces_mod.log_run_traces(tmp_path, "run", "0", "sample:1") == 1 and logged[0][0]["problem_id"] == "p3"
