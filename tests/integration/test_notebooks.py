"""The analysis notebooks execute top to bottom (nbclient, kernel python3) against a small sim store."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each notebook runs in a Jupyter kernel on the session's sim sweeps

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory) -> str:
    """The tracking URI of the session's shared sim store (experiment `quickstart`: PDR x2, long CoT,
    majority; built by test_multirun.shared_store)."""
    from test_multirun import shared_store

    return shared_store(tmp_path_factory).uri


def _execute(name: str, env: dict[str, str], monkeypatch, cwd: Path) -> str:
    """Run the notebook; return all its text outputs joined (stream text and text/plain results)."""
    import nbformat
    from nbclient import NotebookClient

    for k, v in env.items():
        monkeypatch.setenv(k, v)  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(cwd)}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            if out.output_type == "stream":
                texts.append(out.text)
            else:
                texts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
                if "image/png" in out.get("data", {}):
                    texts.append("<png>")
    return "\n".join(texts)


def test_pareto_notebook_plots_frontiers_and_runs_the_paired_bootstrap(sim_store, monkeypatch, tmp_path):
    out = _execute("pareto", {"PDR_TRACKING_URI": sim_store, "PDR_EXPERIMENT": "quickstart"}, monkeypatch, tmp_path)
    assert "4 runs" in out
    assert out.count("<png>") == 2  # accuracy vs sequential and vs total tokens
    assert "SIMULATED engine — not model results" in out
    assert "paired bootstrap over 4 problems: diff (A - B) =" in out
    assert "p_a_le_b" in out  # the result dict is the last cell's value


def test_traces_notebook_shows_a_problems_rounds(sim_store, monkeypatch, tmp_path):
    out = _execute("traces", {"PDR_TRACKING_URI": sim_store, "PDR_EXPERIMENT": "quickstart"}, monkeypatch, tmp_path)
    assert "pdr on tiny (sim, sim-reasoner)" in out  # the run with the most rounds is picked
    assert "step  0 draft     n=4" in out and "summary" in out  # PDR's calls, in order
    assert "workspace after step 1 (global_summary)" in out
    assert "Round 1: 4 drafts" in out and "Round 3: 1 draft" in out  # the rendered view
