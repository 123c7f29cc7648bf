"""Engine config schemas, one per engine (`engine=sim|sglang|openai`).

Each schema holds only the keys its engine reads, so a key meant for another engine fails at
compose time instead of being silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdr.errors import ConfigError


@dataclass
class EngineConfig:
    name: str = "sim"
    model: str = "sim-reasoner"
    max_concurrency: int = 64  # engine calls in flight; a fork with n branches takes n slots
    timeout_s: float = 600.0  # per request
    max_retries: int = 3  # on retryable failures only (503, resets, timeouts)
    # Fraction of problem-samples allowed to end in status "error" before the run fails.
    max_error_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigError(
                f"engine.max_concurrency={self.max_concurrency}: must be >= 1 (e.g. engine.max_concurrency=64)"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"engine.timeout_s={self.timeout_s}: must be > 0 seconds")
        if self.max_retries < 0:
            raise ConfigError(f"engine.max_retries={self.max_retries}: must be >= 0")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ConfigError(f"engine.max_error_rate={self.max_error_rate}: must be in [0, 1]")


@dataclass
class SimEngineConfig(EngineConfig):
    """The embedded simulated reasoning model (see pdr/engines/sim.py). Never a real model's numbers."""

    name: str = "sim"
    model: str = "sim-reasoner"
    # Ability on a logistic scale against per-problem difficulty in [0, 1]: P(correct) of a plain
    # draft = sigmoid(sharpness * (skill - difficulty)).
    skill: float = 0.55
    sharpness: float = 6.0
    # Refine calls copy an answer from the workspace with this probability (anchoring) ...
    anchoring: float = 0.6
    # ... and when copying, a correct candidate weighs (1 + verification) times a wrong one.
    verification: float = 1.5
    # Mean thinking length of a draft on a problem of difficulty 0.5; scales with difficulty.
    think_tokens: int = 900
    answer_tokens: int = 120  # mean length of the visible solution after </think>
    # Optional simulated latency per call: base + per generated token.
    latency_base_ms: float = 0.0
    latency_per_token_ms: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("anchoring",):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"engine.{key}={v}: must be in [0, 1]")
        for key in ("think_tokens", "answer_tokens"):
            v = getattr(self, key)
            if v < 1:
                raise ConfigError(f"engine.{key}={v}: must be >= 1")
        for key in ("sharpness", "verification", "latency_base_ms", "latency_per_token_ms"):
            v = getattr(self, key)
            if v < 0:
                raise ConfigError(f"engine.{key}={v}: must be >= 0")


@dataclass
class SGLangEngineConfig(EngineConfig):
    """An SGLang server over HTTP. The client never imports the `sglang` package."""

    name: str = "sglang"
    model: str = "default"
    url: str = "http://127.0.0.1:30000"
    api_key_env: str | None = None  # NAME of the env var with the key; the key itself is never in config
    api: str = "native"  # "native" (/generate) | "chat" (/v1/chat/completions)
    fork: str = "n"  # "n" (one request with n) | "fanout" (n concurrent requests)
    chat_template: str | None = None  # native API: template name/path when no tokenizer is available
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    launch: bool = False
    server_args: dict[str, Any] = field(default_factory=dict)
    startup_timeout_s: float = 1800.0
    on_context_overflow: str = "error"  # "error" | "truncate"


@dataclass
class OpenAIEngineConfig(EngineConfig):
    """Any OpenAI-compatible server (vLLM, SGLang's /v1, hosted APIs)."""

    name: str = "openai"
    model: str = "default"
    url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    fork: str = "n"  # "n" | "fanout" (for servers without n support)
    extra_body: dict[str, Any] = field(default_factory=dict)
