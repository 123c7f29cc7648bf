"""The strategy-graph vocabulary and its compiler.

A strategy is a list of steps in YAML. Each step is a dict with an `op`:

  generate  {n, prompt?, max_tokens?, temperature?}
            Fork n drafts. Without a workspace they see only the problem (prompt `draft`); with one,
            the problem plus the workspace (prompt `refine`). A fork of n branches that share one
            prompt is one engine request with n (one prefill, n branches), joined when all return.
  distill   {type, k?, selection?, workspace_tokens?, include_thinking?}
            Build the next workspace from the current drafts, from scratch (never appended):
            global_summary (one model call), top_k_shared, top_k_per_sample, random_k, or
            all (every draft verbatim; with one draft this is SR's "previous solution").
  critique  {prompt?}   An error analysis of each current draft, shown to the next generate.
  vote      {}          Majority vote over the current drafts' final answers -> the final answer.
  repeat    {times | over, steps}   Unrolled at compile time; "$item" (the element of `over`, or
            the 1-based iteration) and "$index" (0-based) are substituted in the body's values.

Any step may carry `enabled: false` (e.g. `enabled: ${strategy.error_analysis}`).
The graph must end with exactly one final candidate: a generate with n=1, or a vote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdr.config.strategy import DISTILL_TYPES, MIN_TOKENS_PER_CANDIDATE, SELECTION_RULES
from pdr.errors import ConfigError, did_you_mean

DISTILL_OPS = (*DISTILL_TYPES, "all")
PROMPT_NAMES = ("draft", "refine", "sr_refine", "summary", "select", "critique")


@dataclass(frozen=True)
class Generate:
    n: int
    prompt: str | None = None  # None: "draft" without a workspace, "refine" with one
    max_tokens: int | None = None
    temperature: float | None = None
    round: int = 0  # 1-based index among the generate steps (filled by the compiler)


@dataclass(frozen=True)
class Distill:
    type: str
    k: int | None = None
    selection: str = "agreement"
    workspace_tokens: int = 4096
    include_thinking: bool = False


@dataclass(frozen=True)
class Critique:
    prompt: str = "critique"


@dataclass(frozen=True)
class Vote:
    pass


Op = Generate | Distill | Critique | Vote

_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "generate": ("n", "prompt", "max_tokens", "temperature"),
    "distill": ("type", "k", "selection", "workspace_tokens", "include_thinking"),
    "critique": ("prompt",),
    "vote": (),
    "repeat": ("times", "over", "steps"),
}


@dataclass(frozen=True)
class Graph:
    ops: tuple[Op, ...]

    @property
    def rounds(self) -> list[Generate]:
        return [op for op in self.ops if isinstance(op, Generate)]

    def describe(self) -> str:
        """One line, e.g. 'generate(4) -> distill(global_summary) -> generate(2) -> ... -> generate(1)'."""
        parts = []
        for op in self.ops:
            if isinstance(op, Generate):
                parts.append(f"generate({op.n})")
            elif isinstance(op, Distill):
                parts.append(f"distill({op.type}{'' if op.k is None else f', k={op.k}'})")
            elif isinstance(op, Critique):
                parts.append("critique")
            else:
                parts.append("vote")
        return " -> ".join(parts)


def compile_graph(strategy: Any) -> Graph:
    """Validate and unroll `strategy.steps` into a flat tuple of ops.

    `strategy` is a StrategyConfig (or anything with `.steps`); its workspace knobs
    (workspace_tokens, include_thinking, selection) are the defaults of every distill step.
    Raises ConfigError naming `strategy.steps[i]` for anything wrong.
    """
    defaults = {
        "workspace_tokens": getattr(strategy, "workspace_tokens", 4096),
        "include_thinking": getattr(strategy, "include_thinking", False),
        "selection": getattr(strategy, "selection", "agreement"),
    }
    flat: list[tuple[str, Mapping[str, Any]]] = []
    _unroll(list(strategy.steps or []), "strategy.steps", {}, flat)
    if not flat:
        raise ConfigError("strategy.steps: no enabled steps; a strategy needs at least one generate")

    ops: list[Op] = []
    width: int | None = None  # drafts currently held
    rounds = 0
    for where, step in flat:
        op = step["op"]
        if op == "generate":
            n = _int(step, "n", where, minimum=1)
            prompt = step.get("prompt")
            if prompt is not None and prompt not in PROMPT_NAMES:
                raise ConfigError(f"{where}.prompt={prompt!r}: unknown prompt{did_you_mean(prompt, PROMPT_NAMES)}")
            max_tokens = step.get("max_tokens")
            if max_tokens is not None:
                max_tokens = _int(step, "max_tokens", where, minimum=1)
            rounds += 1
            ops.append(Generate(n=n, prompt=prompt, max_tokens=max_tokens, temperature=step.get("temperature"), round=rounds))
            width = n
        elif op == "distill":
            if width is None:
                raise ConfigError(f"{where}: distill before any generate has no drafts to distill (add a generate step first)")
            dtype = step.get("type")
            if dtype not in DISTILL_OPS:
                raise ConfigError(
                    f"{where}.type={dtype!r}: unknown distill type{did_you_mean(str(dtype), DISTILL_OPS)} "
                    f"(choose one of {', '.join(DISTILL_OPS)})"
                )
            k = step.get("k") if dtype != "global_summary" else None  # a summary keeps no k drafts
            if dtype in ("top_k_shared", "top_k_per_sample", "random_k"):
                if k is None:
                    raise ConfigError(f"{where}: distill type {dtype} needs k (e.g. k: ${{strategy.k}})")
                k = _int(step, "k", where, minimum=1)
                if k > width:
                    raise ConfigError(
                        f"{where}: k={k} is larger than the {width} drafts of the round before it "
                        "(lower strategy.k or raise that round's width)"
                    )
            selection = step.get("selection", defaults["selection"])
            if selection not in SELECTION_RULES:
                raise ConfigError(f"{where}.selection={selection!r}: unknown{did_you_mean(str(selection), SELECTION_RULES)}")
            ws = _int({"workspace_tokens": step.get("workspace_tokens", defaults["workspace_tokens"])}, "workspace_tokens", where, minimum=1)
            per = ws // (k if k else width) if dtype != "global_summary" else ws
            if per < MIN_TOKENS_PER_CANDIDATE:
                raise ConfigError(
                    f"{where}: workspace_tokens={ws} leaves {per} tokens per candidate (need >= {MIN_TOKENS_PER_CANDIDATE}); "
                    "raise strategy.workspace_tokens or keep fewer candidates"
                )
            ops.append(Distill(type=dtype, k=k, selection=selection, workspace_tokens=ws,
                               include_thinking=bool(step.get("include_thinking", defaults["include_thinking"]))))
        elif op == "critique":
            if width is None:
                raise ConfigError(f"{where}: critique before any generate has nothing to analyse")
            prompt = step.get("prompt", "critique")
            ops.append(Critique(prompt=prompt))
        elif op == "vote":
            if width is None:
                raise ConfigError(f"{where}: vote before any generate has nothing to vote on")
            ops.append(Vote())
            width = 1
    last = ops[-1]
    if isinstance(last, Distill | Critique):
        raise ConfigError(
            f"strategy.steps: the graph ends with a {type(last).__name__.lower()} step; end with a generate "
            "(n: 1) or a vote so that it produces a final answer"
        )
    if isinstance(last, Generate) and last.n != 1:
        raise ConfigError(
            f"strategy.steps: the last step generates {last.n} drafts; end with a single generate (n: 1) "
            "or add a vote step to pick the final answer"
        )
    return Graph(tuple(ops))


def _unroll(steps: Sequence[Any], path: str, bindings: dict[str, Any], out: list[tuple[str, Mapping[str, Any]]]) -> None:
    for i, raw in enumerate(steps):
        where = f"{path}[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: a step must be a mapping with an 'op' key, got {raw!r}")
        step = {key: _bind(value, bindings) for key, value in raw.items() if key != "steps"}
        if "steps" in raw:
            step["steps"] = raw["steps"]
        op = step.get("op")
        if op not in _STEP_KEYS:
            raise ConfigError(f"{where}.op={op!r}: unknown op{did_you_mean(str(op), _STEP_KEYS)} (ops: {', '.join(_STEP_KEYS)})")
        enabled = step.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled={enabled!r}: must be true or false")
        unknown = [key for key in step if key not in (*_STEP_KEYS[op], "op")]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} for op {op}{did_you_mean(unknown[0], _STEP_KEYS[op])} "
                f"(keys: {', '.join(_STEP_KEYS[op]) or 'none'})"
            )
        if not enabled:
            continue
        if op != "repeat":
            out.append((where, step))
            continue
        body = step.get("steps")
        if not isinstance(body, Sequence) or isinstance(body, str) or not body:
            raise ConfigError(f"{where}.steps: repeat needs a non-empty list of steps")
        if ("times" in step) == ("over" in step):
            raise ConfigError(f"{where}: repeat needs exactly one of 'times' or 'over'")
        if "times" in step:
            times = _int(step, "times", where, minimum=0)
            items: list[Any] = list(range(1, times + 1))
        else:
            items = list(step["over"]) if isinstance(step["over"], Sequence) and not isinstance(step["over"], str) else None
            if not items:
                raise ConfigError(f"{where}.over={step['over']!r}: must be a non-empty list")
        for index, item in enumerate(items):
            _unroll(body, f"{where}.steps", {**bindings, "$item": item, "$index": index}, out)


def _bind(value: Any, bindings: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and value in bindings:
        return bindings[value]
    if isinstance(value, str) and value.startswith("$") and value in ("$item", "$index"):
        raise ConfigError(f"{value} used outside a repeat step")
    return value


def _int(step: Mapping[str, Any], key: str, where: str, minimum: int) -> int:
    value = step.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise ConfigError(f"{where}.{key}={value!r}: must be an integer") from None
    if value < minimum:
        raise ConfigError(f"{where}.{key}={value}: must be >= {minimum}")
    return value
