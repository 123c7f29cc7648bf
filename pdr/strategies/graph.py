"""The strategy-graph compiler: YAML steps -> a checked, flat tuple of ops.

A strategy is a list of steps in YAML. Each step is a dict with an `op`, one of the registered ops
(`registry.OPS`; built in: generate, distill, critique, vote, each documented in its module) or
the compiler's own `repeat`:

  repeat    {times | over, steps}   Unrolled at compile time; "$item" (the element of `over`, or
            the 1-based iteration) and "$index" (0-based) are substituted in the body's values.

Any step may carry `enabled: false` (e.g. `enabled: ${strategy.error_analysis}`).
The graph must end with exactly one final candidate: a generate with n=1, or a vote.

Compiling runs every check of the graph, once, before any engine call: unknown ops and keys,
each op's own `parse` (its keys' types and names) and then its `check` (what needs the widths
around it: k <= the drafts before a distill, the per-candidate share of workspace_tokens, how many
per-branch workspaces a distill builds for the next generate). Errors name the key a user set
(`strategy.k=5`, or `strategy.steps[1].k=5` for a key written in the steps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pdr.errors import ConfigError, did_you_mean

# The built-in ops and distill types register themselves on import.
from pdr.strategies import critique, distill, generate, vote  # noqa: F401
from pdr.strategies.generate import Generate
from pdr.strategies.registry import OPS, CompileContext, Op, lookup, strategy_knobs

REPEAT_KEYS = ("times", "over", "steps")
BOUND = ("$item", "$index")


@dataclass(frozen=True)
class Graph:
    ops: tuple[Op, ...]

    @property
    def generate_steps(self) -> list[Generate]:
        """The generate ops, in order (their `round` is their 1-based position here)."""
        return [op for op in self.ops if isinstance(op, Generate)]

    @property
    def oracle(self) -> bool:
        """Whether some step uses the gold answers (an oracle selection rule): such a run measures
        verification ability, not a strategy a user could deploy, and is tagged `oracle`."""
        return any(getattr(op, "oracle", False) for op in self.ops)

    def describe(self) -> str:
        """One line, e.g. 'generate(4) -> distill(global_summary) -> generate(2) -> ... -> generate(1)'."""
        return " -> ".join(op.describe() for op in self.ops)


def compile_graph(strategy: Any) -> Graph:
    """Validate and unroll `strategy.steps` into a flat tuple of ops.

    `strategy` is a StrategyConfig (or anything with `.steps`); its knobs (workspace_tokens,
    include_thinking, selection ...) are the defaults of the step keys of the same name.
    Raises ConfigError naming the user-facing key for anything wrong.
    """
    flat: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    _unroll(list(strategy.steps or []), "strategy.steps", {}, flat, strategy)
    if not flat:
        raise ConfigError("strategy.steps: no enabled steps; a strategy needs at least one generate")

    # 1. Parse each step, in order, knowing the drafts held before it.
    parsed: list[tuple[CompileContext, Op]] = []
    width: int | None = None
    width_key: str | None = None
    rounds = 0
    for where, step, sources in flat:
        cls = OPS[step["op"]]
        if cls.needs_drafts and width is None:
            raise ConfigError(
                f"{where}: {cls.name} before any generate has no drafts to work on (add a generate step first)"
            )
        cc = CompileContext(strategy, where, width, width_key, sources=sources)
        op = cls.parse({k: v for k, v in step.items() if k != "op"}, cc)
        if isinstance(op, Generate):
            rounds += 1
            op = replace(op, round=rounds)
        parsed.append((cc, op))
        width = op.width(width)
        if cls.width_from is not None:
            width_key = cc.key(cls.width_from, getattr(op, cls.width_from))

    last = parsed[-1][1]
    if not last.ends_graph:
        raise ConfigError(
            f"strategy.steps: the graph ends with a {last.name} step; end with a generate "
            "(n: 1) or a vote so that it produces a final answer"
        )
    if width != 1:
        raise ConfigError(
            f"strategy.steps: the last step generates {width} drafts; end with a single generate (n: 1) "
            "or add a vote step to pick the final answer"
        )

    # 2. Check each op knowing also the width of the next step that makes drafts (the generate
    # that reads a distill's workspaces).
    next_width: int | None = None
    for cc, op in reversed(parsed):
        cc.next_width = next_width
        if type(op).width_from is not None:
            next_width = op.width(cc.width)
    return Graph(tuple(op.check(cc) for cc, op in parsed))


def _unroll(
    steps: Sequence[Any],
    path: str,
    bindings: dict[str, tuple[Any, str | None]],
    out: list[tuple[str, dict[str, Any], dict[str, str]]],
    strategy: Any,
) -> None:
    """Append the enabled steps of `steps` to `out` as (where, step, sources), repeats unrolled.
    `bindings` maps "$item"/"$index" to (value, the knob it came from or None)."""
    for i, raw in enumerate(steps):
        where = f"{path}[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: a step must be a mapping with an 'op' key, got {raw!r}")
        step: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, value in raw.items():
            if key == "steps":
                step[key] = value
                continue
            if isinstance(value, str) and value in BOUND:
                if value not in bindings:
                    raise ConfigError(f"{value} used outside a repeat step")
                value, source = bindings[value]
                if source is not None:
                    sources[key] = source
            step[key] = value
        op = step.get("op")
        keys = REPEAT_KEYS if op == "repeat" else lookup(OPS, op, f"{where}.op", "op").keys
        enabled = step.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled={enabled!r}: must be true or false")
        unknown = [key for key in step if key not in (*keys, "op")]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} for op {op}{did_you_mean(unknown[0], keys)} "
                f"(keys: {', '.join(keys) or 'none'})"
            )
        if not enabled:
            continue
        if op != "repeat":
            out.append((where, step, sources))
            continue
        body = step.get("steps")
        if not isinstance(body, Sequence) or isinstance(body, str) or not body:
            raise ConfigError(f"{where}.steps: repeat needs a non-empty list of steps")
        if ("times" in step) == ("over" in step):
            raise ConfigError(f"{where}: repeat needs exactly one of 'times' or 'over'")
        source = None
        if "times" in step:
            times = CompileContext(strategy, where).int(step, "times", minimum=0)
            items: list[Any] | None = list(range(1, times + 1))
        else:
            over = step["over"]
            items = list(over) if isinstance(over, Sequence) and not isinstance(over, str) else None
            if not items:
                raise ConfigError(f"{where}.over={over!r}: must be a non-empty list")
            # `over: ${strategy.widths}` arrives resolved: find the knob again to name it in errors.
            source = sources.get("over") or next(
                (
                    f"strategy.{name}"
                    for name, v in strategy_knobs(strategy).items()
                    if isinstance(v, list) and v == items
                ),
                None,
            )
        for index, item in enumerate(items):
            _unroll(
                body,
                f"{where}.steps",
                {**bindings, "$item": (item, source), "$index": (index, None)},
                out,
                strategy,
            )
