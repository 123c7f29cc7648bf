"""Review: reading finished runs back and presenting them.

- `store`: an MLflow store's runs as a DataFrame, and a run's results/traces rows;
- `report`: the accuracy-vs-tokens Pareto report (`python -m pdr.report`);
- `trace_view`: the self-contained `trace_view.html` of a run's traces;
- `sweep`: the Hydra callback that gives a sweep its MLflow parent run and, at the end, its report.

Review imports tracking (the MLflow store) and results (the run files), never the reverse: tracking
records runs and knows nothing about how they are read back.
"""
