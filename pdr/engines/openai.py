"""`engine=openai`: any OpenAI-compatible /v1/chat/completions server (vLLM, SGLang's /v1,
llama.cpp, hosted APIs). The protocol itself (request body, answer parsing, usage accounting) is
`pdr.engines.chat_api`, shared with `engine=sglang api=chat`.

What servers differ in, and what this engine does about it:

* The cap field. `max_tokens` is read by all of them; `max_completion_tokens` is dropped
  silently by llama.cpp's servers (which then generate to the context limit), and required
  instead of `max_tokens` by OpenAI's reasoning models. `engine.max_tokens_field=auto` sends
  `max_tokens`, switches to `max_completion_tokens` when a 400 asks for it, and checks every
  answer: a completion longer than its cap means the server ignored the field, so the other
  field is tried once (the over-long answer is discarded), after which it is an error naming
  the fix. An explicit field is checked the same way, without the switch.
* `n`: see `HttpEngine` (a server that ignores it is detected on the first fork).
* Capacity: llama.cpp's C++ server reports its slots at `/props` (`total_slots`);
  llama-cpp-python runs one request at a time behind a lock and says so only through its
  OpenAPI title. Others (vLLM, hosted): `engine.max_concurrency` or 64.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pdr.config.engines import OpenAIEngineConfig
from pdr.engines import thinking
from pdr.engines.base import Completion, GenRequest
from pdr.engines.chat_api import chat_body, parse_chat_response
from pdr.engines.http import UNREACHABLE_S, ServerUnreachable, read_api_key
from pdr.engines.http_engine import HttpEngine
from pdr.engines.registry import register_engine
from pdr.engines.retry import poll_until
from pdr.errors import ConfigError, EngineRequestError, EngineUnavailable

logger = logging.getLogger(__name__)


@register_engine("openai", OpenAIEngineConfig)
class OpenAIEngine(HttpEngine):
    """An OpenAI-compatible chat server. `fork=n` sends one request with `n`; `fork=fanout`
    sends n concurrent n=1 requests (for servers without `n`). Call `start()` first.

    Retries, timeouts and error mapping: `pdr.engines.http`. A 404 for the model becomes an
    EngineRequestError naming `engine.model` and what the server lists.
    """

    name = "openai"
    cfg: OpenAIEngineConfig

    def __init__(self, cfg: OpenAIEngineConfig, problems: Any = (), *, run_dir: Any = None):
        super().__init__(cfg, problems, run_dir=run_dir)
        self.model = cfg.model
        self.served_models: list[str] = []
        self.server_kind: str | None = None
        auto = cfg.max_tokens_field == "auto"
        self.cap_field = "max_tokens" if auto else cfg.max_tokens_field
        # Cap fields still worth trying when the server ignores or rejects the current one.
        self._cap_fields_left = {"max_completion_tokens"} if auto else set()

    async def start(self) -> None:
        """Read the key, open the pool, wait for GET /models (≤ ready_timeout_s) and resolve the model."""
        http = await self.open_http(read_api_key(self.cfg.api_key_env))
        http.health_path = "/models"
        try:
            listing = await self._wait_models()
            self.served_models = [
                str(m.get("id"))
                for m in (listing or {}).get("data", [])
                if isinstance(m, dict) and m.get("id")
            ]
            self.model = self._resolve_model()
            capacity, source = await self._read_capacity()
            self.set_capacity(capacity, source)
            # The stall watchdog's probe. /models is no good: llama-cpp-python serves it behind the
            # lock its generation holds (it would take a long generation for a hang); its /health
            # is a 404 that its event loop answers while the model generates (docs/real-servers.md §8).
            await http.check_liveness(self._root() + "/health")
        except BaseException:
            await self.close()
            raise

    async def _read_capacity(self) -> tuple[int | None, str]:
        """(requests the server runs at once, where that came from), or (None, "") when it does
        not say. Reads the server root (the URL without /v1): llama.cpp's /props, else the
        OpenAPI title of llama-cpp-python (one Llama behind one lock: capacity 1)."""
        http = self._require_http()
        root = self._root()
        for path, read in (("/props", _slots_from_props), ("/openapi.json", _slots_from_openapi)):
            try:
                data = await http.request_json("GET", root + path, retry=False)
            except (EngineRequestError, EngineUnavailable):
                continue
            found = read(data)
            if found is not None:
                self.server_kind = found[1]
                return found[0], f"{found[1]} ({path})"
        return None, ""

    def _root(self) -> str:
        """The server root: the URL without its /v1."""
        return self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url

    async def _wait_models(self) -> dict[str, Any] | None:
        """GET /models until it answers ({} if the server has no such route)."""
        http = self._require_http()
        last: EngineUnavailable | None = None
        t0 = time.monotonic()

        async def probe() -> dict[str, Any] | None:
            nonlocal last
            try:
                data = await http.request_json("GET", "/models", retry=False)
            except EngineRequestError as e:
                if e.status in (404, 405):
                    logger.info("%s: %s has no /models route; not checking engine.model", self.name, self.url)
                    return {}
                raise
            except ServerUnreachable as e:
                last = e
                if e.refused and time.monotonic() - t0 >= UNREACHABLE_S:
                    raise ServerUnreachable(
                        f"{self.name}: nothing listens at {self.url} (connection refused for {UNREACHABLE_S:g} s): "
                        "check engine.url and that the server is running",
                        refused=True,
                    ) from None
                return None
            except EngineUnavailable as e:
                last = e
                return None
            return data if isinstance(data, dict) else {}

        return await poll_until(
            probe,
            timeout_s=self.cfg.ready_timeout_s,
            first_s=0.5,
            max_s=5.0,
            on_timeout=lambda: EngineUnavailable(
                f"{last} — server at {self.url} not ready after engine.ready_timeout_s={self.cfg.ready_timeout_s:g} s"
            ),
        )

    def _resolve_model(self) -> str:
        listed = self.served_models
        if self.cfg.model == "default":
            if len(listed) == 1:
                return listed[0]
            raise ConfigError(
                f"engine.model=default but the server at {self.url} lists "
                + (f"{len(listed)} models ({', '.join(listed[:10])})" if listed else "no models")
                + ": set engine.model=<name>"
            )
        if listed and self.cfg.model not in listed:
            raise ConfigError(
                f"engine.model={self.cfg.model!r} is not served at {self.url}; it lists: {', '.join(listed[:10])}"
                + (" ..." if len(listed) > 10 else "")
            )
        return self.cfg.model

    def identity(self) -> str:
        # "|logprobs" only when asked: the call-cache keys of every other configuration stay valid.
        return f"openai|model={self.model}|url={self.url}" + ("|logprobs" if self.cfg.return_logprobs else "")

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "api": "chat",
            "url": self.url,
            "model": self.model,
            "served_models": self.served_models[:10],
            "fork": self.cfg.fork,
            "send_seed": self.cfg.send_seed,
            "retries": self.retries,
            "max_tokens_field": self.cap_field,
            "return_logprobs": self.cfg.return_logprobs,
            "server_kind": self.server_kind,
            **self.client_info(),
        }

    def _sender(self, request: GenRequest) -> Callable[[int], Awaitable[list[Completion]]]:
        http = self._require_http()
        cfg = self.cfg
        extra = cfg.extra_body
        if request.sampling.thinking_tokens is not None:
            if cfg.thinking_budget_field:  # the provider enforces the cap, in its own field
                extra = thinking.with_budget_field(extra, cfg.thinking_budget_field, request.sampling.thinking_tokens)
            else:
                thinking.warn_not_enforced(self.name, "chat")

        async def post(max_tokens: int, field: str) -> list[Completion]:
            body = chat_body(
                request,
                model=self.model,
                max_tokens=max_tokens,
                max_tokens_field=field,
                seed=request.seed if cfg.send_seed else None,
                extra=extra,
                logprobs=cfg.return_logprobs,
            )
            t0 = time.monotonic()
            try:
                data = await http.request_json("POST", "/chat/completions", body)
            except EngineRequestError as e:
                if e.status == 404:
                    raise EngineRequestError(
                        f"{e} — engine.model={self.model!r} not found at {self.url} "
                        "(set engine.model to a model the server lists at /models)",
                        404,
                    ) from None
                raise
            return parse_chat_response(
                data,
                request.n,
                client_latency_s=time.monotonic() - t0,
                name=self.name,
                logprobs=cfg.return_logprobs,
            )

        async def send(max_tokens: int) -> list[Completion]:
            while True:
                field = self.cap_field
                try:
                    out = await post(max_tokens, field)
                except EngineRequestError as e:
                    other = _other_cap_field(field)
                    if e.status == 400 and other in self._cap_fields_left and other in str(e):
                        self._switch_cap_field(field, other, f"the server rejected {field}: {e}")
                        continue
                    raise
                if any(c.meta.get("usage_split") for c in out):  # per-choice counts are estimates
                    over = sum(c.completion_tokens for c in out) // len(out)
                else:
                    over = max((c.completion_tokens for c in out), default=0)
                if over <= max_tokens:
                    return out
                other = _other_cap_field(field)
                if field != self.cap_field:
                    continue  # another request switched the field meanwhile: resend with it
                if other in self._cap_fields_left:
                    self._switch_cap_field(
                        field, other, f"a completion of {over} tokens came back for {field}={max_tokens}"
                    )
                    continue
                raise EngineRequestError(
                    f"{self.name}: the server at {self.url} ignored the generation cap: a completion of {over} "
                    f"tokens for {field}={max_tokens}; set engine.max_tokens_field="
                    f"{other if cfg.max_tokens_field != 'auto' else 'max_tokens'} (or cap the server side)"
                )

        return send

    def _switch_cap_field(self, old: str, new: str, why: str) -> None:
        if self.cap_field == old:
            logger.warning("%s: %s; sending the cap as %s from now on", self.name, why, new)
            self.cap_field = new
            self._cap_fields_left.discard(new)


def _other_cap_field(field: str) -> str:
    return "max_completion_tokens" if field == "max_tokens" else "max_tokens"


def _slots_from_props(data: Any) -> tuple[int, str] | None:
    """llama.cpp's C++ server: GET /props has `total_slots` (its --parallel)."""
    if isinstance(data, dict) and isinstance(data.get("total_slots"), int):
        return data["total_slots"], "llama.cpp server"
    return None


def _slots_from_openapi(data: Any) -> tuple[int, str] | None:
    """llama-cpp-python's server (`python -m llama_cpp.server`) runs one generation at a time
    (one model behind an anyio lock) and exposes no capacity; its OpenAPI title identifies it."""
    title = str(((data or {}).get("info") or {}).get("title", "")) if isinstance(data, dict) else ""
    if "llama.cpp Python" in title:
        return 1, "llama-cpp-python server"
    return None
