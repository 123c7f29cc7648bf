"""Test doubles that speak real protocols: `FakeSGLangServer` (SGLang's HTTP API on a real port).

`from tests.fakes import FakeSGLangServer`; the import is lazy so that
`python -m tests.fakes.fake_sglang` does not import the module twice.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeSGLangServer", "Sample"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tests.fakes import fake_sglang

        return getattr(fake_sglang, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
