"""The one JSONL reader (pdr.jsonl): plain and gzip files, a torn last line skipped, a bad line
elsewhere an error (corruption must not silently drop a problem-sample)."""

from __future__ import annotations

import gzip
import json

import pytest

from pdr.jsonl import read_jsonl

ROWS = [{"problem_id": "a", "sample": 0}, {"problem_id": "b", "sample": 1}]
TEXT = "".join(json.dumps(r) + "\n" for r in ROWS)


def test_plain_and_gzip_files_read_the_same(tmp_path):
    (tmp_path / "t.jsonl").write_text(TEXT + "\n")
    with gzip.open(tmp_path / "t.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(TEXT)
    assert list(read_jsonl(tmp_path / "t.jsonl")) == ROWS
    assert list(read_jsonl(tmp_path / "t.jsonl.gz")) == ROWS
    assert list(read_jsonl(tmp_path / "missing.jsonl")) == []


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog, suffix):
    path = tmp_path / f"t{suffix}"
    text = TEXT + '{"problem_id": "c", "sam'
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    assert list(read_jsonl(path)) == ROWS
    assert "torn last line" in caplog.text


def test_a_bad_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(json.JSONDecodeError):
        list(read_jsonl(path))
