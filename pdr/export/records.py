"""Training records from a run's traces: one per output of a model call (a fork of n is n records).

How a call maps to its grade (`results.jsonl` keeps the grades, `traces.jsonl` the calls):

- The steps whose calls are `draft` or `refine` are the generate steps, in step order; the r-th of
  them is round r+1 of the row's `rounds` (the strategy appends one round per generate step).
  Within a step the outputs, ordered by (branch, position in the call's outputs), are the round's
  drafts in order: a fork of n is one call (branch 0) with n outputs, per-branch prompts are n
  calls (branches 0..n-1) with one output each. A draft's reward is its round's `correct[i]`: its
  own extracted answer graded by pdr's grader during the run. The export checks the mapping on
  every problem-sample (the number of generate steps and of drafts per round must match the row;
  the answer pdr's extractor takes from the output text must be the one recorded) and counts any
  disagreement (`answer_mismatches` in the manifest).
- The final call is the output that became the problem-sample's answer: the last draft of the
  last generate step, or, when the graph ends with `vote`, the vote's winner (the first draft of
  the largest group of equal normalized answers, the first such group on a tie; as pdr.strategies.vote).
  Its reward is the row's grade (`correct`); its answer must equal the row's `answer` (checked).
- summary / select / critique calls have no verifiable reward of their own (reward null). Their
  records carry the workspace-level context instead: `drafts_accuracy_in` (the accuracy of the
  round they read) and `drafts_accuracy_out` (of the round that read their output).

Problem-samples whose row is an error (or that have no row) are skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pdr.evaluation import extract_answer
from pdr.executor import short_answer
from pdr.export.sources import ExportError, Run
from pdr.strategies.vote import majority_index

log = logging.getLogger(__name__)

GENERATE_KINDS = ("draft", "refine")
RenderFn = Callable[[list[dict[str, str]]], str]


def completion_text(reasoning: str | None, text: str) -> str:
    """The completion as a reasoning model writes it: `<think>\\n{reasoning}\\n</think>\\n\\n{text}`
    (pdr stores the two parts split, with the newlines around the tags stripped), or `text` alone."""
    return f"<think>\n{reasoning}\n</think>\n\n{text}" if reasoning else text


def ends_with_vote(run: Run) -> bool:
    """Whether the run's strategy graph ends with `vote` (summary.json's graph, else the config's steps)."""
    graph = str(run.summary.get("graph") or "")
    if graph:
        return graph.split(" -> ")[-1].strip() == "vote"
    steps = run.config.get("strategy", {}).get("steps") or []
    while steps and isinstance(steps[-1], dict) and steps[-1].get("op") == "repeat":
        steps = steps[-1].get("steps") or []
    return bool(steps) and isinstance(steps[-1], dict) and steps[-1].get("op") == "vote"


def _extract(out: dict[str, Any]) -> str | None:
    """The answer pdr's executor extracts from an output (pdr.strategies.state.OpContext.candidate)."""
    text = out.get("text") or ""
    return None if out.get("finish_reason") == "length" and not text else extract_answer(text)


@dataclass
class Stats:
    """What reading the runs found, skipped or found odd (for the manifest)."""

    problem_samples: int = 0
    skipped_error_samples: int = 0  # the row is an error: no final answer to learn from
    skipped_unfinished_samples: int = 0  # a trace without its row (an interrupted run, --allow-partial)
    answer_mismatches: int = 0  # pdr's extractor now reads another answer than the run recorded


def run_records(run: Run, stats: Stats, render: RenderFn | None = None) -> Iterator[dict[str, Any]]:
    """Every record of `run` (module docstring), in problem-sample order, then step, branch, output.
    `render(messages)` gives the prompt text as the engine rendered it (sglang api=native), or None."""
    source = run.identity()
    vote = ends_with_vote(run)
    for entry in run.entries():
        pid, sample = str(entry["problem_id"]), int(entry["sample"])
        row = run.rows.get((pid, sample))
        if row is None:
            stats.skipped_unfinished_samples += 1
            continue
        if row.get("status") == "error":
            stats.skipped_error_samples += 1
            continue
        stats.problem_samples += 1
        yield from _sample_records(run, entry, row, source, vote, stats, render)


