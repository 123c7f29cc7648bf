"""The small exception hierarchy pdr raises. Retryability is data: see `RETRYABLE_ERRORS`."""

from __future__ import annotations

from collections.abc import Iterable


class PdrError(Exception):
    """Base class of every error pdr raises on purpose."""


class ConfigError(PdrError, ValueError):
    """A configuration value is invalid. The message names the key, the value and the fix."""


class DataError(PdrError, ValueError):
    """A dataset file or row is malformed or missing. The message names the file and line."""


class EngineError(PdrError):
    """Base class of engine failures."""


class EngineUnavailable(EngineError):
    """Transient: the server is unreachable, overloaded (503), reset the connection or timed out.

    Engines retry these with backoff, up to `engine.max_retries`.
    """


class EngineRequestError(EngineError):
    """Permanent for this request: a 4xx other than 408/429, a malformed response. Never retried."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ContextLengthError(EngineRequestError):
    """The prompt (plus the generation cap) exceeds the model's context length."""


class AuthError(EngineRequestError):
    """The server rejected the API key (401/403)."""


class ServerLaunchError(EngineError):
    """A managed server (`engine.launch=true`) failed to start; the message carries its log's tail."""


RETRYABLE_ERRORS: tuple[type[Exception], ...] = (EngineUnavailable,)


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """ConfigError naming the override key, the value, the closest choice and all choices, unless
    `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: unknown{did_you_mean(value, choices)} (choose one of {', '.join(choices)})")
