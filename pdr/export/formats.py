"""The files an export writes, per `--format` (field by field in docs/rl.md, "Exporting episodes").

- `jsonl`: `episodes.jsonl`, the full records (pdr.export.records), one per line.
- `verl`: `train.parquet` in verl's RL dataset layout (verl 0.9.1, verl/utils/dataset/rl_dataset.py,
  which loads it with `datasets.load_dataset("parquet", ...)`): `data_source`, `prompt` (chat
  messages {role, content}), `ability` ("math"), `reward_model` {style: "rule", ground_truth},
  `extra_info` {split, index, and pdr's fields: the record's identity, completion, reward ...}.
- `verl-sft`: `train.parquet` for verl's multi-turn SFT dataset (verl/utils/dataset/
  multiturn_sft_dataset.py, `messages_key: messages`): `messages` = the prompt plus the assistant's
  completion, with `data_source` and the same `extra_info`.
- `trl`: a Hugging Face `datasets` dataset (`save_to_disk` in `dataset/`, and `train.parquet` for
  `load_dataset("parquet", ...)`) in TRL's conversational prompt-completion layout (TRL 1.16):
  `prompt` (messages), `completion` ([the assistant message]), `solution` (the gold answer, the
  column TRL passes to reward functions as a keyword argument, read by
  pdr.evaluation.reward), and pdr's fields as further columns.

Record fields that would be mistaken for the ground truth by a reward function reading keyword
columns (`answer`) are renamed in the trl layout (`extracted_answer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMATS = ("verl", "verl-sft", "trl", "jsonl")
CHECKED = {"verl": "0.9.1", "trl": "1.16.0"}  # the trainer versions whose loaders and docs the layouts follow
ABILITY = "math"
SPLIT = "train"

# Record fields copied into verl's extra_info / TRL's columns: flat scalars with one fixed Arrow
# type each (S: string, I: int64, F: float64, B: bool), so that exports of different runs have one
# schema and concatenate (a column that is null in every row would otherwise be typed `null`).
_FIELDS = {
    "id": "S", "problem_id": "S", "sample": "I", "step": "I", "round": "I", "kind": "S", "branch": "I", "n": "I",
    "is_final": "B", "reward": "F", "correct": "B", "answer": "S", "finish_reason": "S", "truncated": "B",
    "prompt_tokens": "I", "completion_tokens": "I", "cached_tokens": "I", "drafts_accuracy_in": "F",
    "drafts_accuracy_out": "F", "sample_status": "S", "sample_correct": "B", "simulated": "B", "reasoning": "S",
    "text": "S", "completion": "S", "rendered_prompt": "S",
}  # fmt: skip
_SOURCE_FIELDS = {"run_key": "S", "strategy": "S", "model": "S", "engine": "S", "dataset": "S", "seed": "I",
                  "widths": "S", "distill": "S", "pdr_version": "S", "run_dir": "S", "mlflow_run_id": "S",
                  "oracle": "B"}


def pdr_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record's fields as flat columns (source identity prefixed `source_`)."""
    out = {k: record[k] for k in _FIELDS}
    src = record["source"]
    out.update({f"source_{k}": src.get(k) for k in _SOURCE_FIELDS})
    out["source_seed"] = None if src.get("seed") is None else int(src["seed"])
    out["source_widths"] = ",".join(str(w) for w in src.get("widths") or [])
    return out


def _arrow(code: str) -> Any:
    import pyarrow as pa

    return {"S": pa.string(), "I": pa.int64(), "F": pa.float64(), "B": pa.bool_()}[code]


def _pdr_types() -> dict[str, str]:
    return {**_FIELDS, **{f"source_{k}": v for k, v in _SOURCE_FIELDS.items()}}


def _messages_type() -> Any:
    import pyarrow as pa

    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def schema(fmt: str) -> Any:
    """The Arrow schema of `fmt`'s rows (verl, verl-sft, trl)."""
    import pyarrow as pa

    extra = pa.struct([("split", pa.string()), ("index", pa.int64())]
                      + [(k, _arrow(v)) for k, v in _pdr_types().items()])
    if fmt == "verl":
        return pa.schema([("data_source", pa.string()), ("prompt", _messages_type()), ("ability", pa.string()),
                          ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
                          ("extra_info", extra)])
    if fmt == "verl-sft":
        return pa.schema([("data_source", pa.string()), ("messages", _messages_type()), ("extra_info", extra)])
    cols = {k: v for k, v in _pdr_types().items() if k not in ("text", "completion", "reasoning")}
    cols["extracted_answer"] = cols.pop("answer")
    cols["record_id"] = cols.pop("id")
    return pa.schema([("prompt", _messages_type()), ("completion", _messages_type()), ("solution", pa.string())]
                     + [(k, _arrow(v)) for k, v in cols.items()])


def data_source(record: dict[str, Any], override: str | None) -> str:
    """verl's `data_source` (it picks the reward function by it): `--data-source`, else `pdr/<dataset>`."""
    return override or f"pdr/{record['source']['dataset']}"


def verl_rows(records: list[dict[str, Any]], source_name: str | None = None) -> list[dict[str, Any]]:
    return [{
        "data_source": data_source(r, source_name),
        "prompt": r["messages"],
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": r["gold"]},
        "extra_info": {"split": SPLIT, "index": i, **pdr_fields(r)},
    } for i, r in enumerate(records)]  # fmt: skip


def verl_sft_rows(records: list[dict[str, Any]], source_name: str | None = None) -> list[dict[str, Any]]:
    return [{
        "data_source": data_source(r, source_name),
        "messages": [*r["messages"], {"role": "assistant", "content": r["completion"]}],
        "extra_info": {"split": SPLIT, "index": i, **pdr_fields(r)},
    } for i, r in enumerate(records)]  # fmt: skip


def trl_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        fields = pdr_fields(r)
        fields["extracted_answer"] = fields.pop("answer")
        fields["record_id"] = fields.pop("id")
        for k in ("text", "completion", "reasoning"):
            fields.pop(k)  # the completion column has them
        rows.append({"prompt": r["messages"], "completion": [{"role": "assistant", "content": r["completion"]}],
                     "solution": r["gold"], **fields})
    return rows


def _write_parquet(rows: list[dict[str, Any]], path: Path, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows, schema=schema(fmt)), path)


def write(records: list[dict[str, Any]], fmt: str, out: Path, source_name: str | None = None) -> list[dict[str, Any]]:
    """Write `records` in `fmt` under `out` (created); returns the files written, each
    {path, rows, bytes} (a saved dataset directory counts as one entry)."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if fmt == "jsonl":
        path = out / "episodes.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        written.append(path)
    elif fmt in ("verl", "verl-sft"):
        path = out / "train.parquet"
        rows = verl_rows(records, source_name) if fmt == "verl" else verl_sft_rows(records, source_name)
        _write_parquet(rows, path, fmt)
        written.append(path)
    elif fmt == "trl":
        import datasets

        ds = datasets.Dataset.from_list(trl_rows(records), features=datasets.Features.from_arrow_schema(schema("trl")))
        ds.save_to_disk(str(out / "dataset"))
        ds.to_parquet(str(out / "train.parquet"))
        written += [out / "dataset", out / "train.parquet"]
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return [{"path": str(p), "rows": len(records), "bytes": _size(p)} for p in written]


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
