"""Review: reading finished runs back and presenting them.

- `store`: an MLflow store's runs as a DataFrame, and a run's results/traces rows;
- `report`: the accuracy-vs-tokens Pareto report (`python -m pdr.report`);
- (the run's self-contained `trace_view.html` is written by `pdr.results.trace_view`, at the end of
  every tracked run, so it sits in the runner's layer, below review);
- `sweep`: the Hydra callback that gives a sweep its MLflow parent run and, at the end, its report.

Review imports tracking (the MLflow store) and results (the run files), never the reverse: tracking
records runs and knows nothing about how they are read back.
"""
