"""`python -m pdr.report`: the Pareto report built from a real sweep's MLflow store, and the frontier logic."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from pdr.review.report import ORACLE_MARK, SIMULATED_MARK, build_report, main, pareto_mask, pareto_table

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
    assert len(csv) == 1 + 4 and csv[0].startswith("n,dataset,strategy,group,label,accuracy")
    html = (out / "pareto.html").read_text()
    assert SIMULATED_MARK in html and html.count("data:image/png;base64,") == 2
    assert "<table" in html and all(g in html for g in ("long_cot", "majority", "pdr"))
    assert "src=\"http" not in html and "<script" not in html  # self-contained
    md = (out / "pareto.md").read_text()
    assert SIMULATED_MARK in md and len(re.findall(r"\n\| \d+ \| tiny \|", md)) == 4


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
    assert art.read_text() != html and "(quickstart)" in art.read_text()  # the sweep's own report is kept
    logged = {a.path for a in c.list_artifacts(parent, "report")}
    assert {"report/pareto.html", "report/pareto_seq_tokens.png", "report/pareto_total_tokens.png",
            "report/pareto.csv"} <= logged
    cli = {a.path for a in c.list_artifacts(parent, "report-cli")}
    assert "report-cli/pareto.html" in cli
    # Again, to the same --out: neither the local files nor the logged ones are overwritten.
    assert main(["--parent-run", parent, "--tracking-uri", uri, "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p-2" / "pareto.html").exists()
    assert {a.path for a in c.list_artifacts(parent)} >= {"report", "report-cli", "report-cli-2"}


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
                     "tags.simulated": "false", "tags.oracle": r.get("oracle", "false")})
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
    assert set(table["group"]) == {"long_cot", "pdr", "sr+ea"}  # only budgets vary: colour = strategy
    t24 = table[table["dataset"] == "aime2024"].set_index(["group", "seq_tokens"])
    assert t24.loc[("pdr", 30_000), "frontier_seq"] and not t24.loc[("pdr", 40_000), "frontier_seq"]
    assert t24.loc[("long_cot", 10_000), "overall_frontier_total"]
    assert not t24.loc[("sr+ea", 60_000), "overall_frontier_seq"]  # pdr at 30K seq is more accurate
    # aime2025's single pdr run is on its own frontier: datasets are never compared with each other.
    assert table[table["dataset"] == "aime2025"]["frontier_seq"].all()
    assert set(t24["label"]) == {"max_tokens=10240", "max_tokens=18432"}  # only the varying key
    paths = build_report(runs, tmp_path / "r", title="synthetic <b>")
    html = paths["html"].read_text()
    assert SIMULATED_MARK not in html  # real-engine runs carry no simulated mark
    assert "synthetic &lt;b&gt;" in html
    assert list(table.columns[:3]) == ["n", "dataset", "strategy"] and list(table["n"]) == list(range(1, 7))
    with pytest.raises(KeyError, match="--group-by nope"):
        pareto_table(runs, group_by="nope")
    with pytest.raises(ValueError, match="no finished runs"):
        build_report(runs[runs["status"] == "FAILED"], tmp_path / "empty")


def test_auto_grouping_colours_by_the_sweep_axes_labels_with_them_and_merges_repeats(tmp_path):
    """A PDR sweep over distill x widths x max_tokens: every configuration was one colour and
    labels read like `max_tokens=4096, name=tiny`; now the colours are the distill types, the
    labels are the varying keys only, and a configuration run twice is one point."""
    rows = []
    for d_i, distill in enumerate(["global_summary", "top_k_per_sample"]):
        for w_i, widths in enumerate(["[4, 2]", "[8, 4]"]):
            for m_i, mt in enumerate(["4096", "8192"]):
                rows.append({"strategy": "pdr", "dataset": "tiny", "acc": 0.5 + 0.1 * d_i + 0.05 * w_i + 0.02 * m_i,
                             "seq": 1000 * (1 + w_i + m_i), "total": 5000 * (1 + w_i + m_i), "mt": mt,
                             "distill": distill, "widths": widths})
    rows.append(dict(rows[0]))  # the same configuration again (same run key)
    runs = _frame(rows)
    runs["params.strategy.distill"] = [r["distill"] for r in rows]
    runs["params.strategy.widths"] = [r["widths"] for r in rows]
    runs["params.dataset.name"] = "tiny"
    runs["tags.run_key"] = [f"{r['distill']}{r['widths']}{r['mt']}" for r in rows]
    table = pareto_table(runs)
    assert len(table) == 8 and table["runs"].max() == 2  # the repeat is merged
    assert set(table["group"]) == {"pdr distill=global_summary", "pdr distill=top_k_per_sample"}
    assert table.attrs["varying_keys"] == ["strategy.distill", "strategy.widths", "sampling.max_tokens"]
    for label in table["label"]:
        assert re.findall(r"(\w+)=", label) == ["distill", "widths", "max_tokens"]
        assert "name=" not in label
    assert table.groupby("strategy")["frontier_seq"].any().all()  # frontier per strategy
    paths = build_report(runs, tmp_path / "r")
    assert paths["seq_png"].read_bytes().startswith(PNG_MAGIC)
    md = paths["md"].read_text()
    assert "| n | dataset | group | label | runs |" in md and "distill=top_k_per_sample" in md


@pytest.mark.slow
def test_a_command_line_sweep_records_its_axes_and_names_its_runs(sweep):
    import json

    from mlflow.tracking import MlflowClient

    _, uri, parent = sweep
    c = MlflowClient(tracking_uri=uri)
    assert json.loads(c.get_run(parent).data.tags["sweep_params"]) == {"strategy.widths": "[2],[4,2]"}
    children = c.search_runs([c.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(r.info.run_name for r in children) == ["pdr-2-gsum-tiny", "pdr-4x2-gsum-tiny"]


def test_oracle_runs_are_their_own_marked_curves(tmp_path):
    """Oracle-PDR (workspaces from gold answers) is an analysis, never a deployable result: its
    points form their own curve, labelled [oracle], and the report says so."""
    runs = _frame([
        {"strategy": "pdr", "dataset": "aime2024", "acc": 0.6, "seq": 30_000, "total": 200_000, "mt": "10240"},
        {"strategy": "pdr", "dataset": "aime2024", "acc": 0.8, "seq": 30_000, "total": 200_000, "mt": "10240",
         "oracle": "true"},
    ])
    table = pareto_table(runs)
    assert set(table["group"]) == {"pdr", "pdr [oracle]"}
    assert table["frontier_seq"].all()  # the oracle curve does not dominate the real one away
    md = build_report(runs, tmp_path / "r", title="t")["md"].read_text()
    assert ORACLE_MARK in md
