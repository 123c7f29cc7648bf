"""Training data from finished pdr runs: `python -m pdr.export episodes RUN_OR_SWEEP --format verl|verl-sft|trl|jsonl`.

One record per output of a model call a trainer can learn from (drafts, refines, summaries,
critiques, the final answer), with the prompt exactly as the model saw it, the completion, the
operator step and round, the verifiable reward from the run's grades, token counts and the run's
identity; written in verl's or TRL's dataset layout, with a manifest and an MLflow run recording
the lineage. Fields, flags and the trainer configs that read the files: docs/rl.md.

Modules: sources (find and check runs), records (calls -> records, rewards), select (flags),
formats (files), lineage (MLflow), episodes (`export_episodes`, the whole export).
"""

from pdr.export.episodes import export_episodes
from pdr.export.select import Selection
from pdr.export.sources import ExportError

__all__ = ["ExportError", "Selection", "export_episodes"]
