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

# Record fields copied into verl's extra_info / TRL's columns (flat scalars: one Arrow type each).
_FIELDS = ("id", "problem_id", "sample", "step", "round", "kind", "branch", "n", "is_final", "reward", "correct",
           "answer", "finish_reason", "truncated", "prompt_tokens", "completion_tokens", "cached_tokens",
           "drafts_accuracy_in", "drafts_accuracy_out", "sample_status", "sample_correct", "simulated",
           "reasoning", "text", "completion", "rendered_prompt")
_SOURCE_FIELDS = ("run_key", "strategy", "model", "engine", "dataset", "seed", "pdr_version", "run_dir",
                  "mlflow_run_id")


def pdr_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record's fields as flat columns (source identity prefixed `source_`)."""
    out = {k: record[k] for k in _FIELDS}
    src = record["source"]
    out.update({f"source_{k}": src.get(k) for k in _SOURCE_FIELDS})
    out["source_seed"] = None if src.get("seed") is None else int(src["seed"])
    out["source_widths"] = ",".join(str(w) for w in src.get("widths") or [])
    out["source_distill"] = src.get("distill")
    return out


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


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


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
        _write_parquet(verl_rows(records, source_name) if fmt == "verl" else verl_sft_rows(records, source_name), path)
        written.append(path)
    elif fmt == "trl":
        import datasets

        ds = datasets.Dataset.from_list(trl_rows(records))
        ds.save_to_disk(str(out / "dataset"))
        ds.to_parquet(str(out / "train.parquet"))
        written += [out / "dataset", out / "train.parquet"]
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return [{"path": str(p), "rows": len(records), "bytes": _size(p)} for p in written]


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
