"""`trace_view.html`: a self-contained page of a run's traces, for a browser or MLflow's artifact view.

Every problem-sample, failures first (errors, truncations, missing answers, wrong answers; then
the correct ones, each in natural problem order and sample order), reachable from an index of all
of them (status counts, one link each) and with previous / next / index links on each entry. For
each it shows round by round each draft's extracted answer, whether it is correct, its length in
tokens and finish reason (full thinking and solution text collapsible), the workspace(s) the
distill step handed to the next round, the other calls (summary, selection, critique), and the
final answer.

Contracts:
- self-contained: inline CSS, no JavaScript, no external resources (collapsing is `<details>`);
- every text from the run (problems, prompts, model output, answers) goes through `html.escape`;
- bounded size: each text is cut to `max_chars` (head and tail kept, the cut marked with how much
  was left out); once the page reaches `max_bytes`, the remaining entries are compact (answers,
  grades, tokens and finish reasons, no texts: those are in traces.jsonl), so every problem-sample
  stays reachable (a note says from where on).
Reads `traces.jsonl` and `results.jsonl` (for per-draft correctness), and `summary.json` if present.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pdr.results.files import read_jsonl

log = logging.getLogger(__name__)

FILENAME = "trace_view.html"
_FAILURE_ORDER = ("error", "truncated", "no_answer", "wrong")
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; max-width: 80em; }
.sim { background: #fdd; border: 2px solid #c00; color: #900; font-weight: bold; padding: .4em .8em; }
.entry { border: 1px solid #bbb; border-radius: 6px; padding: .6em 1em; margin: 1.2em 0; }
.round, .call, .ws { border-left: 4px solid #9bd; padding: .2em .8em; margin: .6em 0; }
.ws { border-left-color: #db9; background: #fffaf2; }
.call { border-left-color: #ccc; }
.final { border-left: 4px solid #7c7; padding: .2em .8em; margin: .6em 0; background: #f4fff4; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7f7; padding: .5em; font-size: 12px;
      max-height: 40em; overflow: auto; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
.ok { color: #080; font-weight: bold; } .bad { color: #b00; font-weight: bold; } .muted { color: #777; }
.badge { display: inline-block; padding: 0 .4em; border-radius: 4px; font-size: 12px; color: #fff; }
.b-correct { background: #2a2; } .b-wrong { background: #c33; } .b-no_answer { background: #c80; }
.b-truncated { background: #a5a; } .b-error { background: #555; }
summary { cursor: pointer; }
nav.entry-nav { font-size: 12px; float: right; } nav.entry-nav a { margin-left: .6em; }
.index a { display: inline-block; margin: 0 .5em .2em 0; font-size: 12px; }
.index h3 { margin: .5em 0 .2em; font-size: 14px; }
"""


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def clip(text: str | None, max_chars: int) -> str:
    """`text` cut to about `max_chars` characters: the head (2/3) and tail (1/3, where the final
    answer is) kept, the cut marked. Unescaped: escape the result."""
    text = text or ""
    if len(text) <= max_chars:
        return text
    head = max_chars * 2 // 3
    tail = max_chars - head
    return (f"{text[:head]}\n\n[... {len(text) - head - tail:,} characters left out here; "
            f"the full text is in traces.jsonl ...]\n\n{text[-tail:]}")


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def choose(traces: Sequence[Mapping[str, Any]], problems: int, failures: int) -> list[Mapping[str, Any]]:
    """The traces to show: the lowest sample of the first `problems` problems (natural id order),
    then up to `failures` failing problem-samples of other problems (one per problem; errors first,
    then truncated, no answer, wrong)."""
    by_problem: dict[str, list[Mapping[str, Any]]] = {}
    for t in traces:
        by_problem.setdefault(str(t["problem_id"]), []).append(t)
    ids = sorted(by_problem, key=_natural_key)
    chosen = [min(by_problem[p], key=lambda t: int(t["sample"])) for p in ids[:problems]]
    taken = {str(t["problem_id"]) for t in chosen}
    fails = []
    for p in ids:
        if p in taken:
            continue
        bad = [t for t in by_problem[p] if t.get("status") in _FAILURE_ORDER]
        if bad:
            fails.append(min(bad, key=lambda t: (_FAILURE_ORDER.index(t["status"]), int(t["sample"]))))
    fails.sort(key=lambda t: (_FAILURE_ORDER.index(t["status"]), _natural_key(t["problem_id"])))
    return chosen + fails[:failures]


