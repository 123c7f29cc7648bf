"""The exports read by the trainers' own code, where it imports without torch (skipped when the
library is not installed; here it was run with `pip install --target DIR --no-deps trl==1.16.0
transformers tokenizers safetensors verl==0.9.1` and PYTHONPATH=DIR, see docs/rl.md):

- TRL 1.16: `trl.data_utils.is_conversational` and `maybe_apply_chat_template` (what SFTTrainer and
  GRPOTrainer run on each row) on the saved dataset, with a chat template on a tokenizer built here;
- verl 0.9.1: `verl.utils.reward_score.math_reward.compute_score` (its scorer for
  data_source=lighteval/MATH), loaded from its file (importing `verl` needs ray and torch), on the
  final records' completions and ground truths: it agrees with the exported rewards.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from pdr.export import Selection, export_episodes

# CI installs the libraries (tests/export/setup_trainer_libs.sh) and sets this: a check that skips
# there checks nothing, so a missing library is a failure.
REQUIRE = os.environ.get("PDR_REQUIRE_TRAINER_LIBS") == "1"


def _missing(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"{what} is not importable; run: PYTHONPATH=$(bash tests/export/setup_trainer_libs.sh)")
    pytest.skip(f"{what} is not installed (tests/export/setup_trainer_libs.sh installs it)")


@pytest.fixture(scope="module")
def trl_export(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("trl") / "x"
    export_episodes([store[0] / "runs" / "pdr"], "trl", out, Selection(calls="all"), allow_simulated=True,
                    mlflow=False)
    return out


def test_trl_reads_the_dataset_with_its_own_helpers(trl_export):
    try:
        from trl import data_utils
    except ImportError:
        _missing("trl.data_utils (TRL 1.16)")
    import datasets
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    ds = datasets.load_from_disk(str(trl_export / "dataset"))
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                  unk_token="[UNK]")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    for row in ds.select(range(5)):
        assert data_utils.is_conversational(row)
        out = data_utils.maybe_apply_chat_template({"prompt": row["prompt"], "completion": row["completion"]}, tok)
        assert out["prompt"].endswith("<|im_start|>assistant\n")
        assert out["completion"].startswith(row["completion"][0]["content"])


def _verl_file(rel: str) -> Path | None:
    spec = importlib.util.find_spec("verl")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    return path if path.exists() else None


def test_verls_math_scorer_agrees_with_the_exported_final_rewards(store, tmp_path):
    path = _verl_file("utils/reward_score/math_reward.py")
    if path is None:
        _missing("verl 0.9.1's utils/reward_score/math_reward.py")
    spec = importlib.util.spec_from_file_location("verl_math_reward", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import datasets

    export_episodes([store[0] / "runs" / "pdr"], "verl", tmp_path / "v", Selection(calls="final"),
                    allow_simulated=True, mlflow=False, data_source="lighteval/MATH")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "v" / "train.parquet"))["train"]
    rewards = [mod.compute_score(r["extra_info"]["text"], r["reward_model"]["ground_truth"]) for r in ds]
    assert rewards == [r["extra_info"]["reward"] for r in ds]
