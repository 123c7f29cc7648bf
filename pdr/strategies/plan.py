"""Context planning: the worst-case prompt + generation of every step, before any call.

From the compiled graph (widths, k, kappa, the distill input bound), the generation caps and the
prompts, `plan_context` computes for each step that calls the model the largest context one of
its calls can need; `check_context` fails, in one line naming the step, the numbers and the fixes,
when one exceeds the model's context length (`engine.context_length`, or what the server reports).

Worst cases (tokens; "prompt" = the template + the longest problem, estimated conservatively at
one token per 3 characters when the engine's own counter is not at hand):
- generate: prompt + the workspace it reads (kappa = workspace_tokens; nothing for first drafts)
  + a critique (its cap) after a critique step + the call's generation cap.
- distill global_summary / selection=judge: prompt + *every* draft of the round in full (each up
  to the generation cap) + its cap; with `strategy.distill_input_tokens` the drafts share that
  bound instead. (The post-hoc trim of the summary to kappa stays, as a guard.)
- critique: prompt + one draft (up to the cap) + its cap.
- extractive distills (top-k, random-k, previous solution) and vote make no call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pdr.errors import ConfigError
from pdr.strategies.critique import Critique
from pdr.strategies.distill import Distill
from pdr.strategies.generate import Generate
from pdr.strategies.graph import Graph

# With no context length known (neither engine.context_length nor the server says), a step is still
# refused when no model could hold it: 10 Mi tokens is beyond every context window served today. A
# width whose summarizer must read all its drafts in one call is then one no schedule could serve
# (forks split into requests of engine.max_n and queue; a single prompt cannot be split).
UNSERVABLE_CONTEXT = 10 * 1024 * 1024


def rough_tokens(text: str) -> int:
    """A conservative token estimate (English and LaTeX average ~4 characters per token)."""
    return len(text) // 3 + 1


@dataclass(frozen=True)
class StepNeed:
    step: int
    what: str  # e.g. "distill(global_summary) over 16 drafts"
    prompt: int  # template + problem
    reads: int  # workspace / drafts / critique read
    generation: int  # the call's generation cap
    drafts: int = 0  # drafts a summarizer / judge reads

    @property
    def total(self) -> int:
        return self.prompt + self.reads + self.generation


def plan_context(
    graph: Graph,
    prompts: Any,
    max_tokens: int,
    problems: Iterable[str] = (),
    count_tokens: Callable[[str], int] = rough_tokens,
) -> list[StepNeed]:
    """The worst-case need of every step that calls the model, in step order."""
    longest = max((count_tokens(p) for p in problems), default=512)
    system = count_tokens(prompts.system) if getattr(prompts, "system", None) else 0
    overhead = 32 + system  # chat-template tokens around the messages

    def prompt(name: str) -> int:
        return count_tokens(getattr(prompts, name)) + longest + overhead

    needs: list[StepNeed] = []
    width = 0  # drafts held
    workspace = 0  # tokens of the workspace the next generate reads
    critique = 0  # tokens of a critique the next generate reads
    for step, op in enumerate(graph.ops):
        if isinstance(op, Generate):
            cap = op.max_tokens or max_tokens
            name = op.prompt or ("refine" if workspace else "draft")
            reads = workspace + critique
            needs.append(StepNeed(step, f"generate({op.n}) [prompt {name}]", prompt(name), reads, cap))
            width, critique = op.n, 0
        elif isinstance(op, Distill):
            calls = op.type == "global_summary" or (op.selection == "judge" and op.spec.needs_k)
            if calls:
                per_draft = max_tokens  # a draft's text, thinking included or not, is within its cap
                reads = width * per_draft
                if op.distill_input_tokens is not None:
                    reads = min(reads, op.distill_input_tokens + width * 16)  # + the per-candidate headers
                name = "summary" if op.type == "global_summary" else "select"
                what = f"distill({op.type}{', judge' if name == 'select' else ''}) over {width} drafts"
                needs.append(StepNeed(step, what, prompt(name), reads, max_tokens, drafts=width))
            workspace = op.workspace_tokens
        elif isinstance(op, Critique):
            needs.append(StepNeed(step, "critique", prompt(op.prompt), max_tokens, max_tokens))
            critique = max_tokens
    return needs


def check_context(
    graph: Graph,
    prompts: Any,
    max_tokens: int,
    context_length: int | None,
    problems: Iterable[str] = (),
    count_tokens: Callable[[str], int] = rough_tokens,
    source: str = "engine.context_length",
) -> list[StepNeed]:
    """`plan_context`, and a ConfigError for the first step that cannot fit `context_length`; when
    that is None, for the first step no model could hold (`UNSERVABLE_CONTEXT`)."""
    needs = plan_context(graph, prompts, max_tokens, problems, count_tokens)
    if context_length is None:
        context_length = UNSERVABLE_CONTEXT
        limit = (f"{context_length:,}, more than any model's context window: no schedule can serve it "
                 "(engine.context_length is unset; set it if your model really serves more)")
    else:
        limit = f"{source}={context_length:,}"
    for need in needs:
        if need.total <= context_length:
            continue
        room = context_length - need.prompt - need.generation
        fixes = []
        if need.what.startswith("distill"):
            fixes.append(f"strategy.distill_input_tokens<={max(0, room - 16 * need.drafts)}")
            fixes.append(f"a narrower strategy.widths than {need.drafts}, or an extractive strategy.distill "
                         "(top_k_shared, top_k_per_sample, random_k: no call reads every draft)")
        elif need.reads:
            fixes.append(f"strategy.workspace_tokens<={max(0, room)}")
        fixes.append(f"lower sampling.thinking_tokens / sampling.max_tokens (generation {need.generation:,})")
        fixes.append("serve the model with a longer context")
        raise ConfigError(
            f"context planning: step {need.step} {need.what} needs up to {need.total:,} tokens "
            f"(prompt ~{need.prompt:,} + read {need.reads:,} + generation {need.generation:,}) > "
            f"{limit}; fix: " + ", or ".join(fixes)
        )
    return needs
