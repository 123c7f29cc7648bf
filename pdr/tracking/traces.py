"""Problem-samples as MLflow traces: the strategy graph's execution, viewable in MLflow's Traces tab.

Built after the run from the run directory's files (traces.jsonl + results.jsonl), never on the
hot path: no decorator or span is opened while the engine works, so a benchmark's wall time is
unchanged. Each selected problem-sample becomes one trace, linked to the job's MLflow run
(`mlflow.sourceRun`, so `mlflow.search_traces(run_id=...)` finds them), tagged `problem_id`,
`sample`, `status`, with spans:

    problem P · sample S           CHAIN   inputs: problem, gold · outputs: answer, status, correct
      step 0 · generate (n=4)      CHAIN   draft accuracy, truncated drafts
        draft 1 .. 4               LLM     tokens in/out/cached, finish reason, answer, correct
      step 1 · distill             CHAIN   workspace type and size (characters, tokens)
        summary / select call      LLM
      ...
      final                        CHAIN   final answer and its grade

so the trace view shows how a wrong draft was corrected, or how a correct one was lost in distillation.

Times are the recorded ones (attribute `pdr.timing = recorded`): the root span runs from the
problem-sample's start to its end (`started`/`ended` in traces.jsonl, wall-clock seconds), each step
span from its op's start to its end (`steps[i].started/ended`), each LLM span from its call's start
for its latency as pdr saw it (`calls[i].started`, `latency_s`: limiter queueing included; the
request's n completions share one span time; `from_cache` says the call was served by the journal or
cache). traces.jsonl written before these fields existed still load: their steps get a share of the
root's time proportional to their critical-path tokens and their calls the time of their step
(`pdr.timing = estimated`). Texts are cut to `TEXT_CHARS` characters (the full ones are in traces.jsonl).

Which problem-samples (`tracking.traces`): `off`; `all`; `failures` (every error, truncated, no
answer, wrong one); `sample:N` (N problem-samples, failures first: the default `sample:8` keeps a
paper-scale run's traces to a few MB).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pdr.jsonl import read_jsonl

log = logging.getLogger(__name__)

TEXT_CHARS = 1500
_FAILURES = ("error", "truncated", "no_answer", "wrong")
_MODE = re.compile(r"^(off|all|failures|sample:(\d+))$")


def check_mode(mode: str) -> str | None:
    """The error message for a bad `tracking.traces` value, or None."""
    m = _MODE.match(str(mode))
    if m is None or (m.group(2) is not None and int(m.group(2)) < 1):
        return (f"tracking.traces={mode}: choose off, all, failures or sample:N (N >= 1: N problem-samples, "
                "failures first)")
    return None


def _natural(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def select(entries: Sequence[Mapping[str, Any]], mode: str) -> list[Mapping[str, Any]]:
    """The entries (traces.jsonl rows, with `status`) `mode` keeps, failures first, then in
    natural problem order and sample order."""
    if mode == "off":
        return []
    def order(t: Mapping[str, Any]) -> tuple[Any, ...]:
        st = t.get("status")
        return (_FAILURES.index(st) if st in _FAILURES else len(_FAILURES), _natural(str(t.get("problem_id"))),
                int(t.get("sample", 0)))

    ranked = sorted(entries, key=order)
    if mode == "all":
        return ranked
    if mode == "failures":
        return [t for t in ranked if t.get("status") in _FAILURES]
    return ranked[: int(mode.split(":", 1)[1])]


def _clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 40] + f" ...[{len(text) - TEXT_CHARS + 40} chars cut]"


def _prompt(call: Mapping[str, Any]) -> str:
    return _clip("\n\n".join(f"[{role}] {content}" for role, content in call.get("messages") or []))


def _step_tokens(calls: Sequence[Mapping[str, Any]]) -> int:
    outs = [o for c in calls for o in c.get("outputs") or []]
    return max((int(o.get("prompt_tokens") or 0) + int(o.get("completion_tokens") or 0) for o in outs), default=1)


def _ns(t: float) -> int:
    return int(round(t * 1e9))


def _step_windows(entry: Mapping[str, Any], steps: Sequence[int], calls: Sequence[Mapping[str, Any]],
                  t0: int, t_end: int) -> tuple[dict[int, tuple[int, int]], bool]:
    """Each step's (start, end) in ns and whether they are the recorded ones: `steps` of traces.jsonl
    when every step has them, else shares of the root's time by critical-path tokens (older files)."""
    recorded = {int(s["step"]): (_ns(float(s["started"])), _ns(float(s["ended"])))
                for s in entry.get("steps") or [] if "step" in s and "started" in s and "ended" in s}
    if steps and all(s in recorded for s in steps):
        return {s: (a, max(b, a + 1)) for s, (a, b) in recorded.items()}, True
    weights = {s: _step_tokens([c for c in calls if int(c.get("step", 0)) == s]) for s in steps}
    total_w = sum(weights.values()) or 1
    out, cursor = {}, t0
    for s in steps:
        dur = max(int((t_end - t0) * weights[s] / total_w), 1)
        out[s] = (cursor, cursor + dur)
        cursor += dur
    return out, False


