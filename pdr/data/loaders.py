"""Load a dataset config into a list of `Problem`s.

Three sources (see `pdr.config.dataset.DatasetConfig`):

- bundled sets (pdr/data/bundled/<name>.jsonl) are read line by line with `json`: fast, and no
  `datasets` import, which costs about a second of start-up;
- local files and directories go through `datasets.load_dataset` ("json", "csv", "parquet", or a
  directory); JSON files are checked line by line first so that a bad line is reported with its
  line number rather than as an Arrow parse error;
- hub ids go through `datasets.load_dataset(hf_id, hf_config, split=..., revision=...)`.

`datasets` is imported inside the functions that need it: `import pdr.data` must stay cheap.
Every problem in the file is validated (non-empty problem and answer, unique ids) before the
`ids`/`limit` selection, so a broken file fails the same way whatever subset a run uses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdr.config.dataset import BUNDLED_DATASETS, FIELD_KEYS, DatasetConfig
from pdr.errors import ConfigError, DataError, did_you_mean

logger = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"

_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_FORMAT_BY_SUFFIX = {
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# A row's `source` column (if any, and not mapped to a field) becomes Problem.source, not meta.
_SOURCE_COLUMN = "source"

# (problem id, row) -> difficulty hint in [0, 1] or None.
DifficultyRule = Callable[[str, Mapping[str, Any]], float | None]


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    `answer` is the gold answer as a string (numbers normalised: 25 -> "25", 27.0 -> "27").
    `difficulty` is a hint in [0, 1] for the simulated engine only (see `difficulty_hint`); None when
    the data gives none. `meta` holds the row's other columns (e.g. MATH-500's subject and level);
    it is left out of the hash so a Problem stays hashable, and should be treated as read-only.
    """

    id: str
    problem: str
    answer: str
    source: str
    difficulty: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


def bundled_names() -> list[str]:
    """The names of the bundled sets, sorted (each is a `dataset=NAME` option)."""
    return sorted(BUNDLED_DATASETS)


def bundled_path(name: str) -> Path:
    """The file of bundled set `name`; ConfigError with a suggestion for an unknown name."""
    if name not in BUNDLED_DATASETS:
        raise ConfigError(
            f"dataset.name={name!r}: not a bundled set{did_you_mean(name, BUNDLED_DATASETS)} "
            f"(bundled sets: {', '.join(bundled_names())})"
        )
    return BUNDLED_DIR / f"{name}.jsonl"


# ---------------------------------------------------------------------------------------------
# Difficulty hints
# ---------------------------------------------------------------------------------------------

_TRAILING_NUMBER = re.compile(r"-(\d+)$")


def difficulty_hint(dataset: str, problem_id: str, row: Mapping[str, Any]) -> float | None:
    """A difficulty hint in [0, 1] for a row of bundled set `dataset`, for the simulated engine only.

    Rules (monotone in the contest's own ordering; the numbers are rough, not calibrated):

    - math500: from `level` 1..5: 0.05 + 0.175 * (level - 1), i.e. 0.05, 0.225, 0.40, 0.575, 0.75.
    - aime2024/aime2025: from the problem number n = 1..15 within its paper (I or II):
      0.25 + 0.05 * (n - 1), i.e. 1 -> 0.25 ... 15 -> 0.95.
    - amc2023: from the problem number n = 1..25 within AMC 12A/12B: 0.10 + 0.025 * (n - 1),
      i.e. 1 -> 0.10 ... 25 -> 0.70.
    - hmmt_feb2025: ids 1..30 are three rounds of 10 (algebra & number theory, combinatorics,
      geometry), each ordered by difficulty; with p = position 1..10 in its round:
      0.40 + 0.06 * (p - 1), i.e. 0.40 ... 0.94.
    - tiny: the row's own `difficulty` field.
    - anything else: None.

    Raises DataError if the row lacks what its rule needs (a bundled file was edited badly).
    """
    # One function on purpose: every difficulty number pdr invents is here.
    if dataset == "tiny":
        return _unit_interval(row.get("difficulty"), "difficulty")
    if dataset == "math500":
        level = row.get("level")
        if not isinstance(level, int) or not 1 <= level <= 5:
            raise _RowProblem(f"`level` must be an integer 1-5, got {level!r}")
        return round(0.05 + 0.175 * (level - 1), 4)
    if dataset in ("aime2024", "aime2025", "amc2023", "hmmt_feb2025"):
        match = _TRAILING_NUMBER.search(problem_id)
        if match is None:
            raise _RowProblem(f"id {problem_id!r} does not end in a problem number (-N)")
        n = int(match.group(1))
        if dataset.startswith("aime"):
            return round(0.25 + 0.05 * (min(max(n, 1), 15) - 1), 4)
        if dataset == "amc2023":
            return round(0.10 + 0.025 * (min(max(n, 1), 25) - 1), 4)
        return round(0.40 + 0.06 * ((n - 1) % 10), 4)
    return None


