"""The run directory: its files (`files`), the durable row writer (`writer`), the run's identity
and resume bookkeeping (`rundir`), and summary.json (`summary`). Part of the runner layer: it may
use evaluation, engines, tracking and config, and nothing below it imports it."""

from pdr.results.files import (
    ARTIFACTS,
    CONFIG,
    ERRORS,
    JOURNAL,
    RESULTS,
    RUN_INFO,
    SUMMARY,
    TRACES,
    final_rows,
    read_jsonl,
    write_json,
)
from pdr.results.rundir import RunFailed, RunPlan, config_dict, find_resumable, plan_run, run_key
from pdr.results.summary import ERROR_HINTS, error_summary, resolve_cache_mode, write_summary
from pdr.results.writer import ResultsWriter

__all__ = [
    "ARTIFACTS",
    "CONFIG",
    "ERRORS",
    "ERROR_HINTS",
    "JOURNAL",
    "RESULTS",
    "RUN_INFO",
    "SUMMARY",
    "TRACES",
    "ResultsWriter",
    "RunFailed",
    "RunPlan",
    "config_dict",
    "error_summary",
    "final_rows",
    "find_resumable",
    "plan_run",
    "read_jsonl",
    "resolve_cache_mode",
    "run_key",
    "write_json",
    "write_summary",
]
