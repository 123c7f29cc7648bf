"""The two registries a strategy graph is built from, and the compile-time view ops parse against.

- `OPS`: step name -> op class. An op is a frozen dataclass subclassing `Op` that parses and checks
  its YAML step (`parse`, `check`), names itself (`describe`) and runs (`run`). Register one with
  `@register_op("name")`.
- `DISTILL_TYPES`: distill type name -> `DistillType`, the table of what each type needs (k or not,
  one workspace per branch or one shared) and the function that builds its workspace(s).
  Register one with `@register_distill("name", needs_k=..., per_branch=...)`.

Both are looked up by name with a "did you mean" error (`lookup`). docs/extending.md walks through
adding either; the op and distill modules (generate, distill, critique, vote) are the examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pdr.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from pdr.strategies.distill import Distill
    from pdr.strategies.state import Candidate, OpContext, State

T = TypeVar("T")


# ---- compile-time view ---------------------------------------------------------------------------


@dataclass
class CompileContext:
    """What an op sees while its step is compiled: where it is, the drafts before it, the next
    generate's width, and the strategy's knobs (for defaults and for naming the key a user set).

    `parse` gets `width` (drafts held before the step; None before the first generate); `check`
    also gets `next_width` (the width of the next generate after the step; None if none follows).
    """

    strategy: Any
    where: str = "strategy.steps"
    width: int | None = None
    width_key: str | None = None  # the user-facing key that set `width`, e.g. "strategy.widths"
    next_width: int | None = None
    # Step keys bound from a knob by `repeat: {over: ${strategy.X}}`: key -> "strategy.X".
    sources: Mapping[str, str] = field(default_factory=dict)

    def default(self, key: str, fallback: Any) -> Any:
        """The strategy's knob `key` (the default of a step key of the same name), else `fallback`."""
        return getattr(self.strategy, key, fallback)

    def knob(self, name: str) -> Any:
        """The value of a user-facing key such as "strategy.widths" (None if it is not a knob)."""
        parts = name.split(".")
        if parts[0] != "strategy" or len(parts) < 2 or parts[1] == "steps":
            return None
        value: Any = self.strategy
        for part in parts[1:]:
            value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        return value

    def key(self, key: str, value: Any) -> str:
        """The name to show a user for the step key `key` holding `value`: the knob it came from
        ("strategy.k", "strategy.params.pairs") when there is one, else "strategy.steps[i].key".

        A knob is recognised by its value (the YAML's `${strategy.k}` is resolved before the graph
        is compiled): a knob of the same name holding the same value, else the only param holding
        it, else (for text values) any knob holding it.
        """
        if key in self.sources:
            return self.sources[key]
        knobs = strategy_knobs(self.strategy)
        for name in (key, f"params.{key}"):
            if name in knobs and _same(knobs[name], value):
                return f"strategy.{name}"
        # A composite's own knobs (params) rarely share the step key's name: take the one param
        # holding this value, if only one does; text values are distinctive enough to match any knob.
        same = [
            name
            for name, v in knobs.items()
            if _same(v, value) and (name.startswith("params.") or isinstance(value, str))
        ]
        if len(same) == 1 or (same and isinstance(value, str)):
            return f"strategy.{same[0]}"
        return f"{self.where}.{key}"

    def int(self, step: Mapping[str, Any], key: str, minimum: int) -> int:
        """`step[key]` as an int >= minimum (digit strings accepted), or a ConfigError naming it."""
        value = step.get(key)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.key(key, value)}={value!r}: must be an integer")
        if value < minimum:
            raise ConfigError(f"{self.key(key, value)}={value}: must be >= {minimum}")
        return value

    def choice(self, key: str, value: Any, table: Mapping[str, T] | tuple[str, ...], what: str) -> Any:
        """`value` looked up in `table` (a registry or a tuple of names), erroring with did-you-mean."""
        return lookup(table, value, self.key(key, value), what)


def strategy_knobs(strategy: Any) -> dict[str, Any]:
    """The strategy's knobs ("k", "widths", "params.pairs" ...): every field but name and steps."""
    if dataclasses.is_dataclass(strategy):
        items = {f.name: getattr(strategy, f.name) for f in dataclasses.fields(strategy)}
    else:
        items = dict(vars(strategy)) if hasattr(strategy, "__dict__") else {}
    out = {k: v for k, v in items.items() if k not in ("name", "steps", "params")}
    params = items.get("params") or {}
    if isinstance(params, Mapping):
        out.update({f"params.{k}": v for k, v in params.items()})
    return out


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b  # True is not the knob 1


