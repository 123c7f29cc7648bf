"""Test doubles that speak real protocols: `FakeSGLangServer` (SGLang's HTTP API on a real port).

`from tests.fakes import FakeSGLangServer`; the import is lazy so that
`python -m tests.fakes.fake_sglang` does not import the module twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["FakeSGLangServer", "Sample"]

E = TypeVar("E")
T = TypeVar("T")


def run_with_engine(engine: E, fn: Callable[[E], Awaitable[T]]) -> T:
    """Start `engine`, return `await fn(engine)`, close it: in a fresh event loop."""

    async def main() -> T:
        await engine.start()  # type: ignore[attr-defined]
        try:
            return await fn(engine)
        finally:
            await engine.close()  # type: ignore[attr-defined]

    return asyncio.run(main())


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tests.fakes import fake_sglang

        return getattr(fake_sglang, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
