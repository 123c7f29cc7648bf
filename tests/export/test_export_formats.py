"""The files load the way the trainers load them: verl's RLHFDataset (`datasets.load_dataset("parquet")`,
then `extra_info.index`), verl's multi-turn SFT dataset (`pd.read_parquet(dtype_backend="pyarrow")`,
`messages`), TRL (`load_from_disk` / `load_dataset`, conversational prompt-completion columns plus
`solution`). verl and TRL themselves need torch/transformers, which are not installed here: their
loading steps are reproduced from their source (verl 0.9.1, TRL 1.16.0), as docs/rl.md states."""

from __future__ import annotations

import json

import pytest

from pdr.export import Selection, export_episodes
from pdr.export.formats import schema


@pytest.fixture(scope="module")
def pdr_run(store):
    return store[2]["pdr"]


def _export(run_dir, fmt, out, **kw):
    return export_episodes([run_dir], fmt, out, Selection(calls="all"), allow_simulated=True, mlflow=False, **kw)


def _jsonl(run_dir, out):
    _export(run_dir, "jsonl", out)
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


def test_verl_parquet_loads_as_rlhf_dataset_reads_it(pdr_run, tmp_path):
    import datasets

    m = _export(pdr_run.run_dir, "verl", tmp_path / "verl")
    recs = _jsonl(pdr_run.run_dir, tmp_path / "j")
    path = str(tmp_path / "verl" / "train.parquet")
    ds = datasets.load_dataset("parquet", data_files=path)["train"]  # verl/utils/dataset/rl_dataset.py
    assert len(ds) == len(recs) == m["counts"]["records"]
    assert {"data_source", "prompt", "ability", "reward_model", "extra_info"} <= set(ds.column_names)
    for i, (row, rec) in enumerate(zip(ds, recs, strict=True)):
        assert row["prompt"] == rec["messages"]  # a list of {role, content}, as apply_chat_template takes
        assert all(set(msg) == {"role", "content"} for msg in row["prompt"])
        assert row["ability"] == "math" and row["data_source"] == "pdr/tiny"
        assert row["reward_model"] == {"style": "rule", "ground_truth": rec["gold"]}
        # RLHFDataset.__getitem__: row_dict.get("extra_info", {}).get("index", 0)
        assert row["extra_info"]["index"] == i and row["extra_info"]["split"] == "train"
        assert row["extra_info"]["reward"] == rec["reward"] and row["extra_info"]["is_final"] == rec["is_final"]
        assert row["extra_info"]["completion"] == rec["completion"]
    assert ds.features["extra_info"]["rendered_prompt"].dtype == "string"  # typed even when all null
    # Two exports concatenate (verl concatenates its data files): one schema whatever the run.
    # --data-source names verl's reward function (its default_compute_score dispatches on it).
    _export(pdr_run.run_dir, "verl", tmp_path / "verl2", data_source="lighteval/MATH")
    ds2 = datasets.load_dataset("parquet", data_files=str(tmp_path / "verl2" / "train.parquet"))["train"]
    assert set(ds2["data_source"]) == {"lighteval/MATH"}
    assert len(datasets.concatenate_datasets([ds, ds2])) == 2 * len(ds)


def test_verl_sft_parquet_has_messages_ending_with_the_completion(pdr_run, tmp_path):
    import pandas as pd

    _export(pdr_run.run_dir, "verl-sft", tmp_path / "sft")
    recs = _jsonl(pdr_run.run_dir, tmp_path / "j")
    df = pd.read_parquet(tmp_path / "sft" / "train.parquet", dtype_backend="pyarrow")  # multiturn_sft_dataset.py
    assert len(df) == len(recs)
    for msgs, rec in zip(df["messages"].tolist(), recs, strict=True):
        msgs = list(msgs)
        assert [dict(m) for m in msgs[:-1]] == rec["messages"]
        assert dict(msgs[-1]) == {"role": "assistant", "content": rec["completion"]}


def test_trl_dataset_is_conversational_with_the_ground_truth_column(pdr_run, tmp_path):
    import datasets

    _export(pdr_run.run_dir, "trl", tmp_path / "trl")
    recs = _jsonl(pdr_run.run_dir, tmp_path / "j")
    disk = datasets.load_from_disk(str(tmp_path / "trl" / "dataset"))
    pq = datasets.load_dataset("parquet", data_files=str(tmp_path / "trl" / "train.parquet"))["train"]
    for ds in (disk, pq):
        assert len(ds) == len(recs)
        assert {"prompt", "completion", "solution"} <= set(ds.column_names)
        assert "answer" not in ds.column_names  # a reward function reading `answer` must not get the draft's
        row = ds[0]
        # trl.data_utils.is_conversational: a list whose first item is a dict with "role"
        assert isinstance(row["prompt"], list) and "role" in row["prompt"][0]
        assert row["completion"] == [{"role": "assistant", "content": recs[0]["completion"]}]
        assert ds["solution"] == [r["gold"] for r in recs]
        assert ds["reward"] == [r["reward"] for r in recs]
        assert ds["extracted_answer"] == [r["answer"] for r in recs]
    assert disk.column_names == schema("trl").names


def test_sglang_native_runs_carry_the_rendered_prompt(pdr_run, tmp_path):
    """A native-API run's prompts are rendered with its chat template (here a sim run relabelled as
    sglang api=native with chatml, which is what the export reads)."""
    from pdr.engines.base import Message
    from pdr.engines.chat_templates import BUILTIN_TEMPLATES
    from pdr.export import ExportError
    from tests.export.runs import copy_run

    run = copy_run(pdr_run.run_dir, tmp_path / "native")
    cfg = json.loads((run / "config.json").read_text())
    cfg["engine"].update(name="sglang", api="native", chat_template=None, tokenizer_path=None, model="Qwen/Qwen3-8B",
                         chat_template_kwargs={"enable_thinking": False})
    (run / "config.json").write_text(json.dumps(cfg))
    summary = json.loads((run / "summary.json").read_text())
    summary.update(simulated=False, engine_info={"engine": "sglang", "chat_template": "qwen3", "model": "Qwen/Qwen3-8B"})
    (run / "summary.json").write_text(json.dumps(summary))
    recs = _jsonl(run, tmp_path / "j")
    for r in recs:
        msgs = [Message(m["role"], m["content"]) for m in r["messages"]]
        assert r["rendered_prompt"] == BUILTIN_TEMPLATES["qwen3"](msgs, {"enable_thinking": False})
        assert r["rendered_prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # A run rendered with a template that no longer resolves the same is refused, not re-rendered differently.
    cfg["engine"]["chat_template"] = "chatml"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExportError, match="rendered prompts with template 'qwen3'"):
        _jsonl(run, tmp_path / "j2")
