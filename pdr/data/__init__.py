"""Benchmark problems: `load_problems(cfg) -> list[Problem]` and the bundled sets.

Importing this package is cheap: `datasets` is imported only when a local file or a hub dataset
is actually loaded (the bundled sets are plain JSON Lines read with `json`).
"""

from pdr.data.loaders import (
    BUNDLED_DIR,
    Problem,
    bundled_names,
    bundled_path,
    dataset_fingerprint,
    difficulty_hint,
    file_sha256,
    load_problems,
)

__all__ = [
    "BUNDLED_DIR",
    "Problem",
    "bundled_names",
    "bundled_path",
    "dataset_fingerprint",
    "difficulty_hint",
    "file_sha256",
    "load_problems",
]
