"""`engine=openai`: any OpenAI-compatible /v1/chat/completions server (vLLM, SGLang's /v1,
hosted APIs). Also home of the chat-completions request/response code that `SGLangEngine` uses
with `api=chat`.

Usage accounting for a choice (`parse_chat_response`):

* prompt tokens: `usage.prompt_tokens` for every choice — servers count the prompt once per
  prompt even when `n > 1`, and each choice did see the whole prompt;
* completion / reasoning / cached tokens: the choice's own `meta_info` when the server sends it
  (SGLang with `return_meta_info`); otherwise `usage.completion_tokens` (and `reasoning_tokens`)
  split over the choices in proportion to their text length in characters, summing exactly to the
  reported total (marked `meta["usage_split"] = "proportional"`). Cached tokens without meta:
  `prompt_tokens_details.cached_tokens`, taken as per-prompt unless it exceeds the prompt length,
  in which case it was summed over the choices (older SGLang) and is divided by n.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from pdr.config.engines import OpenAIEngineConfig
from pdr.engines.base import BaseEngine, Completion, GenRequest, split_thinking
from pdr.engines.http import (
    HttpClient,
    largest_remainder_split,
    read_api_key,
    with_context_fallback,
)
from pdr.errors import ConfigError, EngineRequestError, EngineUnavailable

logger = logging.getLogger(__name__)

_FINISH = {"stop": "stop", "length": "length", "abort": "abort"}


def chat_body(
    request: GenRequest,
    *,
    model: str,
    max_tokens: int,
    max_tokens_field: str = "max_completion_tokens",
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The /v1/chat/completions body for one prompt sampled `request.n` times.

    The generation cap is always sent (servers' defaults differ: SGLang's chat default is "until
    the context is full"); temperature and top_p are always sent so server-side generation_config
    defaults never apply silently.
    """
    s = request.sampling
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        max_tokens_field: max_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
    }
    if request.n != 1:
        body["n"] = request.n
    if s.top_k is not None:
        body["top_k"] = s.top_k  # an extension (SGLang, vLLM); hosted OpenAI rejects it
    if s.stop:
        body["stop"] = list(s.stop)
    if seed is not None:
        body["seed"] = seed
    if extra:
        body.update(extra)
    return body


