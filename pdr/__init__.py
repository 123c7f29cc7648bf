"""pdr: declarative experiments for Parallel-Distill-Refine and related inference-time strategies.

Importing the package is cheap on purpose: heavy dependencies (mlflow, datasets, sympy, math-verify)
are imported only by the modules that need them, so `python -m pdr.run --cfg job` starts fast.
"""

__version__ = "0.1.0"
