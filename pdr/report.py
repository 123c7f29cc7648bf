"""`python -m pdr.report` (and the `pdr-report` script): the accuracy-vs-tokens Pareto report of MLflow runs.

    python -m pdr.report --experiment quickstart

This module is the command's stable name only; the report is `pdr.review.report` (options, outputs
and the frontier's definition in its docstring).
"""

from __future__ import annotations

import sys

from pdr.review.report import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
