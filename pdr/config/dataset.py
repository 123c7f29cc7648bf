"""Dataset config schema (`dataset=aime2024|aime2025|math500|hmmt_feb2025|amc2023|tiny|local|hf`).

A dataset comes from exactly one source:

- a bundled set: `path` and `hf_id` are null and `name` is one of `BUNDLED_DATASETS`
  (the files in pdr/data/bundled/, read without `datasets`);
- a local file or directory: `path` (JSONL/JSON/CSV/Parquet, read through `datasets`);
- a Hugging Face Hub dataset: `hf_id` (+ `hf_config`, `split`, `revision`).

With `path` or `hf_id` set, `name` is only a label (it names the run's dataset in logs and MLflow).
Validation here is pure (no I/O): whether a file exists or a hub id resolves is checked by
`pdr.data.load_problems`, which raises `DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pdr.errors import ConfigError, did_you_mean

# The sets shipped in pdr/data/bundled/<name>.jsonl (a test checks this against the files). Kept
# here rather than listed from disk so that validating a config stays free of I/O.
BUNDLED_DATASETS: tuple[str, ...] = ("aime2024", "aime2025", "amc2023", "hmmt_feb2025", "math500", "tiny")

# pdr's problem fields that `dataset.fields` may map to source columns. `difficulty` is optional:
# map it only if the source has a column with a [0, 1] difficulty hint for the simulated engine.
FIELD_KEYS: tuple[str, ...] = ("id", "problem", "answer", "difficulty")

# Local file formats, passed to `datasets.load_dataset` as the builder name. Inferred from the
# file extension when `dataset.format` is null.
FILE_FORMATS: tuple[str, ...] = ("json", "csv", "parquet")


def _identity_fields() -> dict[str, str]:
    return {"id": "id", "problem": "problem", "answer": "answer"}


@dataclass
class DatasetConfig:
    """Where the problems come from and which of them to run.

    Selection order (contract): file order, then `ids` (kept in file order), then the first `limit`.
    """

    # A bundled set's name, or just a label when `path` or `hf_id` is given.
    name: str = "tiny"
    # A local JSONL/JSON/CSV/Parquet file, or a directory `datasets.load_dataset` can read
    # (or one written by `Dataset.save_to_disk`). Relative paths are relative to the working dir.
    path: str | None = None
    # Local file format; null = from the extension (.jsonl/.json/.ndjson, .csv/.tsv, .parquet/.pq).
    format: str | None = None
    hf_id: str | None = None  # e.g. HuggingFaceH4/MATH-500
    hf_config: str | None = None  # the hub dataset's config (subset) name, if it has several
    split: str = "test"  # for hub ids and local files/directories; a bundled set has one split
    revision: str | None = None  # pin the hub revision (a commit sha) for reproducible runs
    # pdr field -> source column. Keys: id, problem, answer, and optionally difficulty.
    # A missing `id` column (when mapped to the default "id") gives ids "0", "1", ... (row index).
    fields: dict[str, str] = field(default_factory=_identity_fields)
    limit: int | None = None  # the first N problems (after `ids`); null = all
    ids: list[str] | None = None  # select problems by id (kept in file order); null = all
    # Where `datasets` caches the Arrow files it builds; null = its default (~/.cache/huggingface).
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.path is not None and self.hf_id is not None:
            raise ConfigError(
                f"dataset.path={self.path!r} and dataset.hf_id={self.hf_id!r}: set only one source "
                "(dataset.path=null for the hub, or dataset.hf_id=null for the local file)"
            )
        if self.path is not None and not self.path.strip():
            raise ConfigError(
                "dataset.path='': give a file or directory, or dataset.path=null for a bundled set"
            )
        if self.hf_id is not None and not self.hf_id.strip():
            raise ConfigError(
                "dataset.hf_id='': give a hub id like HuggingFaceH4/MATH-500, or dataset.hf_id=null"
            )
        if self.path is None and self.hf_id is None:
            # The conf/dataset/local.yaml and hf.yaml options: their source key was left unset.
            if self.name == "local":
                raise ConfigError(
                    "dataset.path is required with dataset=local: dataset.path=/data/problems.jsonl "
                    "(a .jsonl/.json/.csv/.parquet file or a directory)"
                )
            if self.name == "hf":
                raise ConfigError(
                    "dataset.hf_id is required with dataset=hf: e.g. dataset.hf_id=HuggingFaceH4/MATH-500"
                )
            if self.name not in BUNDLED_DATASETS:
                raise ConfigError(
                    f"dataset.name={self.name!r}: not a bundled set{did_you_mean(self.name, BUNDLED_DATASETS)}. "
                    f"Bundled sets: {', '.join(BUNDLED_DATASETS)} (dataset=NAME). For your own data set "
                    "dataset.path=FILE (dataset=local) or dataset.hf_id=ORG/NAME (dataset=hf)"
                )
        elif not self.name.strip():
            raise ConfigError(
                "dataset.name='': give a label for this dataset (it names the run's data in MLflow)"
            )
        if self.hf_id is None:
            for key in ("hf_config", "revision"):
                value = getattr(self, key)
                if value is not None:
                    raise ConfigError(
                        f"dataset.{key}={value!r}: only used with dataset.hf_id (set dataset.hf_id=ORG/NAME, "
                        f"or dataset.{key}=null)"
                    )
        if self.format is not None:
            if self.path is None:
                raise ConfigError(
                    f"dataset.format={self.format!r}: only used with dataset.path (or set dataset.format=null)"
                )
            if self.format not in FILE_FORMATS:
                raise ConfigError(
                    f"dataset.format={self.format!r}: unknown{did_you_mean(self.format, FILE_FORMATS)} "
                    f"(choose one of {', '.join(FILE_FORMATS)}, or null to infer it from the extension)"
                )
        if not self.split.strip():
            raise ConfigError("dataset.split='': give a split name, e.g. dataset.split=test")
        for key, column in self.fields.items():
            if key not in FIELD_KEYS:
                raise ConfigError(
                    f"dataset.fields.{key}={column!r}: unknown field{did_you_mean(key, FIELD_KEYS)} "
                    f"(mappable fields: {', '.join(FIELD_KEYS)}; e.g. dataset.fields.problem=Problem)"
                )
            if not str(column).strip():
                raise ConfigError(f"dataset.fields.{key}='': give the source column name for {key}")
        for key in ("problem", "answer"):
            if key not in self.fields:
                # A dict override replaces the default instead of merging into it (e.g. `dataset.fields={problem: Q}`).
                raise ConfigError(
                    f"dataset.fields={dict(self.fields)}: has no {key!r} entry "
                    f"(add dataset.fields.{key}=COLUMN; override single keys to keep the defaults)"
                )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"dataset.limit={self.limit}: must be >= 1 (or null for all problems)")
        if self.ids is not None:
            if not self.ids:
                raise ConfigError(
                    "dataset.ids=[]: list at least one problem id (or dataset.ids=null for all)"
                )
            seen: set[str] = set()
            for pid in self.ids:
                if pid in seen:
                    raise ConfigError(f"dataset.ids={list(self.ids)}: id {pid!r} is listed twice")
                seen.add(pid)

    @property
    def source_kind(self) -> str:
        """`bundled`, `local` or `hub`: which of the three sources this config reads."""
        if self.path is not None:
            return "local"
        if self.hf_id is not None:
            return "hub"
        return "bundled"