def lookup(
    table: Mapping[str, T] | tuple[str, ...],
    name: Any,
    key: str,
    what: str,
    renamed: Mapping[str, str] | None = None,
) -> Any:
    """`table[name]` (or `name` itself for a tuple of names); else a ConfigError naming `key`,
    with a did-you-mean and the choices. `renamed` maps old names to the current ones."""
    if isinstance(name, str) and name in table:
        return table[name] if isinstance(table, Mapping) else name
    if renamed and name in renamed:
        raise ConfigError(
            f"{key}={name!r}: the {what} {name!r} was renamed to {renamed[name]!r} "
            f"(did you mean {renamed[name]!r}?)"
        )
    choices = list(table)
    raise ConfigError(
        f"{key}={name!r}: unknown {what}{did_you_mean(str(name), choices)} "
        f"(choose one of {', '.join(choices)})"
    )


# ---- ops -----------------------------------------------------------------------------------------


class Op:
    """Base of graph ops. A subclass is a frozen dataclass whose fields are its compiled settings."""

    name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()  # the step keys it accepts (besides `op` and `enabled`)
    needs_drafts: ClassVar[bool] = True  # must come after a generate
    ends_graph: ClassVar[bool] = False  # may be the last step (it leaves the final candidate)
    width_from: ClassVar[str | None] = None  # the step key that sets the width it leaves (generate: n)

    @classmethod
    def parse(cls, step: Mapping[str, Any], cc: CompileContext) -> Op:
        """Build the op from its YAML step (unknown keys were already rejected); ConfigError naming
        the key for anything wrong."""
        raise NotImplementedError

    def check(self, cc: CompileContext) -> Op:
        """Compile-time checks that need the widths around the step (`cc.width`, `cc.next_width`);
        returns the op, possibly with compile-time fields filled in."""
        return self

    def width(self, before: int | None) -> int | None:
        """Drafts held after the op, given those before it."""
        return before

    def describe(self) -> str:
        return self.name

    async def run(self, step: int, state: State, ctx: OpContext) -> None:
        raise NotImplementedError


OPS: dict[str, type[Op]] = {}


def register_op(name: str) -> Callable[[type[Op]], type[Op]]:
    """Class decorator: make `name` a step op (`- {op: name, ...}` in a strategy's YAML)."""

    def add(cls: type[Op]) -> type[Op]:
        if name in OPS or name == "repeat":
            raise ValueError(f"op {name!r} is already registered")
        cls.name = name
        OPS[name] = cls
        return cls

    return add


# ---- distill types -------------------------------------------------------------------------------

# (op, drafts, ctx, step) -> the workspaces: op.branches of them (one per branch of the next
# generate, in branch order) for a per-branch type, exactly one for a shared type.
DistillFn = Callable[["Distill", "list[Candidate]", "OpContext", int], Awaitable[list[str]]]


@dataclass(frozen=True)
class DistillType:
    name: str
    build: DistillFn
    needs_k: bool  # keeps k of the drafts (`k:` is required, <= the drafts before it)
    per_branch: bool  # one workspace per branch of the next generate (else one shared by all)
    # The workspace is drafts verbatim, workspace_tokens shared among them (k of them, or every
    # draft without k); False: one generated text (a summary) within workspace_tokens.
    extractive: bool = True


DISTILL_TYPES: dict[str, DistillType] = {}
RENAMED_DISTILL_TYPES = {"all": "previous_solution"}


def register_distill(
    name: str, *, needs_k: bool, per_branch: bool, extractive: bool = True
) -> Callable[[DistillFn], DistillFn]:
    """Function decorator: make `name` a distill type (`{op: distill, type: name}`)."""

    def add(fn: DistillFn) -> DistillFn:
        if name in DISTILL_TYPES:
            raise ValueError(f"distill type {name!r} is already registered")
        DISTILL_TYPES[name] = DistillType(
            name, fn, needs_k=needs_k, per_branch=per_branch, extractive=extractive
        )
        return fn

    return add