def _unit_interval(value: Any, what: str) -> float:
    """`value` as a float in [0, 1]; _RowProblem (a DataError) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise _RowProblem(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


class _RowProblem(DataError):
    """What is wrong with a row, without its location; `_build_problems` re-raises it as a plain
    DataError prefixed with the file and line."""


# ---------------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _file_sha256(path: Path, mtime_ns: int, size: int) -> str:
    # mtime and size are part of the cache key so an edited file is hashed again.
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes. DataError if the file does not exist."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"dataset file {str(p)!r} not found or unreadable: {e.strerror or e}") from e
    return _file_sha256(p.resolve(), st.st_mtime_ns, st.st_size)


def dataset_fingerprint(cfg: DatasetConfig) -> str:
    """A string identifying the exact data a config reads, for logging with a run.

    - bundled set or local file: `sha256:<hex of the file's bytes>`;
    - local directory: `sha256:<hex>` over its files' relative paths and bytes (sorted, hidden skipped);
    - hub: `<hf_id>[:<hf_config>]@<revision>`, with revision `unpinned` when `dataset.revision` is
      null (the data may then change under the same fingerprint: pin it for reproducible runs).

    The selection (`ids`, `limit`) is not part of it: it is in the config. DataError for a missing path.
    """
    if cfg.hf_id is not None:
        config = f":{cfg.hf_config}" if cfg.hf_config else ""
        return f"{cfg.hf_id}{config}@{cfg.revision or 'unpinned'}"
    if cfg.path is None:
        return "sha256:" + file_sha256(bundled_path(cfg.name))
    p = Path(cfg.path).expanduser()
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p)
            if any(part.startswith(".") for part in rel.parts):
                continue
            h.update(rel.as_posix().encode() + b"\0" + file_sha256(f).encode() + b"\0")
        return "sha256:" + h.hexdigest()
    return "sha256:" + file_sha256(p)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_problems(cfg: DatasetConfig) -> list[Problem]:
    """Load the problems `cfg` describes.

    Order (contract): file order; then the `ids` selection (kept in file order; an id not in the
    data is a ConfigError); then the first `limit`. The whole source is validated before selection.
    Raises DataError for a missing file, a malformed row (naming the file and 1-based line/row), a
    missing or empty problem/answer, a duplicate id, or a hub dataset that cannot be loaded.
    """
    if cfg.hf_id is not None:
        problems = _load_hub(cfg, cfg.hf_id)
    elif cfg.path is not None:
        problems = _load_local(cfg, cfg.path)
    else:
        problems = _load_bundled(cfg)
    total = len(problems)
    if cfg.ids is not None:
        problems = _select_ids(problems, cfg.ids, cfg.name)
    if cfg.limit is not None:
        problems = problems[: cfg.limit]
    logger.info("dataset %s: %d of %d problems", cfg.name, len(problems), total)
    return problems


def _select_ids(problems: list[Problem], ids: list[str], name: str) -> list[Problem]:
    wanted = set(ids)
    known = [p.id for p in problems]
    known_set = set(known)
    unknown = [i for i in ids if i not in known_set]
    if unknown:
        hint = did_you_mean(unknown[0], known)
        raise ConfigError(
            f"dataset.ids: {unknown} not in dataset {name!r}{hint} "
            f"(its ids look like {', '.join(known[:3])}{', ...' if len(known) > 3 else ''})"
        )
    return [p for p in problems if p.id in wanted]


def _load_bundled(cfg: DatasetConfig) -> list[Problem]:
    path = bundled_path(cfg.name)
    if not path.is_file():
        raise DataError(f"bundled dataset file {str(path)!r} is missing (a broken install? reinstall pdr)")
    rows = _read_jsonl(path)
    return _build_problems(
        rows,
        cfg,
        where=path.name,
        unit="line",
        columns=None,
        default_source=f"pdr bundled {cfg.name}",
        hint=lambda pid, row: difficulty_hint(cfg.name, pid, row),
        consumed=("difficulty",),  # tiny's hint column, used by difficulty_hint
    )


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line; DataError naming the file and line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}, line {lineno}: invalid JSON ({e.msg} at column {e.colno})"
                    ) from e
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{path}, line {lineno}: expected a JSON object (one problem per line), "
                        f"got {type(obj).__name__}"
                    )
                rows.append((lineno, obj))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except FileNotFoundError as e:
        raise DataError(f"dataset file {str(path)!r} not found") from e
    return rows


def _check_json_file(path: Path) -> tuple[list[int] | None, list[int]]:
    """Validate a local .json/.jsonl file before `datasets` reads it.

    Returns (line of each row, blank lines between rows). The first is None for a single JSON
    document (an array of objects); for JSON Lines row i is on line result[i] (1-based).
    DataError with the line number for invalid JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError(f"{path}: the file is empty (expected one JSON object per line)")
    if lines[first].lstrip().startswith("["):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from e
        if not isinstance(doc, list) or not all(isinstance(x, dict) for x in doc):
            raise DataError(f"{path}: a JSON document must be an array of objects (or use JSON Lines)")
        return None, []
    line_of_row = [lineno for lineno, _ in _read_jsonl(path)]
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip() and i + 1 < line_of_row[-1]]
    return line_of_row, blank