def order_all(traces: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every trace, failures first (errors, truncated, no answer, wrong), then the rest; each part
    in natural problem order and sample order."""
    def key(t: Mapping[str, Any]) -> tuple[Any, ...]:
        st = t.get("status")
        rank = _FAILURE_ORDER.index(st) if st in _FAILURE_ORDER else len(_FAILURE_ORDER)
        return rank, _natural_key(str(t["problem_id"])), int(t["sample"])

    return sorted(traces, key=key)


def _anchor(trace: Mapping[str, Any]) -> str:
    return _esc(f"p-{trace.get('problem_id')}-{trace.get('sample')}")


def _badge(status: str | None) -> str:
    s = status or "?"
    return f'<span class="badge b-{_esc(s)}">{_esc(s)}</span>'


def _text_block(label: str, text: str | None, max_chars: int, open_: bool = False) -> str:
    if not text or max_chars <= 0:  # max_chars=0: a compact entry, texts left out
        return ""
    return (f"<details{' open' if open_ else ''}><summary>{_esc(label)} ({len(text):,} chars)</summary>"
            f"<pre>{_esc(clip(text, max_chars))}</pre></details>")


def _output_blocks(out: Mapping[str, Any], max_chars: int) -> str:
    return (_text_block("thinking", out.get("reasoning"), max_chars)
            + _text_block("solution", out.get("text"), max_chars))


def _prompt_block(call: Mapping[str, Any], max_chars: int) -> str:
    msgs = call.get("messages") or []
    text = "\n\n".join(f"[{role}]\n{content}" for role, content in msgs)
    return _text_block("prompt", text, max_chars)


def _latency(call: Mapping[str, Any]) -> str:
    """A call's latency as pdr saw it (traces.jsonl `latency_s`; `from_cache`: served by the journal or
    cache), or "n/a" for traces written before latencies were recorded."""
    lat = call.get("latency_s")
    if not isinstance(lat, int | float):
        return '<span class="muted">n/a</span>'
    return f"{lat:.3f} s" + (' <span class="muted">(cached)</span>' if call.get("from_cache") else "")


def _step_time(step: Mapping[str, Any] | None) -> str:
    """' · step 1.234 s' from the op's recorded start and end; '' when not recorded."""
    if not step or not isinstance(step.get("started"), int | float) or not isinstance(step.get("ended"), int | float):
        return ""
    return f" · step {step['ended'] - step['started']:.3f} s"


