"""`engine=openai`: any OpenAI-compatible /v1/chat/completions server (vLLM, SGLang's /v1,
hosted APIs). The protocol itself (request body, answer parsing, usage accounting) is
`pdr.engines.chat_api`, shared with `engine=sglang api=chat`.
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
from pdr.engines.http import HttpEngine, read_api_key
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

    async def start(self) -> None:
        """Read the key, open the pool, wait for GET /models (≤ ready_timeout_s) and resolve the model."""
        await self.open_http(read_api_key(self.cfg.api_key_env))
        try:
            listing = await self._wait_models()
            self.served_models = [
                str(m.get("id"))
                for m in (listing or {}).get("data", [])
                if isinstance(m, dict) and m.get("id")
            ]
            self.model = self._resolve_model()
        except BaseException:
            await self.close()
            raise

    async def _wait_models(self) -> dict[str, Any] | None:
        """GET /models until it answers ({} if the server has no such route)."""
        http = self._require_http()
        last: EngineUnavailable | None = None

        async def probe() -> dict[str, Any] | None:
            nonlocal last
            try:
                data = await http.request_json("GET", "/models", retry=False)
            except EngineRequestError as e:
                if e.status in (404, 405):
                    logger.info("%s: %s has no /models route; not checking engine.model", self.name, self.url)
                    return {}
                raise
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
        return f"openai|model={self.model}|url={self.url}"

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
        }

    def _sender(self, request: GenRequest) -> Callable[[int], Awaitable[list[Completion]]]:
        http = self._require_http()
        cfg = self.cfg
        if request.sampling.thinking_tokens is not None:
            thinking.warn_not_enforced(self.name, "chat")

        async def send(max_tokens: int) -> list[Completion]:
            body = chat_body(
                request,
                model=self.model,
                max_tokens=max_tokens,
                max_tokens_field=cfg.max_tokens_field,
                seed=request.seed if cfg.send_seed else None,
                extra=cfg.extra_body,
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
                data, request.n, client_latency_s=time.monotonic() - t0, name=self.name
            )

        return send
