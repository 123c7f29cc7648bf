"""Engine config schemas, one per engine (`engine=sim|sglang|openai`), and `ENGINE_SCHEMAS`,
the table of them by engine name.

Each schema holds only the keys its engine reads, so a key meant for another engine fails at
compose time instead of being silently ignored. The engine classes register under the same names
(`pdr.engines.registry.register_engine`); this layer never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdr.errors import ConfigError, check_choice


@dataclass
class EngineConfig:
    name: str = "sim"
    model: str = "sim-reasoner"
    # Engine calls in flight; a fork with n branches takes n slots. The HTTP engines default to
    # null = the server's capacity where it tells (SGLangEngineConfig, OpenAIEngineConfig), else 64.
    max_concurrency: int | None = 64
    # The model's context window in tokens, for planning every step before the first call
    # (pdr/strategies/plan.py). null: what the server reports (SGLang /server_info), else unchecked.
    context_length: int | None = None
    timeout_s: float = 600.0  # per request
    max_retries: int = 3  # on retryable failures only (503, resets, timeouts)
    # Fraction of problem-samples allowed to end in status "error" before the run fails.
    max_error_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
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


def _check_http_client(cfg: SGLangEngineConfig | OpenAIEngineConfig) -> None:
    """Checks shared by the two HTTP engines (pure: no I/O)."""
    if not cfg.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"engine.url={cfg.url!r}: must start with http:// or https:// (e.g. http://127.0.0.1:30000)"
        )
    if cfg.api_key_env is not None and not cfg.api_key_env.strip():
        raise ConfigError(
            "engine.api_key_env='': give the NAME of an environment variable, or null for no key"
        )
    check_choice("engine.fork", cfg.fork, ("n", "fanout"))
    check_choice("engine.on_context_overflow", cfg.on_context_overflow, ("error", "truncate"))
    if cfg.max_n < 1:
        raise ConfigError(f"engine.max_n={cfg.max_n}: must be >= 1 (the largest n one request asks for)")
    for key in ("ready_timeout_s", "connect_timeout_s", "max_downtime_s"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"engine.{key}={getattr(cfg, key)}: must be > 0 seconds")
    for key in ("health_interval_s", "stall_timeout_s"):
        if getattr(cfg, key) is not None and getattr(cfg, key) <= 0:
            raise ConfigError(
                f"engine.{key}={getattr(cfg, key)}: must be > 0 seconds (or null: no stall watchdog)"
            )
    if (
        cfg.health_interval_s is not None
        and cfg.stall_timeout_s is not None
        and cfg.stall_timeout_s < 2 * cfg.health_interval_s
    ):
        # Silence is counted from the last answer: with less than two intervals, a probe would
        # have no time to answer, and a long healthy generation would be cut as a stall.
        raise ConfigError(
            f"engine.stall_timeout_s={cfg.stall_timeout_s}, engine.health_interval_s={cfg.health_interval_s}: "
            "need stall_timeout_s >= 2 x health_interval_s (the server is probed every health_interval_s); "
            "raise engine.stall_timeout_s or lower engine.health_interval_s"
        )
    if cfg.retry_backoff_s < 0 or cfg.retry_backoff_max_s < cfg.retry_backoff_s:
        raise ConfigError(
            f"engine.retry_backoff_s={cfg.retry_backoff_s}, engine.retry_backoff_max_s={cfg.retry_backoff_max_s}: "
            "need 0 <= retry_backoff_s <= retry_backoff_max_s"
        )
    if cfg.send_seed and cfg.fork == "n":
        # In deterministic mode the seeded sampler hashes (seed, position): all n copies of one
        # request share the seed and would come out identical. Each branch needs its own request.
        raise ConfigError(
            "engine.send_seed=true with engine.fork=n: the n samples of one request would share one seed "
            "(identical outputs on a deterministic server); set engine.fork=fanout"
        )


# Keys pdr sets itself on a managed server's command line; they must not come from server_args.
_RESERVED_SERVER_ARGS = {
    "model_path": "engine.model",
    "model": "engine.model",
    "port": "engine.url",
    "api_key": "engine.api_key_env",
}


@dataclass
class SGLangEngineConfig(EngineConfig):
    """An SGLang server over HTTP. The client never imports the `sglang` package.

    `api=native` posts to /generate with the chat rendered client-side (`chat_template` or
    `tokenizer_path`); `api=chat` posts to /v1/chat/completions and lets the server render.
    See docs/real-servers.md for the trade-off and the GPU set-up.
    """

    name: str = "sglang"
    model: str = "default"  # HF id or path; with launch=true the --model-path; else informational
    url: str = "http://127.0.0.1:30000"
    api_key_env: str | None = None  # NAME of the env var with the key; the key itself is never in config
    api: str = "native"  # "native" (/generate) | "chat" (/v1/chat/completions)
    fork: str = "n"  # "n" (one request with n) | "fanout" (n concurrent requests)
    # Native API: how messages become the prompt text. A built-in name (chatml, qwen3, llama3), a
    # path to a Jinja chat-template file, or null = tokenizer_path if set, else guessed from the
    # model path (qwen3/qwen/llama-3 families); anything else fails at start with a clear error.
    chat_template: str | None = None
    tokenizer_path: str | None = None  # HF tokenizer for apply_chat_template (needs `transformers`)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {enable_thinking: false}
    # Send GenRequest.seed (+ branch) as `sampling_seed`. SGLang honours it only on servers started
    # with --enable-deterministic-inference; needs fork=fanout (see _check_http_client).
    send_seed: bool = False
    # Ask for the sampled tokens' ids and logprobs (for RL rollouts, pdr.rollout) and keep them in
    # each completion's meta: native /generate `return_logprob`, chat `logprobs`. Off by default
    # (bigger answers and call journal); on, it is part of the call-cache key.
    return_logprobs: bool = False
    on_context_overflow: str = "error"  # "error" | "truncate" (retry once with max_tokens cut to fit)
    ready_timeout_s: float = 120.0  # start(): wait this long for an external server's /health_generate
    connect_timeout_s: float = 10.0
    # null = what the server says it runs at once (SGLang /server_info max_running_requests,
    # llama.cpp /props total_slots, llama-cpp-python: 1), else 64. More in flight than the
    # server runs only queues on the server, where the wait would count against timeout_s.
    max_concurrency: int | None = None
    # The largest n one request asks for; a wider fork is split into several requests.
    max_n: int = 64
    # While the server is unreachable (restart, model reload), poll it and resume when it is
    # back, for up to this long; then the requests fail (and the run stops with how to resume).
    max_downtime_s: float = 600.0
    # The stall watchdog: while requests are in flight, GET the server's liveness endpoint (SGLang
    # /health; OpenAI-compatible: /health at the URL's root) every health_interval_s. If nothing
    # answers for stall_timeout_s (a hung server), the requests are cut and handled as downtime
    # above, instead of each waiting out timeout_s. null (either) = off. docs/real-servers.md §8.
    health_interval_s: float | None = 10.0
    stall_timeout_s: float | None = 60.0
    retry_backoff_s: float = 0.5  # first retry delay; doubles per retry, with jitter
    retry_backoff_max_s: float = 30.0
    # Managed server (engine.launch=true): pdr starts it, waits for readiness, stops it at the end.
    launch: bool = False
    launch_command: list[str] = field(default_factory=list)  # [] = [python, -m, sglang.launch_server]
    # Server flags: {reasoning_parser: qwen3} -> --reasoning-parser qwen3 (true = bare flag).
    server_args: dict[str, Any] = field(default_factory=dict)
    launch_env: dict[str, str] = field(default_factory=dict)  # extra env, e.g. {CUDA_VISIBLE_DEVICES: "0"}
    startup_timeout_s: float = 1800.0  # model download + load + CUDA-graph capture
    stop_grace_s: float = 30.0  # SIGTERM, then SIGKILL the process group after this long

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("engine.api", self.api, ("native", "chat"))
        _check_http_client(self)
        if self.startup_timeout_s <= 0 or self.stop_grace_s < 0:
            raise ConfigError(
                f"engine.startup_timeout_s={self.startup_timeout_s}, engine.stop_grace_s={self.stop_grace_s}: "
                "must be > 0 and >= 0"
            )
        for key in self.server_args:
            norm = str(key).lstrip("-").replace("-", "_")
            if norm in _RESERVED_SERVER_ARGS:
                raise ConfigError(
                    f"engine.server_args.{key}: set by pdr, use {_RESERVED_SERVER_ARGS[norm]} instead"
                )
        if self.launch and self.model == "default":
            raise ConfigError(
                "engine.launch=true needs engine.model (the --model-path), e.g. engine.model=Qwen/Qwen3-8B"
            )


@dataclass
class OpenAIEngineConfig(EngineConfig):
    """Any OpenAI-compatible server (vLLM, SGLang's /v1, hosted APIs)."""

    name: str = "openai"
    model: str = "default"  # "default" = the only model the server lists (error if it lists several)
    url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    fork: str = "n"  # "n" | "fanout" (for servers without n support)
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into every request body
    # Where the provider reads a thinking budget (a dotted path into the body), so that
    # sampling.thinking_tokens is enforced by the server: e.g. Gemini's OpenAI-compatible endpoint
    # "google.thinking_config.thinking_budget". null: not enforceable here (warned once).
    thinking_budget_field: str | None = None
    # The body field of the generation cap. "auto": `max_tokens` (the one vLLM, SGLang, llama.cpp
    # and hosted APIs all read; llama.cpp drops `max_completion_tokens` silently), switching to
    # `max_completion_tokens` when the server asks for it or ignores the cap.
    max_tokens_field: str = "auto"  # "auto" | "max_tokens" | "max_completion_tokens"
    send_seed: bool = False  # send GenRequest.seed (+ branch) as `seed`; needs fork=fanout
    # Ask for logprobs (`logprobs: true, top_logprobs: 0`) and keep ids/logprobs in each
    # completion's meta (pdr.rollout). Token ids need a server that sends them: vLLM with
    # extra_body {return_token_ids: true} (or return_tokens_as_token_ids); see docs/rl-online.md.
    return_logprobs: bool = False
    on_context_overflow: str = "error"  # "error" | "truncate"
    ready_timeout_s: float = 60.0  # start(): wait this long for GET /models
    connect_timeout_s: float = 10.0
    # null = what the server says it runs at once (SGLang /server_info max_running_requests,
    # llama.cpp /props total_slots, llama-cpp-python: 1), else 64. More in flight than the
    # server runs only queues on the server, where the wait would count against timeout_s.
    max_concurrency: int | None = None
    # The largest n one request asks for; a wider fork is split into several requests.
    max_n: int = 64
    # While the server is unreachable (restart, model reload), poll it and resume when it is
    # back, for up to this long; then the requests fail (and the run stops with how to resume).
    max_downtime_s: float = 600.0
    # The stall watchdog: while requests are in flight, GET the server's liveness endpoint (SGLang
    # /health; OpenAI-compatible: /health at the URL's root) every health_interval_s. If nothing
    # answers for stall_timeout_s (a hung server), the requests are cut and handled as downtime
    # above, instead of each waiting out timeout_s. null (either) = off. docs/real-servers.md §8.
    health_interval_s: float | None = 10.0
    stall_timeout_s: float | None = 60.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(
            "engine.max_tokens_field", self.max_tokens_field, ("auto", "max_tokens", "max_completion_tokens")
        )
        _check_http_client(self)
        if self.thinking_budget_field is not None and not all(self.thinking_budget_field.split(".")):
            raise ConfigError(
                f"engine.thinking_budget_field={self.thinking_budget_field!r}: a dotted path into the request "
                "body, e.g. google.thinking_config.thinking_budget (or null)"
            )


# Engine name -> schema. `register_configs()` stores each as `<name>_schema` in Hydra's engine
# group (conf/engine/<name>.yaml builds on it); `pdr.engines.registry` imports the engine
# `pdr.engines.<name>` on demand for a name listed here.
ENGINE_SCHEMAS: dict[str, type[EngineConfig]] = {
    "sim": SimEngineConfig,
    "sglang": SGLangEngineConfig,
    "openai": OpenAIEngineConfig,
}
