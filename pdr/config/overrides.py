"""Hydra override strings read as sweep axes, the way Hydra's basic sweeper forms its jobs.

One reader for the two places that need it: `pdr.dryrun` (which builds every job of a sweep) and
`pdr.tracking.sweep` (which names a sweep's axes in its parent run's `sweep_params`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    key: str  # as written, e.g. "strategy.widths" or "+engine.extra_body.x"
    values: tuple[str, ...] | None  # one value for a plain override; None for an interval sweep
    swept: bool  # a sweep (`a=1,2`, `range(...)`, `choice(...)`), not a plain `a=1`
    text: str  # the override as written, for messages


def override_axes(args: list[str]) -> dict[str, Axis]:
    """The axes of override strings: one per key, in order of first appearance, a later override
    of a key replacing the earlier one in place (as Hydra's basic sweeper combines them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes: dict[str, Axis] = {}
    for arg, ov in zip(args, OverridesParser.create().parse_overrides(list(args)), strict=True):
        key = ov.get_key_element()
        if not ov.is_sweep_override():
            axes[key] = Axis(key, (ov.get_value_element_as_str(),), False, arg)
        elif ov.is_discrete_sweep():
            axes[key] = Axis(key, tuple(ov.sweep_string_iterator()), True, arg)
        else:
            axes[key] = Axis(key, None, True, arg)
    return axes