def _load_local(cfg: DatasetConfig, path_str: str) -> list[Problem]:
    path = Path(path_str).expanduser()
    if not path.exists():
        raise DataError(
            f"dataset.path={path_str!r}: no such file or directory (resolved to {str(path.resolve())!r})"
        )
    lines: list[int] | None = None
    if path.is_dir():
        ds = _datasets_call(lambda: _load_directory(path, cfg), f"{path} (directory)")
    else:
        fmt = cfg.format or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise DataError(
                f"dataset.path={path_str!r}: cannot tell the format from the extension {path.suffix!r} "
                f"(use .jsonl, .json, .csv or .parquet, or set dataset.format=json|csv|parquet)"
            )
        blank: list[int] = []
        if fmt == "json" and path.suffix.lower() in _JSON_SUFFIXES:
            lines, blank = _check_json_file(path)

        def load() -> Any:
            import datasets

            kwargs: dict[str, Any] = {}
            if path.suffix.lower() == ".tsv":
                kwargs["delimiter"] = "\t"
            # data_files keyed by the configured split, so split= selects it whatever its name.
            return datasets.load_dataset(
                fmt, data_files={cfg.split: str(path)}, split=cfg.split, cache_dir=cfg.cache_dir, **kwargs
            )

        # Trap: datasets' JSON reader fails with a bare "Expected object or value" when a file has
        # blank lines between rows and a column mixes types (answers 25 and "\\frac{1}{2}").
        hint = f"; remove the blank lines (e.g. line {blank[0]})" if blank else ""
        ds = _datasets_call(load, str(path), hint)
    rows: Iterable[tuple[int, Mapping[str, Any]]] = enumerate(ds, start=1)
    unit = "row"
    if lines is not None:
        if len(lines) == len(ds):
            rows, unit = zip(lines, ds, strict=True), "line"
        else:  # not expected; number rows rather than report wrong lines
            logger.warning("%s: %d JSON lines but datasets read %d rows", path, len(lines), len(ds))
    return _build_problems(
        rows,
        cfg,
        where=str(path),
        unit=unit,
        columns=list(ds.column_names),
        default_source=str(path),
        hint=_mapped_difficulty(cfg),
    )


