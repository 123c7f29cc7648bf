"""Recorded timings (issue 14): every engine call's start and latency and every op's start and end are
in traces.jsonl, and the MLflow trace's spans are placed at exactly those times (not estimated);
traces.jsonl written before these fields existed still load, with the estimate. Real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pdr.results.trace_view import render_entry, write_trace_html

NS_TOL = 1000  # float seconds -> ns: well under a microsecond of rounding


def _ns(t: float) -> int:
    return int(round(t * 1e9))


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    """2 problems x 2 samples of the quickstart, with simulated latency, traces=all."""
    from pdr.runner import run
    from tests.conftest import compose_object

    root = tmp_path_factory.mktemp("timing")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = compose_object(["+experiment=quickstart", "dataset.limit=2", "samples=2", "engine.latency_base_ms=40",
                          "progress=false", f"tracking.uri={uri}", "tracking.traces=all"])
    result = run(cfg, root / "run", launch_dir=root)
    entries = [json.loads(line) for line in (root / "run" / "traces.jsonl").read_text().splitlines()]
    return uri, result, root / "run", {(e["problem_id"], e["sample"]): e for e in entries}


def _traces(uri: str, run_id: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    exp = MlflowClient(uri).get_experiment_by_name("quickstart").experiment_id
    return mlflow.search_traces(locations=[exp], run_id=run_id, return_type="list")


def test_traces_jsonl_records_each_calls_start_latency_and_each_steps_start_end(timed_run):
    _, _, _, entries = timed_run
    for e in entries.values():
        assert [s["step"] for s in e["steps"]] == [0, 1, 2, 3, 4]  # quickstart PDR: 5 ops
        assert [s["op"] for s in e["steps"]] == ["generate", "distill", "generate", "distill", "generate"]
        for s in e["steps"]:
            assert e["started"] - 0.01 <= s["started"] <= s["ended"] <= e["ended"] + 0.01
        for c in e["calls"]:
            assert c["latency_s"] > 0 and c["from_cache"] is False
            step = e["steps"][c["step"]]
            assert step["started"] - 1e-6 <= c["started"] <= c["started"] + c["latency_s"] <= step["ended"] + 1e-6


def test_mlflow_spans_start_and_end_at_the_recorded_times(timed_run):
    uri, result, _, entries = timed_run
    traces = _traces(uri, result.mlflow_run_id)
    assert len(traces) == 4
    for t in traces:
        entry = entries[(t.info.tags["problem_id"], int(t.info.tags["sample"]))]
        spans = t.data.spans
        by_id = {s.span_id: s for s in spans}
        (root,) = [s for s in spans if s.parent_id is None]
        assert root.attributes["pdr.timing"] == "recorded"
        assert abs(root.start_time_ns - _ns(entry["started"])) <= NS_TOL
        steps = {s.attributes["step"]: s for s in spans if s.span_type == "CHAIN" and "step" in s.attributes}
        assert sorted(steps) == [0, 1, 2, 3, 4]
        for rec in entry["steps"]:
            span = steps[rec["step"]]
            assert abs(span.start_time_ns - _ns(rec["started"])) <= NS_TOL, (rec, span.name)
            assert abs(span.end_time_ns - _ns(rec["ended"])) <= NS_TOL, (rec, span.name)
        llm = [s for s in spans if s.span_type == "LLM"]
        assert len(llm) == 9
        for s in llm:
            step = by_id[s.parent_id].attributes["step"]
            branch = s.attributes["branch"]
            (call,) = [c for c in entry["calls"] if c["step"] == step
                       and c["branch"] <= branch < c["branch"] + len(c["outputs"])]
            assert abs(s.start_time_ns - _ns(call["started"])) <= NS_TOL, s.name
            assert abs(s.end_time_ns - _ns(call["started"] + call["latency_s"])) <= NS_TOL, s.name
            assert s.attributes["latency_s"] == call["latency_s"]
            assert s.attributes["from_cache"] is False


def _old_format(entry: dict) -> dict:
    """The entry as traces.jsonl had it before timings were recorded."""
    old = {k: v for k, v in entry.items() if k != "steps"}
    old["calls"] = [{k: v for k, v in c.items() if k not in ("started", "latency_s", "from_cache")}
                    for c in entry["calls"]]
    return old


def test_old_traces_without_timings_still_load_with_the_estimate(timed_run, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from pdr.tracking.traces import log_trace

    _, result, run_dir, entries = timed_run
    rows = {(r["problem_id"], r["sample"]): r for r in result.rows}
    key = sorted(entries)[0]
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    mlflow.set_tracking_uri(uri)
    exp = MlflowClient(uri).create_experiment("old")
    run_id = MlflowClient(uri).create_run(exp).info.run_id
    log_trace(_old_format(entries[key]), rows[key], run_id, exp, fallback_start=0.0)
    mlflow.flush_trace_async_logging()
    (t,) = mlflow.search_traces(locations=[exp], run_id=run_id, return_type="list")
    root = next(s for s in t.data.spans if s.parent_id is None)
    assert root.attributes["pdr.timing"] == "estimated"
    assert [s.span_type for s in t.data.spans].count("LLM") == 9
    steps = sorted((s for s in t.data.spans if "step" in s.attributes and s.span_type == "CHAIN"),
                   key=lambda s: s.start_time_ns)
    # The estimate: steps back to back from the root's start, within its end.
    assert steps[0].start_time_ns == root.start_time_ns
    assert all(a.end_time_ns == b.start_time_ns for a, b in zip(steps, steps[1:], strict=False))
    assert steps[-1].end_time_ns <= root.end_time_ns

    # The HTML view: latencies where recorded, "n/a" for the old entry.
    html_new = render_entry(entries[key], rows[key])
    html_old = render_entry(_old_format(entries[key]), rows[key])
    lat = entries[key]["calls"][0]["latency_s"]
    assert f"{lat:.3f} s" in html_new and "<th>latency</th>" in html_new and " · step " in html_new
    assert "n/a" in html_old and f"{lat:.3f} s" not in html_old
    assert "<th>latency</th>" in (write_trace_html(run_dir) or Path()).read_text()
