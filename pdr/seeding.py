"""Stable seeds: every random choice in pdr derives from the run seed and a call's position.

Hashes, not `hash()` (salted per process) and not a shared RNG (the draw would depend on the
order in which asyncio schedules the calls): the same (run seed, problem, sample, step, kind,
branch) gives the same seed in every run and process.
"""

from __future__ import annotations

import hashlib
from typing import Any


def stable_hash(*parts: Any) -> int:
    """A 64-bit integer hash of `parts` (their `str`, joined by a unit separator)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def derive_seed(*parts: Any) -> int:
    """A 62-bit seed from the run seed and a call's position; independent of scheduling order."""
    return stable_hash(*parts) >> 2