def _load_directory(path: Path, cfg: DatasetConfig) -> Any:
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        # Written by Dataset(Dict).save_to_disk: load_dataset cannot read that layout.
        obj = datasets.load_from_disk(str(path))
        if isinstance(obj, datasets.DatasetDict):
            if cfg.split not in obj:
                raise DataError(
                    f"dataset.split={cfg.split!r}: not in {path} (splits: {', '.join(obj)}; "
                    f"set dataset.split=NAME)"
                )
            return obj[cfg.split]
        return obj
    return datasets.load_dataset(str(path), split=cfg.split, cache_dir=cfg.cache_dir)


def _load_hub(cfg: DatasetConfig, hf_id: str) -> list[Problem]:
    import datasets

    what = f"{hf_id!r}" + (f" (config {cfg.hf_config!r})" if cfg.hf_config else "")
    try:
        ds = datasets.load_dataset(
            hf_id, cfg.hf_config, split=cfg.split, revision=cfg.revision, cache_dir=cfg.cache_dir
        )
    # datasets raises a zoo of types here (ConnectionError, FileNotFoundError, DatasetNotFoundError,
    # ValueError for an unknown split or config, HTTP errors ...): all mean "could not load".
    except Exception as e:
        raise DataError(
            f"dataset.hf_id={hf_id!r}: could not load dataset {what} split {cfg.split!r}"
            f"{' revision ' + repr(cfg.revision) if cfg.revision else ''} from the Hugging Face Hub: "
            f"{type(e).__name__}: {e}. Without network access, download it elsewhere and use "
            f"dataset=local dataset.path=/path/to/copy.jsonl (or run with HF_HUB_OFFLINE=1 and a warm cache)"
        ) from e
    source = dataset_fingerprint(cfg)
    return _build_problems(
        enumerate(ds, start=1),
        cfg,
        where=f"hub dataset {hf_id}",
        unit="row",
        columns=list(ds.column_names),
        default_source=source,
        hint=_mapped_difficulty(cfg),
    )


def _datasets_call(fn: Callable[[], Any], where: str, extra_hint: str = "") -> Any:
    """Run a `datasets` read of a local source; its failures become a DataError naming the source."""
    try:
        return fn()
    except DataError:
        raise
    # As for the hub: datasets and pyarrow raise many unrelated types for an unreadable file.
    except Exception as e:
        hint = extra_hint
        if "Unknown split" in str(e):
            hint += "; set dataset.split to one of the splits named above"
        raise DataError(f"{where}: datasets could not read it: {type(e).__name__}: {e}{hint}") from e


def _mapped_difficulty(cfg: DatasetConfig) -> DifficultyRule:
    """For non-bundled data: the difficulty column named by `dataset.fields.difficulty`, else None."""
    column = cfg.fields.get("difficulty")
    if column is None:
        return lambda pid, row: None

    def hint(pid: str, row: Mapping[str, Any]) -> float | None:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):  # an empty CSV cell
            return None
        return _unit_interval(value, f"difficulty (column {column!r})")

    return hint


# ---------------------------------------------------------------------------------------------
# Row -> Problem
# ---------------------------------------------------------------------------------------------


