"""Context-length overflows: recognising a server's "prompt too long" answer, reading its token
numbers, and `engine.on_context_overflow=truncate` (retry once with the largest cap that fits).

Messages recognised: SGLang's tokenizer manager and scheduler (sglang-http-api.md §2.6), vLLM and
OpenAI. An overflow the numbers cannot be read from stays an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pdr.engines.base import Completion
from pdr.errors import ContextLengthError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContextOverflow:
    """Numbers parsed from a context-length error. Units: tokens. `completion` is the requested
    generation cap when the message states it, else None."""

    input_tokens: int
    context_length: int
    completion: int | None = None

    @property
    def prompt_too_long(self) -> bool:
        """The prompt alone leaves no room for even one generated token."""
        return self.input_tokens >= self.context_length - 1

    def fitting_max_tokens(self) -> int:
        """The largest generation cap that fits: context − input − 1 (SGLang clamps to that too)."""
        return self.context_length - self.input_tokens - 1


_CONTEXT_PATTERNS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    # SGLang tokenizer manager: prompt alone too long.
    (
        re.compile(
            r"input \((\d+) tokens\) is longer than the model's context length \((\d+) tokens\)", re.I
        ),
        ("n", "c"),
    ),
    # SGLang: input + max_new_tokens too long.
    (
        re.compile(
            r"maximum context length of (\d+) tokens\. You requested a total of \d+ tokens: (\d+) tokens from the "
            r"input messages and (\d+) tokens for the completion",
            re.I,
        ),
        ("c", "n", "m"),
    ),
    # vLLM / OpenAI style; llama-cpp-python's server too, which says "None in the completion"
    # when the request carried no cap it reads.
    (
        re.compile(
            r"maximum context length is (\d+) tokens\. However, you requested \d+ tokens \((\d+) in the messages, "
            r"(\d+|None) in the completion\)",
            re.I,
        ),
        ("c", "n", "m"),
    ),
    # llama-cpp-python, completions route: "... (N in your prompt; M for the completion)".
    (
        re.compile(
            r"maximum context length is (\d+) tokens, however you requested \d+ tokens \((\d+) in your prompt; "
            r"(\d+|None) for the completion\)",
            re.I,
        ),
        ("c", "n", "m"),
    ),
    (
        re.compile(r"maximum context length is (\d+) tokens and your request has (\d+) input tokens", re.I),
        ("c", "n"),
    ),
    (
        re.compile(
            r"maximum context length is (\d+) tokens\. However, your request has (\d+) input tokens", re.I
        ),
        ("c", "n"),
    ),
    # SGLang scheduler abort.
    (
        re.compile(
            r"Input length \((\d+) tokens\) exceeds the maximum allowed length \((\d+) tokens\)", re.I
        ),
        ("n", "c"),
    ),
)
_CONTEXT_HINTS = ("context length", "context_length", "maximum allowed length", "context window")


def overflow_hint(message: str) -> str:
    """What to do about a context overflow, from the numbers in the server's message."""
    overflow = parse_context_overflow(message)
    if overflow is not None and overflow.prompt_too_long:
        return (
            f"the prompt alone is {overflow.input_tokens} tokens, the context {overflow.context_length}: a smaller "
            "sampling.max_tokens cannot help; shorten the prompt (e.g. strategy.workspace_tokens) or serve the "
            "model with a longer context"
        )
    return (
        "lower sampling.max_tokens or shorten the prompt; engine.on_context_overflow=truncate retries once "
        "with a smaller max_tokens"
    )


def is_context_error(message: str, code: str | None = None) -> bool:
    low = message.lower()
    return code == "context_length_exceeded" or any(h in low for h in _CONTEXT_HINTS)


def parse_context_overflow(message: str) -> ContextOverflow | None:
    """Parse the token numbers out of a context-length message, or None if it has none we know."""
    for pattern, names in _CONTEXT_PATTERNS:
        m = pattern.search(message)
        if m:
            vals = dict(zip(names, (int(g) if g.isdigit() else None for g in m.groups()), strict=True))
            return ContextOverflow(vals["n"], vals["c"], vals.get("m"))
    return None


async def with_context_fallback(
    send: Callable[[int], Awaitable[list[Completion]]], max_tokens: int, *, on_overflow: str, name: str
) -> list[Completion]:
    """Call `send(max_tokens)`; on a ContextLengthError with `on_overflow == "truncate"` retry
    once with the largest cap that fits (context − input − 1, parsed from the server's message),
    marking each completion's `meta["max_tokens_reduced_to"]`.

    Re-raises when the mode is "error", when the message has no numbers, or when even one token
    would not fit.
    """
    try:
        return await send(max_tokens)
    except ContextLengthError as e:
        if on_overflow != "truncate":
            raise
        overflow = parse_context_overflow(str(e))
        fit = overflow.fitting_max_tokens() if overflow else 0
        if not 1 <= fit < max_tokens:
            raise ContextLengthError(f"{e} [truncate: no smaller max_tokens fits]", e.status) from e
        logger.warning("%s: prompt of %d tokens + max_tokens=%d exceeds the context of %d; retrying with max_tokens=%d",
                       name, overflow.input_tokens, max_tokens, overflow.context_length, fit)  # fmt: skip
    out = await send(fit)
    for c in out:
        c.meta["max_tokens_reduced_to"] = fit
    return out