def _call_window(call: Mapping[str, Any], step_window: tuple[int, int]) -> tuple[int, int]:
    """A call's recorded (start, end) in ns (`started` + `latency_s`), else its step's window."""
    if call.get("started") is None or call.get("latency_s") is None:
        return step_window
    a = _ns(float(call["started"]))
    return a, max(a + _ns(float(call["latency_s"])), a + 1)


def log_trace(entry: Mapping[str, Any], row: Mapping[str, Any] | None, run_id: str, experiment_id: str,
              fallback_start: float) -> str:
    """Log one problem-sample as an MLflow trace (module docstring); returns its trace id.
    The tracking URI is the process's (`mlflow.set_tracking_uri`, set by `MlflowRun`)."""
    import mlflow

    row = row or {}
    pid, sample, status = str(entry.get("problem_id")), int(entry.get("sample", 0)), str(entry.get("status"))
    start = float(entry.get("started") or fallback_start)
    wall = float(entry.get("ended") or 0) - start if entry.get("ended") else float(row.get("wall_s") or 0.001)
    t0, t_end = _ns(start), _ns(start + max(wall, 1e-3))
    calls = sorted(entry.get("calls") or [], key=lambda c: (int(c.get("step", 0)), int(c.get("branch", 0))))
    ws_by_step = {int(w["step"]): w for w in entry.get("workspaces") or [] if "step" in w}
    op_by_step = {int(s["step"]): str(s.get("op") or "") for s in entry.get("steps") or [] if "step" in s}
    steps = sorted({int(c.get("step", 0)) for c in calls} | set(ws_by_step) | set(op_by_step))
    rounds = list(row.get("rounds") or [])
    draft_steps = sorted({int(c["step"]) for c in calls if c.get("kind") in ("draft", "refine")})
    windows, recorded = _step_windows(entry, steps, calls, t0, t_end)
    recorded = recorded and all(c.get("started") is not None and c.get("latency_s") is not None for c in calls)
    root = mlflow.start_span_no_context(
        f"{pid} · sample {sample}", span_type="CHAIN",
        inputs={"problem": _clip(entry.get("problem")), "gold": entry.get("gold")},
        attributes={"problem_id": pid, "sample": sample, "pdr.timing": "recorded" if recorded else "estimated",
                    **{k: row[k] for k in ("seq_tokens", "total_tokens", "cached_tokens", "wall_s") if k in row}},
        tags={"problem_id": pid, "sample": str(sample), "status": status},
        metadata={"mlflow.sourceRun": run_id}, experiment_id=experiment_id, start_time_ns=t0,
    )  # fmt: skip
    for step in steps:
        step_calls = [c for c in calls if int(c.get("step", 0)) == step]
        s0, s1 = windows[step]
        kinds = sorted({str(c.get("kind")) for c in step_calls})
        attrs: dict[str, Any] = {"step": step, "latency_s": round((s1 - s0) / 1e9, 4)}
        rd: Mapping[str, Any] = {}
        if step in draft_steps:
            r_idx = draft_steps.index(step)
            rd = rounds[r_idx] if r_idx < len(rounds) else {}
            name = f"step {step} · round {r_idx + 1}: {kinds[0] if kinds else 'generate'} ×{sum(len(c.get('outputs') or []) for c in step_calls)}"
            attrs.update(round=r_idx + 1, draft_accuracy=rd.get("draft_accuracy"), truncated=rd.get("truncated"))
        else:
            name = f"step {step} · {'/'.join(kinds) if kinds else op_by_step.get(step) or 'distill'}"
        ws = ws_by_step.get(step)
        ws_out: dict[str, Any] = {}
        if ws is not None:
            texts = [ws["workspace"]] if ws.get("workspace") is not None else list(ws.get("workspaces") or [])
            attrs.update(workspace_type=ws.get("type"), workspace_chars=[len(t or "") for t in texts])
            ws_out = {"workspace": [_clip(t) for t in texts]}
            if not kinds:
                name = f"step {step} · distill ({ws.get('type')})"
        span = mlflow.start_span_no_context(name, span_type="CHAIN", parent_span=root, start_time_ns=s0,
                                            attributes={k: v for k, v in attrs.items() if v is not None})
        answers, correct = list(rd.get("answers") or []), list(rd.get("correct") or [])
        i = 0
        for c in step_calls:
            c0, c1 = _call_window(c, (s0, s1))
            for j, out in enumerate(c.get("outputs") or []):
                a = {"kind": c.get("kind"), "branch": int(c.get("branch", 0)) + j, "n": c.get("n"),
                     "prompt_tokens": out.get("prompt_tokens"), "completion_tokens": out.get("completion_tokens"),
                     "cached_tokens": out.get("cached_tokens"), "finish_reason": out.get("finish_reason"),
                     "latency_s": c.get("latency_s"), "from_cache": c.get("from_cache")}
                if step in draft_steps and i < len(answers):
                    a.update(answer=answers[i], correct=correct[i] if i < len(correct) else None)
                llm = mlflow.start_span_no_context(
                    f"{c.get('kind')} {i + 1}", span_type="LLM", parent_span=span, start_time_ns=c0,
                    inputs={"prompt": _prompt(c)} if j == 0 else {"prompt": "(same as branch 1 of this request)"},
                    attributes={k: v for k, v in a.items() if v is not None},
                )  # fmt: skip
                llm.end(outputs={"text": _clip(out.get("text")), "answer": a.get("answer")}, end_time_ns=c1)
                i += 1
        span.end(outputs={"answers": answers, "correct": correct, **ws_out} if (answers or ws_out) else None,
                 end_time_ns=s1)
    final = mlflow.start_span_no_context("final", span_type="CHAIN", parent_span=root, start_time_ns=t_end - 1,
                                         attributes={"status": status, "correct": bool(row.get("correct"))})
    final.end(outputs={"answer": entry.get("answer"), "gold": entry.get("gold"), "status": status}, end_time_ns=t_end)
    root.end(outputs={"answer": entry.get("answer"), "status": status, "correct": bool(row.get("correct")),
                      **({"error": row.get("error")} if row.get("error") else {})},
             end_time_ns=t_end)  # fmt: skip
    return str(root.trace_id)