def _sample_records(run: Run, entry: dict[str, Any], row: dict[str, Any], source: dict[str, Any], vote: bool,
                    stats: Stats, render: RenderFn | None) -> Iterator[dict[str, Any]]:
    pid, sample = str(entry["problem_id"]), int(entry["sample"])
    where = f"{run.run_dir}: problem {pid} sample {sample}"
    calls = sorted(entry.get("calls") or [], key=lambda c: (int(c.get("step", 0)), int(c.get("branch", 0))))
    rounds = list(row.get("rounds") or [])
    gen_steps = sorted({int(c["step"]) for c in calls if c.get("kind") in GENERATE_KINDS})
    if len(gen_steps) != len(rounds):
        raise ExportError(f"{where}: {len(gen_steps)} generate steps in traces.jsonl but {len(rounds)} rounds in "
                          "results.jsonl; the two files do not belong together (was one of them replaced?)")
    outputs_by_step: dict[int, list[tuple[dict[str, Any], int, dict[str, Any]]]] = {}
    for c in calls:
        for j, out in enumerate(c.get("outputs") or []):
            outputs_by_step.setdefault(int(c["step"]), []).append((c, j, out))
    for r, step in enumerate(gen_steps):
        width = len(rounds[r].get("answers") or [])
        if len(outputs_by_step[step]) != width:
            raise ExportError(f"{where}: step {step} has {len(outputs_by_step[step])} outputs in traces.jsonl but "
                              f"round {r + 1} has {width} drafts in results.jsonl")
    last = rounds[-1] if rounds else {}
    final_i = len(last.get("answers") or []) - 1  # the last draft (pdr.strategies.state.run_graph) ...
    if vote and rounds:  # ... or the vote's winner
        final_i = majority_index([_extract(o) for _, _, o in outputs_by_step[gen_steps[-1]]])
    if rounds and last["answers"][final_i] != row.get("answer"):
        raise ExportError(f"{where}: the final draft found in the traces (round {len(rounds)}, draft {final_i + 1}) "
                          f"answers {last['answers'][final_i]!r} but results.jsonl's answer is {row.get('answer')!r}")
    accuracy = [rd.get("draft_accuracy") for rd in rounds]
    # Within a step the outputs are in (branch, output) order: the round's drafts in order.
    for step, pos, (c, j, out) in ((s, p, x) for s in sorted(outputs_by_step) for p, x in enumerate(outputs_by_step[s])):
        kind = str(c.get("kind"))
        is_gen = step in gen_steps
        before = sum(1 for s in gen_steps if s < step)  # generate steps before this one
        r = gen_steps.index(step) if is_gen else before - 1
        i = pos
        is_final = is_gen and r == len(rounds) - 1 and i == final_i
        answer = correct = reward = None
        if is_gen:
            answer = rounds[r]["answers"][i]
            correct = bool(row.get("correct")) if is_final else bool(rounds[r]["correct"][i])
            reward = 1.0 if correct else 0.0
            if short_answer(_extract(out)) != answer:
                stats.answer_mismatches += 1
                log.warning("%s: step %d draft %d: pdr's extractor now gives %r, the run recorded %r", where, step,
                            i + 1, _extract(out), answer)
        messages = [{"role": str(m[0]), "content": str(m[1])} for m in c.get("messages") or []]
        reasoning, text = out.get("reasoning"), str(out.get("text") or "")
        yield {
            "id": f"{source['run_key']}:{pid}:{sample}:{step}:{int(c.get('branch', 0)) + j}",
            "problem_id": pid,
            "sample": sample,
            "problem": entry.get("problem"),
            "gold": str(entry.get("gold") if entry.get("gold") is not None else row.get("gold")),
            "step": step,
            "round": r + 1 if is_gen else before,
            "kind": kind,
            "branch": int(c.get("branch", 0)) + j,
            "n": int(c.get("n", 1)),
            "is_final": bool(is_final),
            "messages": messages,
            "rendered_prompt": render(messages) if render is not None else None,
            "reasoning": reasoning,
            "text": text,
            "completion": completion_text(reasoning, text),
            "answer": answer,
            "correct": correct,
            "reward": reward,
            "finish_reason": out.get("finish_reason"),
            "truncated": out.get("finish_reason") == "length",
            "prompt_tokens": int(out.get("prompt_tokens") or 0),
            "completion_tokens": int(out.get("completion_tokens") or 0),
            "cached_tokens": int(out.get("cached_tokens") or 0),
            "drafts_accuracy_in": None if is_gen or before < 1 else accuracy[before - 1],
            "drafts_accuracy_out": None if is_gen or before >= len(accuracy) else accuracy[before],
            "sample_status": row.get("status"),
            "sample_correct": bool(row.get("correct")),
            "simulated": bool(source["simulated"]),
            "source": source,
        }