def render_entry(trace: Mapping[str, Any], row: Mapping[str, Any] | None, max_chars: int = 4000) -> str:
    """The HTML fragment of one problem-sample: problem, rounds of drafts with the workspaces in
    between, other calls, final answer. `row` is its results.jsonl row (None: unknown correctness)."""
    pid, sample = trace.get("problem_id"), trace.get("sample")
    rounds = list((row or {}).get("rounds") or [])
    calls = sorted(trace.get("calls") or [], key=lambda c: (int(c.get("step", 0)), int(c.get("branch", 0))))
    ws_by_step = {int(w["step"]): w for w in trace.get("workspaces") or [] if "step" in w}
    draft_steps = sorted({int(c["step"]) for c in calls if c.get("kind") in ("draft", "refine")})
    steps = sorted({int(c["step"]) for c in calls} | set(ws_by_step))
    step_times = {int(s["step"]): s for s in trace.get("steps") or [] if "step" in s}
    parts = [
        f'<div class="entry" id="{_anchor(trace)}">',
        f"<h2>{_esc(pid)} · sample {_esc(sample)} {_badge(trace.get('status'))}</h2>",
        f"<p>final answer <b>{_esc(trace.get('answer'))}</b> · gold <b>{_esc(trace.get('gold'))}</b>"
        + (f" · seq tokens {row['seq_tokens']:,.0f} · total tokens {row['total_tokens']:,.0f}"
           if row and row.get("seq_tokens") is not None and row.get("total_tokens") is not None else "")
        + (f" · <span class='bad'>{_esc(row.get('error'))}</span>" if row and row.get("error") else "") + "</p>",
        _text_block("problem", trace.get("problem"), max_chars, open_=True),
    ]
    last_round_outputs: list[Mapping[str, Any]] = []
    for step in steps:
        step_calls = [c for c in calls if int(c["step"]) == step]
        if step in draft_steps:
            r_idx = draft_steps.index(step)
            rd = rounds[r_idx] if r_idx < len(rounds) else {}
            pairs = [(c, o) for c in step_calls for o in c.get("outputs") or []]
            outputs = [o for _, o in pairs]
            answers = rd.get("answers") or [None] * len(outputs)
            correct = rd.get("correct") or [None] * len(outputs)
            acc = rd.get("draft_accuracy")
            head = (f"Round {r_idx + 1}: {len(outputs)} draft{'s' if len(outputs) != 1 else ''}"
                    + (f" · draft accuracy {acc:.2f}" if isinstance(acc, int | float) else "")
                    + (f" · workspace {rd['workspace_tokens']:,.0f} tokens" if rd.get("workspace_tokens") else "")
                    + _step_time(step_times.get(step)))
            rows_html = []
            for i, out in enumerate(outputs):
                ans = answers[i] if i < len(answers) else None
                ok = correct[i] if i < len(correct) else None
                mark = ('<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>') if ok is not None \
                    else '<span class="muted">?</span>'
                rows_html.append(
                    f"<tr><td>{i + 1}</td><td>{_esc(ans) if ans is not None else '<i class=muted>none</i>'}</td>"
                    f"<td>{mark}</td><td>{_esc(out.get('completion_tokens'))}</td><td>{_esc(out.get('finish_reason'))}"
                    f"</td><td>{_esc(out.get('prompt_tokens'))}</td><td>{_latency(pairs[i][0])}</td>"
                    f"<td>{_output_blocks(out, max_chars)}</td></tr>")
            parts.append(
                f'<div class="round"><h3>{_esc(head)}</h3>'
                + (_prompt_block(step_calls[0], max_chars) if step_calls else "")
                + "<table><tr><th>#</th><th>answer</th><th>correct</th><th>tokens</th><th>finish</th>"
                "<th>prompt tokens</th><th>latency</th><th>text</th></tr>" + "".join(rows_html) + "</table></div>")
            last_round_outputs = outputs
        else:
            for c in step_calls:
                outs = c.get("outputs") or []
                parts.append(
                    f'<div class="call"><b>{_esc(c.get("kind"))}</b> call (step {step}, branch {_esc(c.get("branch"))}, '
                    f"n={_esc(c.get('n'))}, latency {_latency(c)}{_step_time(step_times.get(step))}): "
                    + ", ".join(f"{_esc(o.get('completion_tokens'))} tokens, {_esc(o.get('finish_reason'))}" for o in outs)
                    + _prompt_block(c, max_chars) + "".join(_output_blocks(o, max_chars) for o in outs) + "</div>")
        ws = ws_by_step.get(step)
        if ws is not None:
            nxt = next((s for s in draft_steps if s > step), None)
            target = f"round {draft_steps.index(nxt) + 1}" if nxt is not None else "the next step"
            if ws.get("workspace") is not None:
                body = _text_block(f"shared workspace ({ws.get('type')})", ws["workspace"], max_chars, open_=True)
            else:
                items = list(ws.get("workspaces") or [])
                body = "".join(_text_block(f"workspace of branch {j + 1} ({ws.get('type')})", w, max_chars)
                               for j, w in enumerate(items))
            parts.append(f'<div class="ws"><b>Workspace given to {_esc(target)}</b>{body}</div>')
    final_text = ""
    if len(last_round_outputs) == 1:
        final_text = _output_blocks(last_round_outputs[0], max_chars)
    parts.append(f'<div class="final"><b>Final answer:</b> {_esc(trace.get("answer"))} '
                 f"{_badge(trace.get('status'))} (gold {_esc(trace.get('gold'))}){final_text}</div></div>")
    return "\n".join(parts)