def log_run_traces(run_dir: Path, run_id: str, experiment_id: str, mode: str,
                   traces_file: Path | None = None) -> int:
    """Log the `mode` selection of the run's problem-samples as MLflow traces (module docstring);
    returns how many. Reads `traces_file` (default: the run's traces.jsonl or traces.jsonl.gz) and
    results.jsonl; waits until the traces are written to the store."""
    if mode == "off":
        return 0
    # Written synchronously: the traces are logged after the run and flushed below anyway, so MLflow's
    # async export queue only added its hand-over (~0.5 s for the quickstart's 8) and a ~1 s wait at
    # interpreter exit. Read when MLflow's exporter is created (the process's first trace); a user's
    # own MLFLOW_ENABLE_ASYNC_TRACE_LOGGING is left as set.
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    import mlflow

    path = traces_file or next((p for p in (run_dir / "traces.jsonl.gz", run_dir / "traces.jsonl") if p.exists()),
                               run_dir / "traces.jsonl")
    # The last row of each problem-sample wins (as in the traces), should a resume have left two.
    rows = {(str(r["problem_id"]), int(r["sample"])): r for r in read_jsonl(run_dir / "results.jsonl")}
    # Which problem-samples to log is decided on the rows (small; a row's status is its trace's), so
    # that of a multi-GB traces.jsonl only the selected entries are held, not the whole file.
    wanted = [(str(r["problem_id"]), int(r["sample"])) for r in select(list(rows.values()), mode)]
    keep = set(wanted)
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for t in read_jsonl(path):
        if "problem_id" in t and "sample" in t and (key := (str(t["problem_id"]), int(t["sample"]))) in keep:
            latest[key] = t
    fallback = time.time()
    n = 0
    for key in wanted:
        if key in latest:
            log_trace(latest[key], rows[key], run_id, experiment_id, fallback)
            n += 1
    # MLflow announces its exit-time flush at INFO after pdr's closing table; the traces are flushed
    # just below anyway, so that line says nothing to the user.
    logging.getLogger("mlflow.tracing.export.async_export_queue").setLevel(logging.WARNING)
    if n and hasattr(mlflow, "flush_trace_async_logging"):
        mlflow.flush_trace_async_logging()
    return n