def parse_chat_response(data: Any, n: int, *, client_latency_s: float, name: str) -> list[Completion]:
    """Completions in choice-index order (exactly `n`), with usage as described in the module
    docstring. Raises EngineRequestError on a malformed body."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise EngineRequestError(f"{name}: malformed chat response (no choices): {str(data)[:200]}")
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    if len(choices) != n:
        raise EngineRequestError(f"{name}: asked for n={n} choices, the server returned {len(choices)}")
    usage = data.get("usage") or {}
    texts: list[tuple[str | None, str]] = []
    for ch in choices:
        msg = ch.get("message") if isinstance(ch, dict) else None
        if not isinstance(msg, dict):
            raise EngineRequestError(f"{name}: malformed chat choice: {str(ch)[:200]}")
        content = msg.get("content") or ""
        reasoning = msg.get("reasoning_content")
        if reasoning is None:
            reasoning = msg.get("reasoning")  # vLLM and some gateways
        if reasoning is None:
            # No reasoning parser on the server: the think block is still in the content.
            reasoning, content = split_thinking(content)
        texts.append((reasoning, content))

    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    metas = [ch.get("meta_info") if isinstance(ch.get("meta_info"), dict) else None for ch in choices]
    have_meta = all(m is not None and "completion_tokens" in m for m in metas)
    if not have_meta:
        lengths = [len(c) + len(r or "") for r, c in texts]
        completion = largest_remainder_split(int(usage.get("completion_tokens") or 0), lengths)
        details = usage.get("completion_tokens_details") or {}
        r_total = usage.get("reasoning_tokens") or details.get("reasoning_tokens") or 0
        reasoning_split = largest_remainder_split(int(r_total), [len(r or "") for r, _ in texts])
        cached_total = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        cached_each = cached_total // n if n > 1 and cached_total > prompt_tokens else cached_total
        cached_each = min(cached_each, prompt_tokens) if prompt_tokens else cached_each

    out = []
    for i, (ch, (reasoning, content)) in enumerate(zip(choices, texts, strict=True)):
        raw_finish = ch.get("finish_reason")
        meta: dict[str, Any] = {"id": data.get("id"), "finish_reason_raw": raw_finish}
        if ch.get("matched_stop") is not None:
            meta["matched_stop"] = ch["matched_stop"]
        mi = metas[i]
        if have_meta and mi is not None:
            comp = Completion(
                text=content,
                reasoning=reasoning,
                prompt_tokens=int(mi.get("prompt_tokens") or prompt_tokens),
                completion_tokens=int(mi.get("completion_tokens") or 0),
                cached_tokens=int(mi.get("cached_tokens") or 0),
                reasoning_tokens=int(mi.get("reasoning_tokens") or 0),
                finish_reason=_FINISH.get(str(raw_finish), "stop"),
                latency_s=float(mi.get("e2e_latency") or client_latency_s),
                meta=meta,
            )
        else:
            if n > 1:
                meta["usage_split"] = "proportional"
            comp = Completion(
                text=content,
                reasoning=reasoning,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion[i],
                cached_tokens=cached_each,
                reasoning_tokens=reasoning_split[i],
                finish_reason=_FINISH.get(str(raw_finish), "stop"),
                latency_s=client_latency_s,
                meta=meta,
            )
        meta["client_latency_s"] = round(client_latency_s, 6)
        out.append(comp)
    return out


class OpenAIEngine(BaseEngine):
    """An OpenAI-compatible chat server. `fork=n` sends one request with `n`; `fork=fanout`
    sends n concurrent n=1 requests (for servers without `n`). Call `start()` first.

    Retries, timeouts and error mapping: `pdr.engines.http`. A 404 for the model becomes an
    EngineRequestError naming `engine.model` and what the server lists.
    """

    name = "openai"
    simulated = False

    def __init__(self, cfg: OpenAIEngineConfig, run_dir: Path | None = None):
        super().__init__(cfg.max_concurrency)
        self.cfg = cfg
        self.run_dir = run_dir
        self.supports_n = cfg.fork == "n"
        self.url = cfg.url.rstrip("/")
        self.model = cfg.model
        self.served_models: list[str] = []
        self._http: HttpClient | None = None

    async def start(self) -> None:
        """Read the key, open the pool, wait for GET /models (≤ ready_timeout_s) and resolve the model."""
        cfg = self.cfg
        api_key = read_api_key(cfg.api_key_env)
        self._http = HttpClient.for_engine(self.url, self.name, cfg, api_key)
        await self._http.start()
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
        """GET /models until it answers (None if the server has no such route)."""
        http = self._require_http()
        deadline = time.monotonic() + self.cfg.ready_timeout_s
        delay = 0.5
        while True:
            try:
                data = await http.request_json("GET", "/models", retry=False)
                return data if isinstance(data, dict) else None
            except EngineRequestError as e:
                if e.status in (404, 405):
                    logger.info("%s: %s has no /models route; not checking engine.model", self.name, self.url)
                    return None
                raise
            except EngineUnavailable as e:
                if time.monotonic() + delay > deadline:
                    raise EngineUnavailable(
                        f"{e} — server at {self.url} not ready after engine.ready_timeout_s={self.cfg.ready_timeout_s:g} s"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 1.5)

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

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _require_http(self) -> HttpClient:
        if self._http is None:
            raise EngineRequestError(f"{self.name}: engine not started (await engine.start() first)")
        return self._http

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
            "retries": self._http.retries if self._http else 0,
        }

    async def _generate(self, request: GenRequest) -> list[Completion]:
        http = self._require_http()
        cfg = self.cfg

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

        out, reduced = await with_context_fallback(
            send, request.sampling.max_tokens, on_overflow=cfg.on_context_overflow, name=self.name
        )
        if reduced is not None:
            for c in out:
                c.meta["max_tokens_reduced_to"] = reduced
        return out
