"""The data package: bundled sets, local files and hub ids through `datasets`, errors, selection.

No network: local files are made in tmp_path; hub tests point `hf_id` at a local directory (which
`datasets` treats as a local dataset) or run with the hub in offline mode.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import pdr.data.loaders as loaders
from pdr.config.dataset import BUNDLED_DATASETS, DatasetConfig
from pdr.data import (
    BUNDLED_DIR,
    Problem,
    bundled_names,
    dataset_fingerprint,
    difficulty_hint,
    load_problems,
)
from pdr.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]

# The documented row counts (pdr/data/bundled/PROVENANCE.md).
COUNTS = {"aime2024": 30, "aime2025": 30, "math500": 500, "hmmt_feb2025": 30, "amc2023": 40, "tiny": 12}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub in offline mode, whether or not `datasets` was imported before this test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def local(path: Path, tmp_path: Path, **kw) -> DatasetConfig:
    return DatasetConfig(name="local", path=str(path), cache_dir=str(tmp_path / "hf-cache"), **kw)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


MAPPED_ROWS = [
    {"ID": "p1", "Problem": "What is 5*5?", "Answer": 25, "Topic": "arith"},
    {"ID": "p2", "Problem": "What is 3*9?", "Answer": 27.0, "Topic": "arith"},
    {"ID": "p3", "Problem": "Half of 1?", "Answer": 0.5, "Topic": "frac"},
]
MAPPING = {"id": "ID", "problem": "Problem", "answer": "Answer"}


# --- bundled sets ------------------------------------------------------------------------------


def test_bundled_names_match_the_files() -> None:
    assert bundled_names() == sorted(p.stem for p in BUNDLED_DIR.glob("*.jsonl"))
    assert set(bundled_names()) == set(COUNTS) == set(BUNDLED_DATASETS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_bundled_set_loads_with_documented_count(name: str) -> None:
    problems = load_problems(DatasetConfig(name=name))
    assert len(problems) == COUNTS[name]
    assert len({p.id for p in problems}) == len(problems)
    for p in problems:
        assert isinstance(p.answer, str) and p.answer.strip() == p.answer and p.answer
        assert p.problem.strip()
        assert p.source
        assert p.difficulty is not None and 0.0 <= p.difficulty <= 1.0
    # file order is kept
    file_ids = [json.loads(line)["id"] for line in (BUNDLED_DIR / f"{name}.jsonl").read_text().splitlines()]
    assert [p.id for p in problems] == file_ids


def test_math500_keeps_extra_columns_in_meta() -> None:
    p = load_problems(DatasetConfig(name="math500", limit=1))[0]
    assert p.id == "test/precalculus/807.json"
    assert p.meta == {"subject": "Precalculus", "level": 2, "unique_id": "test/precalculus/807.json"}
    assert p.difficulty == pytest.approx(0.225)


def test_tiny_is_small_easy_and_varied() -> None:
    problems = load_problems(DatasetConfig(name="tiny"))
    assert 8 <= len(problems) <= 12
    assert [p.id for p in problems] == [f"tiny-{i}" for i in range(1, len(problems) + 1)]
    assert all(p.source == "pdr (written for the quickstart)" for p in problems)
    assert all(p.difficulty is not None and 0.05 <= p.difficulty <= 0.4 for p in problems)
    answers = [p.answer for p in problems]
    assert any("\\frac" in a for a in answers)
    assert any("\\sqrt" in a for a in answers)
    assert any(a.startswith("(") and "," in a for a in answers)
    assert all("difficulty" not in p.meta for p in problems)  # consumed, not duplicated


def test_provenance_has_a_tiny_section() -> None:
    text = (BUNDLED_DIR / "PROVENANCE.md").read_text()
    assert "## tiny.jsonl" in text and "MIT" in text.split("## tiny.jsonl")[1]


# --- selection -----------------------------------------------------------------------------------


def test_limit_takes_the_first_n() -> None:
    problems = load_problems(DatasetConfig(name="aime2025", limit=3))
    assert [p.id for p in problems] == ["2025-I-1", "2025-I-2", "2025-I-3"]
    assert len(load_problems(DatasetConfig(name="tiny", limit=1000))) == COUNTS["tiny"]


def test_ids_keep_file_order_then_limit() -> None:
    cfg = DatasetConfig(name="aime2025", ids=["2025-II-15", "2025-I-7", "2025-I-2"])
    assert [p.id for p in load_problems(cfg)] == ["2025-I-2", "2025-I-7", "2025-II-15"]
    cfg = DatasetConfig(name="aime2025", ids=["2025-II-15", "2025-I-7", "2025-I-2"], limit=2)
    assert [p.id for p in load_problems(cfg)] == ["2025-I-2", "2025-I-7"]


def test_unknown_id_is_a_config_error_with_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"dataset\.ids: \['2025-I-16'\] not in dataset 'aime2025'.*did you mean"
    ):
        load_problems(DatasetConfig(name="aime2025", ids=["2025-I-1", "2025-I-16"]))


# --- difficulty ------------------------------------------------------------------------------------


def _by_id(name: str) -> dict[str, float]:
    return {p.id: p.difficulty for p in load_problems(DatasetConfig(name=name))}  # type: ignore[misc]


@pytest.mark.parametrize("name", ["aime2024", "aime2025"])
def test_aime_difficulty_rises_with_problem_number(name: str) -> None:
    d = _by_id(name)
    year = name[-4:]
    for paper in ("I", "II"):
        seq = [d[f"{year}-{paper}-{n}"] for n in range(1, 16)]
        assert seq == sorted(seq) and len(set(seq)) == 15
        assert seq[0] == pytest.approx(0.25) and seq[-1] == pytest.approx(0.95)


def test_amc_and_hmmt_difficulty_monotone_within_contest_and_round() -> None:
    d = _by_id("amc2023")
    for paper in ("12A", "12B"):
        nums = sorted(int(k.rsplit("-", 1)[1]) for k in d if f"-{paper}-" in k)
        seq = [d[f"2023-{paper}-{n}"] for n in nums]
        assert seq == sorted(seq) and len(set(seq)) == len(seq)
    assert d["2023-12A-1"] == pytest.approx(0.10) and d["2023-12A-25"] == pytest.approx(0.70)
    h = _by_id("hmmt_feb2025")
    for start in (1, 11, 21):  # three rounds of ten
        seq = [h[f"hmmt-feb-2025-{n}"] for n in range(start, start + 10)]
        assert seq == sorted(seq) and len(set(seq)) == 10
        assert seq[0] == pytest.approx(0.40) and seq[-1] == pytest.approx(0.94)


def test_math500_difficulty_follows_level() -> None:
    for p in load_problems(DatasetConfig(name="math500")):
        assert p.difficulty == pytest.approx(0.05 + 0.175 * (p.meta["level"] - 1))


def test_difficulty_hint_is_none_for_other_data() -> None:
    assert difficulty_hint("my_set", "q-3", {"level": 3}) is None


# --- fingerprint -----------------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_file_bytes(tmp_path: Path) -> None:
    for name in COUNTS:
        digest = hashlib.sha256((BUNDLED_DIR / f"{name}.jsonl").read_bytes()).hexdigest()
        assert dataset_fingerprint(DatasetConfig(name=name)) == f"sha256:{digest}"
    f = write_jsonl(tmp_path / "a.jsonl", [{"problem": "1+1?", "answer": "2"}])
    before = dataset_fingerprint(local(f, tmp_path))
    assert before == "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    write_jsonl(f, [{"problem": "1+2?", "answer": "3"}])
    assert dataset_fingerprint(local(f, tmp_path)) != before


def test_fingerprint_of_hub_and_directory(tmp_path: Path) -> None:
    assert dataset_fingerprint(DatasetConfig(name="hf", hf_id="org/ds", revision="abc123")) == "org/ds@abc123"
    assert (
        dataset_fingerprint(DatasetConfig(name="hf", hf_id="org/ds", hf_config="main"))
        == "org/ds:main@unpinned"
    )
    d = tmp_path / "dir"
    d.mkdir()
    write_jsonl(d / "test.jsonl", [{"problem": "1+1?", "answer": "2"}])
    first = dataset_fingerprint(local(d, tmp_path))
    assert first.startswith("sha256:") and first == dataset_fingerprint(local(d, tmp_path))
    write_jsonl(d / "test.jsonl", [{"problem": "1+1?", "answer": "3"}])
    assert dataset_fingerprint(local(d, tmp_path)) != first


# --- local files through datasets -----------------------------------------------------------------


def _check_mapped(problems: list[Problem], source: Path) -> None:
    assert [p.id for p in problems] == ["p1", "p2", "p3"]
    assert [p.answer for p in problems] == ["25", "27", "0.5"]  # numbers normalised to text
    assert problems[0].problem == "What is 5*5?"
    assert problems[0].meta == {"Topic": "arith"}
    assert all(p.source == str(source) and p.difficulty is None for p in problems)


def test_local_jsonl_with_field_mapping(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "mine.jsonl", MAPPED_ROWS)
    _check_mapped(load_problems(local(f, tmp_path, fields=MAPPING)), f)


def test_local_csv_with_field_mapping(tmp_path: Path) -> None:
    import pandas as pd

    f = tmp_path / "mine.csv"
    pd.DataFrame(MAPPED_ROWS).to_csv(f, index=False)
    _check_mapped(load_problems(local(f, tmp_path, fields=MAPPING)), f)


def test_local_parquet_with_field_mapping(tmp_path: Path) -> None:
    import pandas as pd

    f = tmp_path / "mine.parquet"
    # Parquet needs one type per column: answers as text, as a careful user would store them.
    pd.DataFrame([{**r, "Answer": str(r["Answer"])} for r in MAPPED_ROWS]).to_parquet(f, index=False)
    problems = load_problems(local(f, tmp_path, fields=MAPPING, ids=["p3", "p1"]))
    assert [(p.id, p.answer) for p in problems] == [("p1", "25"), ("p3", "0.5")]


def test_local_json_array_and_explicit_format(tmp_path: Path) -> None:
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(MAPPED_ROWS, indent=2))
    _check_mapped(load_problems(local(f, tmp_path, fields=MAPPING)), f)
    g = tmp_path / "mine.txt"
    g.write_text("Problem,Answer\nWhat is 2+2?,4\n")
    problems = load_problems(
        local(g, tmp_path, format="csv", fields={"problem": "Problem", "answer": "Answer"})
    )
    assert [(p.id, p.answer) for p in problems] == [("0", "4")]


def test_ids_default_to_row_index(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "noid.jsonl", [{"problem": f"{i}+1?", "answer": i + 1} for i in range(3)])
    assert [p.id for p in load_problems(local(f, tmp_path))] == ["0", "1", "2"]


def test_mixed_answer_types_in_jsonl(tmp_path: Path) -> None:
    rows = [
        {"problem": "a?", "answer": 25},
        {"problem": "b?", "answer": "\\frac{1}{2}"},
        {"problem": "c?", "answer": 7.0},
    ]
    f = write_jsonl(tmp_path / "mixed.jsonl", rows)
    assert [p.answer for p in load_problems(local(f, tmp_path))] == ["25", "\\frac{1}{2}", "7"]


def test_mapped_difficulty_column(tmp_path: Path) -> None:
    rows = [{"problem": "a?", "answer": 1, "d": 0.3}, {"problem": "b?", "answer": 2, "d": 1.5}]
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    fields = {"problem": "problem", "answer": "answer", "difficulty": "d"}
    ok = write_jsonl(tmp_path / "ok.jsonl", rows[:1])
    assert load_problems(local(ok, tmp_path, fields=fields))[0].difficulty == pytest.approx(0.3)
    # the whole file is validated, whatever the selection
    with pytest.raises(
        DataError, match=r"d\.jsonl, line 2: difficulty \(column 'd'\) must be a number in \[0, 1\]"
    ):
        load_problems(local(f, tmp_path, fields=fields, limit=1))


def test_csv_empty_difficulty_and_source_column(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("problem,answer,hardness,source\na?,1,0.5,my notes\nb?,2,,\n")
    fields = {"problem": "problem", "answer": "answer", "difficulty": "hardness"}
    a, b = load_problems(local(f, tmp_path, fields=fields))
    assert (a.difficulty, b.difficulty) == (0.5, None)  # an empty cell is no hint, not an error
    assert (a.source, b.source) == ("my notes", str(f))
    g = write_jsonl(tmp_path / "s.jsonl", [{"problem": "a?", "answer": 1, "source": {"site": "x"}}])
    p = load_problems(local(g, tmp_path))[0]
    assert p.source == str(g) and p.meta == {"source": {"site": "x"}}  # non-text `source` is just data


def test_saved_directory_loads(tmp_path: Path) -> None:
    import datasets

    d = tmp_path / "saved"
    datasets.Dataset.from_list([{"problem": "1+1?", "answer": "2", "id": "x"}]).save_to_disk(str(d))
    assert [p.id for p in load_problems(local(d, tmp_path))] == ["x"]


# --- hub -----------------------------------------------------------------------------------------


def test_hub_code_path_with_a_local_dataset_dir(tmp_path: Path, offline: None) -> None:
    repo = tmp_path / "fake-hub-repo"
    repo.mkdir()
    write_jsonl(
        repo / "test.jsonl", [{"unique_id": f"u{i}", "problem": f"{i}*2?", "answer": 2 * i} for i in range(4)]
    )
    cfg = DatasetConfig(
        name="hf",
        hf_id=str(repo),
        split="test",
        fields={"id": "unique_id", "problem": "problem", "answer": "answer"},
        limit=3,
        cache_dir=str(tmp_path / "hf-cache"),
    )
    problems = load_problems(cfg)
    assert [(p.id, p.answer) for p in problems] == [("u0", "0"), ("u1", "2"), ("u2", "4")]
    assert problems[0].source == f"{repo}@unpinned"


def test_hub_failure_is_a_clear_data_error(tmp_path: Path, offline: None) -> None:
    cfg = DatasetConfig(name="hf", hf_id="pdr-tests/no-such-dataset", cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError) as info:
        load_problems(cfg)
    msg = str(info.value)
    assert "could not load dataset 'pdr-tests/no-such-dataset'" in msg and "Hugging Face Hub" in msg
    assert "dataset.path=" in msg
    assert "ConnectionError" in msg or "Offline" in msg  # the underlying reason


# --- malformed data ------------------------------------------------------------------------------


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.jsonl"
    f.write_text(
        '{"problem": "a?", "answer": "1"}\n{"problem": "b?", "answer": "2"}\n{"problem": "c?", answer: 3}\n'
    )
    with pytest.raises(DataError, match=r"broken\.jsonl, line 3: invalid JSON"):
        load_problems(local(f, tmp_path))


def test_malformed_bundled_file_names_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bundled"
    fake.mkdir()
    (fake / "aime2024.jsonl").write_text(
        '{"id": "2024-I-1", "problem": "a?", "answer": "1"}\n\n{"id": oops}\n'
    )
    monkeypatch.setattr(loaders, "BUNDLED_DIR", fake)
    with pytest.raises(DataError, match=r"aime2024\.jsonl, line 3: invalid JSON"):
        load_problems(DatasetConfig(name="aime2024"))
    (fake / "aime2024.jsonl").write_text(
        '{"id": "2024-I-1", "problem": "a?", "answer": "1"}\n{"id": "2024-I-2", "problem": "b?"}\n'
    )
    with pytest.raises(DataError, match=r"aime2024\.jsonl, line 2: no column 'answer' for the answer field"):
        load_problems(DatasetConfig(name="aime2024"))


def test_missing_field_names_field_columns_and_fix(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "cols.jsonl", MAPPED_ROWS)
    with pytest.raises(DataError) as info:
        load_problems(local(f, tmp_path))  # default mapping: no `problem` column
    msg = str(info.value)
    assert "no column 'problem' for the problem field" in msg
    assert "did you mean 'Problem'" in msg
    assert "columns: ID, Problem, Answer, Topic" in msg
    assert "dataset.fields.problem=COLUMN" in msg


def test_explicit_id_mapping_must_exist(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "x.jsonl", [{"problem": "a?", "answer": 1}])
    with pytest.raises(DataError, match="no column 'qid' for the id field"):
        load_problems(local(f, tmp_path, fields={"id": "qid", "problem": "problem", "answer": "answer"}))


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        (
            [{"id": "a", "problem": "x?", "answer": 1}, {"id": "b", "problem": "  ", "answer": 2}],
            r"line 2: the problem text .* is empty",
        ),
        (
            [{"id": "a", "problem": "x?", "answer": 1}, {"id": "b", "problem": "y?", "answer": None}],
            r"line 2: the answer .* is empty",
        ),
        (
            [
                {"id": "a", "problem": "x?", "answer": 1},
                {"id": "b", "problem": "y?", "answer": 2},
                {"id": "a", "problem": "z?", "answer": 3},
            ],
            r"line 3: duplicate id 'a' \(first on line 1\)",
        ),
    ],
    ids=["empty-problem", "null-answer", "duplicate-id"],
)
def test_bad_rows(tmp_path: Path, rows: list[dict], error: str) -> None:
    f = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(DataError, match=r"rows\.jsonl, " + error):
        load_problems(local(f, tmp_path))


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=r"dataset\.path=.*nope\.jsonl.*no such file"):
        load_problems(local(missing, tmp_path))
    with pytest.raises(DataError, match=r"nope\.jsonl"):
        dataset_fingerprint(local(missing, tmp_path))
    odd = tmp_path / "data.xyz"
    odd.write_text("x")
    with pytest.raises(DataError, match=r"dataset\.format=json\|csv\|parquet"):
        load_problems(local(odd, tmp_path))


def test_unknown_split_of_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "splits"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"problem": "a?", "answer": 1}])
    with pytest.raises(DataError, match=r"Unknown split.*dataset\.split"):
        load_problems(local(d, tmp_path))
    assert len(load_problems(local(d, tmp_path, split="train"))) == 1


# --- DatasetConfig validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (
            {"name": "aime205"},
            r"dataset\.name='aime205': not a bundled set \(did you mean 'aime2025'\?\)\. Bundled sets: aime2024, aime2025",
        ),
        ({"name": "tiny", "limit": 0}, r"^dataset\.limit=0: must be >= 1 \(or null for all problems\)$"),
        ({"name": "x", "path": "a.jsonl", "hf_id": "o/d"}, r"set only one source"),
        ({"name": "tiny", "revision": "abc"}, r"dataset\.revision='abc': only used with dataset\.hf_id"),
        ({"name": "tiny", "format": "csv"}, r"dataset\.format='csv': only used with dataset\.path"),
        (
            {"name": "x", "path": "a.dat", "format": "jsn"},
            r"dataset\.format='jsn': unknown \(did you mean 'json'\?\)",
        ),
        (
            {"name": "tiny", "fields": {"problm": "q", "problem": "p", "answer": "a"}},
            r"dataset\.fields\.problm='q': unknown field \(did you mean 'problem'\?\)",
        ),
        ({"name": "tiny", "fields": {"problem": "q"}}, r"has no 'answer' entry"),
        ({"name": "tiny", "ids": []}, r"dataset\.ids=\[\]: list at least one"),
        ({"name": "tiny", "ids": ["tiny-1", "tiny-1"]}, r"listed twice"),
        ({"name": "local"}, r"dataset\.path is required with dataset=local"),
        ({"name": "hf"}, r"dataset\.hf_id is required with dataset=hf"),
        ({"name": "x", "path": ""}, r"dataset\.path=''"),
    ],
)
def test_config_validation(kwargs: dict, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        DatasetConfig(**kwargs)


def test_label_need_not_be_bundled_with_a_source() -> None:
    assert DatasetConfig(name="my_problems", path="x.jsonl").source_kind == "local"
    assert DatasetConfig(name="hf", hf_id="o/d").source_kind == "hub"
    assert DatasetConfig().source_kind == "bundled"


@pytest.mark.parametrize(
    "yaml_file", sorted((REPO / "conf" / "dataset").glob("*.yaml")), ids=lambda p: p.stem
)
def test_dataset_yaml_options_fit_the_schema(yaml_file: Path) -> None:
    lines = yaml_file.read_text().splitlines()
    assert lines[0].startswith("# python -m pdr.run ") and f"dataset={yaml_file.stem}" in lines[0]
    values = OmegaConf.load(yaml_file)
    assert list(values.pop("defaults")) == ["dataset_schema", "_self_"]
    merged = OmegaConf.merge(OmegaConf.structured(DatasetConfig), values)
    if yaml_file.stem == "local":
        with pytest.raises(ConfigError, match="dataset.path is required with dataset=local"):
            OmegaConf.to_object(merged)
        merged.path = "problems.jsonl"
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, DatasetConfig) and cfg.name == yaml_file.stem
    if yaml_file.stem in COUNTS:
        assert cfg.source_kind == "bundled"


def test_overrides_merge_into_the_schema() -> None:
    base = OmegaConf.structured(DatasetConfig)
    merged = OmegaConf.merge(
        base, OmegaConf.from_dotlist(["name=aime2025", "limit=2", "fields.problem=Q", "ids=[1,2]"])
    )
    cfg = OmegaConf.to_object(merged)
    assert cfg.fields == {"id": "id", "problem": "Q", "answer": "answer"}
    assert cfg.ids == ["1", "2"] and cfg.limit == 2


# --- misc ----------------------------------------------------------------------------------------


def test_problem_is_frozen_and_hashable() -> None:
    p = load_problems(DatasetConfig(name="math500", limit=1))[0]
    assert hash(p) == hash(Problem(p.id, p.problem, p.answer, p.source, p.difficulty, meta={"other": 1}))
    with pytest.raises(AttributeError):
        p.answer = "0"  # type: ignore[misc]


def test_import_pdr_data_does_not_import_datasets() -> None:
    code = (
        "import pdr.data, sys; assert 'datasets' not in sys.modules, 'datasets imported'; "
        "assert 'pandas' not in sys.modules, 'pandas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