def _to_text(value: Any) -> str | None:
    """A cell as text: numbers normalised (25 -> "25", 27.0 -> "27", 0.5 -> "0.5"); None if empty/NaN."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    raise _RowProblem(f"expected text or a number, got {type(value).__name__} {value!r}")


def _build_problems(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    cfg: DatasetConfig,
    *,
    where: str,
    unit: str,
    columns: list[str] | None,
    default_source: str,
    hint: DifficultyRule,
    consumed: tuple[str, ...] = (),
) -> list[Problem]:
    """Turn (1-based line/row number, row) pairs into Problems, validating each row.

    `unit` says what the numbers count: "line" for JSON Lines files (blank lines included), "row"
    for data rows otherwise (1-based; a CSV header is not a row).

    `columns` (when the source has a fixed schema) is checked once up front so that a wrong
    mapping is reported with the available columns rather than as a missing value in row 1.
    Columns not mapped to a field, not `source` and not in `consumed` go to `Problem.meta`.
    """
    fields = cfg.fields
    id_col = fields.get("id", "id")
    # The default id mapping may be absent from the data (ids become row indices); an explicit
    # mapping to another column must exist.
    required = [k for k in ("problem", "answer") if k in fields]
    if id_col != "id":
        required.append("id")
    if "difficulty" in fields:
        required.append("difficulty")
    if columns is not None:
        for key in required:
            if fields[key] not in columns:
                raise DataError(_missing_column_msg(where, key, fields[key], columns))
    mapped = {fields[k] for k in FIELD_KEYS if k in fields}
    not_meta = mapped | {_SOURCE_COLUMN, *consumed}
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for index, (num, row) in enumerate(rows):
        loc = f"{where}, {unit} {num}"
        for key in required:
            if fields[key] not in row:
                raise DataError(_missing_column_msg(loc, key, fields[key], list(row)))
        try:
            problem = _to_text(row.get(fields["problem"]))
            answer = _to_text(row.get(fields["answer"]))
            pid = _to_text(row.get(id_col)) if id_col in row else str(index)
            if problem is None:
                raise _RowProblem(f"the problem text (column {fields['problem']!r}) is empty")
            if answer is None:
                raise _RowProblem(f"the answer (column {fields['answer']!r}) is empty")
            if pid is None:
                raise _RowProblem(f"the id (column {id_col!r}) is empty")
            difficulty = hint(pid, row)
        except _RowProblem as e:
            raise DataError(f"{loc}: {e}") from None
        if pid in first_line:
            raise DataError(
                f"{loc}: duplicate id {pid!r} (first on {unit} {first_line[pid]}); ids must be unique"
                + (" (map another column with dataset.fields.id=COLUMN)" if id_col in row else "")
            )
        first_line[pid] = num
        # A text `source` column is the row's provenance; anything else under that name is just data.
        src = row.get(_SOURCE_COLUMN) if _SOURCE_COLUMN not in mapped else None
        source = src.strip() if isinstance(src, str) and src.strip() else None
        meta = {k: v for k, v in row.items() if k not in not_meta or (k == _SOURCE_COLUMN and source is None)}
        problems.append(
            Problem(
                id=pid,
                problem=problem,
                answer=answer,
                source=source or default_source,
                difficulty=difficulty,
                meta=meta,
            )
        )
    if not problems:
        raise DataError(f"{where}: no problems (the file or split is empty)")
    return problems


def _missing_column_msg(where: str, key: str, column: str, columns: list[str]) -> str:
    close = did_you_mean(column, columns)
    if not close:
        lower = {c.lower(): c for c in columns}
        if column.lower() in lower:
            close = f" (did you mean {lower[column.lower()]!r}?)"
    return (
        f"{where}: no column {column!r} for the {key} field{close}; columns: {', '.join(map(str, columns))}. "
        f"Map it with dataset.fields.{key}=COLUMN"
    )