def write_trace_html(run_dir: Path, max_chars: int = 4000, max_bytes: int = 1_000_000) -> Path | None:
    """Write `<run_dir>/trace_view.html` (module docstring) and return its path; None if the run
    has no traces. Never raises on malformed rows: they are skipped with a warning."""
    run_dir = Path(run_dir)
    traces_path = run_dir / "traces.jsonl"
    if not traces_path.exists():
        return None
    traces = [t for t in read_jsonl(traces_path) if "problem_id" in t and "sample" in t]
    if not traces:
        return None
    rows = {(str(r.get("problem_id")), int(r.get("sample", 0))): r for r in read_jsonl(run_dir / "results.jsonl")}
    summary: dict[str, Any] = {}
    if (run_dir / "summary.json").exists():
        try:
            summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("trace view: cannot read summary.json: %s", exc)
    latest: dict[tuple[str, int], Mapping[str, Any]] = {}
    for t in traces:  # a resumed run may have retried a pair: the last trace wins
        latest[(str(t["problem_id"]), int(t["sample"]))] = t
    picked = order_all(list(latest.values()))

    cfg = summary.get("config") or {}
    metrics = summary.get("metrics") or {}
    title = (f"pdr traces: {cfg.get('strategy', {}).get('name', '?')} on {cfg.get('dataset', {}).get('name', '?')} "
             f"({cfg.get('engine', {}).get('name', '?')}, {cfg.get('engine', {}).get('model', '?')})")
    head = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1 id='top'>{_esc(title)}</h1>"]
    if summary.get("simulated"):
        head.append('<p class="sim">SIMULATED engine — not model results</p>')
    if metrics:
        head.append(f"<p>accuracy {metrics.get('accuracy', float('nan')):.3f} over {int(metrics.get('problems', 0))} "
                    f"problems × {_esc(cfg.get('samples', '?'))} samples · graph: <code>{_esc(summary.get('graph'))}</code></p>")
    counts: dict[str, int] = {}
    for t in picked:
        counts[str(t.get("status"))] = counts.get(str(t.get("status")), 0) + 1
    head.append(f"<p class='muted'>All {len(picked)} problem-samples, failures first ("
                + ", ".join(f"{n} {_esc(st)}" for st, n in counts.items())
                + f"). Texts longer than {max_chars:,} characters are cut (marked); everything is in traces.jsonl.</p>")
    index = ["<div class='index'>"]
    status = None
    for t in picked:
        if t.get("status") != status:
            status = t.get("status")
            index.append(f"<h3>{_badge(status)} {counts[str(status)]}</h3>")
        index.append(f"<a href='#{_anchor(t)}'>{_esc(t['problem_id'])}·{_esc(t['sample'])}</a>")
    index.append("</div>")
    body: list[str] = []
    size = sum(len(s) for s in head + index)
    compact_from: int | None = None
    for n, t in enumerate(picked):
        nav = ["<nav class='entry-nav'>"]
        if n > 0:
            nav.append(f"<a href='#{_anchor(picked[n - 1])}'>&larr; previous</a>")
        if n + 1 < len(picked):
            nav.append(f"<a href='#{_anchor(picked[n + 1])}'>next &rarr;</a>")
        nav.append("<a href='#top'>index</a></nav>")
        row = rows.get((str(t["problem_id"]), int(t["sample"])))
        try:
            frag = render_entry(t, row, max_chars if compact_from is None else 0)
            if compact_from is None and size + len(frag) > max_bytes and body:
                compact_from = n
                body.append(f"<p class='bad'>Page size limit reached: from here on, {len(picked) - n} entries are "
                            "compact (answers, grades, tokens; the texts are in traces.jsonl).</p>")
                frag = render_entry(t, row, 0)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("trace view: skipping %s/%s (%s: %s)", t.get("problem_id"), t.get("sample"), type(exc).__name__, exc)
            continue
        # The entry's navigation goes inside its box, right after the opening tag.
        frag = frag.replace(">", ">" + "".join(nav), 1)
        body.append(frag)
        size += len(frag)
    out = run_dir / FILENAME
    out.write_text("\n".join(head + index + body) + "\n</body></html>\n", encoding="utf-8")
    return out
