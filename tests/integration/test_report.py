"""`python -m pdr.report`: the Pareto report built from a real sweep's MLflow store, and the frontier logic."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from pdr.review.report import SIMULATED_MARK, build_report, main, pareto_mask, pareto_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str, str]:
    """(cwd, tracking uri, parent run id of the basic-launcher sweep) of the shared sim store:
    experiment `quickstart` with PDR x2, long CoT and majority child runs."""
    from mlflow.tracking import MlflowClient
    from test_multirun import shared_store  # the store is built once per session

    st = shared_store(tmp_path_factory)
    c = MlflowClient(tracking_uri=st.uri)
    exp = c.get_experiment_by_name("quickstart")
    parents = c.search_runs([exp.experiment_id], "tags.`pdr.sweep_parent` = 'true'")
    (parent,) = [p for p in parents if "strategy.widths" in p.data.tags["overrides"]]
    return st.cwd, st.uri, parent.info.run_id


@pytest.mark.slow
def test_cli_builds_plots_table_and_html_from_the_store(sweep, tmp_path, capsys):
    cwd, uri, _ = sweep
    out = tmp_path / "rep"
    assert main(["--experiment", "quickstart", "--tracking-uri", uri, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 runs" in printed and SIMULATED_MARK in printed and "frontier runs" in printed
    for name in ("pareto_seq_tokens.png", "pareto_total_tokens.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    csv = (out / "pareto.csv").read_text().splitlines()
    assert len(csv) == 1 + 4 and csv[0].startswith("dataset,group,label,accuracy")
    html = (out / "pareto.html").read_text()
    assert SIMULATED_MARK in html and html.count("data:image/png;base64,") == 2
    assert "<table" in html and all(g in html for g in ("long_cot", "majority", "pdr"))
    assert "src=\"http" not in html and "<script" not in html  # self-contained
    md = (out / "pareto.md").read_text()
    assert SIMULATED_MARK in md and md.count("\n| tiny |") == 4


@pytest.mark.slow
def test_report_for_a_parent_run_is_logged_to_it(sweep, tmp_path):
    _, uri, parent = sweep
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    art = Path(urlparse(c.get_run(parent).info.artifact_uri).path) / "report" / "pareto.html"
    assert "(quickstart)" in art.read_text()  # logged by the sweep callback, titled with the experiment
    assert main(["--parent-run", parent, "--tracking-uri", uri, "--out", str(tmp_path / "p")]) == 0
    html = (tmp_path / "p" / "pareto.html").read_text()
    assert f"sweep {parent}" in html and html.count("<tr>") == 2  # the sweep's two children (body rows)
    assert art.read_text() == html  # the CLI's report replaced it on the parent run
    logged = {a.path for a in c.list_artifacts(parent, "report")}
    assert {"report/pareto.html", "report/pareto_seq_tokens.png", "report/pareto_total_tokens.png",
            "report/pareto.csv"} <= logged


@pytest.mark.slow
def test_cli_errors_name_the_fix(sweep, capsys):
    _, uri, _ = sweep
    assert main(["--experiment", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "no MLflow experiment named 'nope'" in err and "quickstart" in err
    assert main(["--tracking-uri", uri]) == 2
    assert "give --experiment NAME or --parent-run ID" in capsys.readouterr().err


def test_pareto_mask_keeps_exactly_the_non_dominated_points():
    tokens = [100, 200, 150, 300, 300, 50]
    acc = [0.5, 0.7, 0.5, 0.7, 0.9, 0.2]
    # 150/0.5 is dominated by 100/0.5; 200/0.7 ... no: 300/0.7 is dominated by 200/0.7.
    assert pareto_mask(tokens, acc) == [True, True, False, False, True, True]
    assert pareto_mask([1, 1], [0.5, 0.5]) == [True, True]  # ties are both kept


def _frame(rows: list[dict]) -> pd.DataFrame:
    """A load_runs-shaped DataFrame from a few synthetic runs (not simulated)."""
    from pdr.review.store import derive_columns, runs_to_frame

    df = runs_to_frame([])
    recs = []
    for i, r in enumerate(rows):
        recs.append({"run_id": f"r{i}", "run_name": f"run{i}", "status": r.get("status", "FINISHED"),
                     "start_time": pd.Timestamp(0) + pd.Timedelta(seconds=i),
                     "metrics.accuracy": r["acc"], "metrics.accuracy_ci_low": r["acc"] - 0.1,
                     "metrics.accuracy_ci_high": min(1.0, r["acc"] + 0.1), "metrics.seq_tokens": r["seq"],
                     "metrics.total_tokens": r["total"], "params.sampling.max_tokens": r["mt"],
                     "params.strategy.error_analysis": r.get("ea"),
                     "tags.strategy": r["strategy"], "tags.dataset": r["dataset"], "tags.model": "m",
                     "tags.simulated": "false"})
    return derive_columns(pd.concat([df, pd.DataFrame(recs)], ignore_index=True))


def test_table_groups_by_strategy_per_dataset_and_marks_frontiers(tmp_path):
    runs = _frame([
        {"strategy": "long_cot", "dataset": "aime2024", "acc": 0.5, "seq": 10_000, "total": 10_000, "mt": "10240"},
        {"strategy": "long_cot", "dataset": "aime2024", "acc": 0.6, "seq": 20_000, "total": 20_000, "mt": "18432"},
        {"strategy": "pdr", "dataset": "aime2024", "acc": 0.7, "seq": 30_000, "total": 200_000, "mt": "10240"},
        {"strategy": "pdr", "dataset": "aime2024", "acc": 0.65, "seq": 40_000, "total": 300_000, "mt": "18432"},
        {"strategy": "sr", "dataset": "aime2024", "acc": 0.62, "seq": 60_000, "total": 60_000, "mt": "10240", "ea": "True"},
        {"strategy": "pdr", "dataset": "aime2025", "acc": 0.4, "seq": 30_000, "total": 200_000, "mt": "10240"},
        {"strategy": "pdr", "dataset": "aime2025", "acc": 0.3, "seq": 30_000, "total": 200_000, "mt": "10240",
         "status": "FAILED"},
    ])
    table = pareto_table(runs)
    assert len(table) == 6  # the FAILED run is left out
    assert set(table["group"]) == {"long_cot", "pdr", "sr+ea"}
    t24 = table[table["dataset"] == "aime2024"].set_index(["group", "seq_tokens"])
    assert t24.loc[("pdr", 30_000), "frontier_seq"] and not t24.loc[("pdr", 40_000), "frontier_seq"]
    assert t24.loc[("long_cot", 10_000), "overall_frontier_total"]
    assert not t24.loc[("sr+ea", 60_000), "overall_frontier_seq"]  # pdr at 30K seq is more accurate
    # aime2025's single pdr run is on its own frontier: datasets are never compared with each other.
    assert table[table["dataset"] == "aime2025"]["frontier_seq"].all()
    assert "max_tokens=10240" in set(t24["label"])
    paths = build_report(runs, tmp_path / "r", title="synthetic <b>")
    html = paths["html"].read_text()
    assert SIMULATED_MARK not in html  # real-engine runs carry no simulated mark
    assert "synthetic &lt;b&gt;" in html
    assert table.columns[0] == "dataset"
    with pytest.raises(KeyError, match="--group-by nope"):
        pareto_table(runs, group_by="nope")
    with pytest.raises(ValueError, match="no finished runs"):
        build_report(runs[runs["status"] == "FAILED"], tmp_path / "empty")
