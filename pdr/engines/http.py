"""HTTP plumbing shared by the real engines (sglang, openai): one pooled client, timeouts,
bounded retries, the mapping of server errors onto `pdr.errors`, and `HttpEngine`, their base.

Retries follow the engines' one policy (`pdr.engines.retry`):

* retried, up to `max_retries` times with exponential backoff and jitter: HTTP 408, 429, 502, 503,
  504, connection errors and resets, and timeouts (a `Retry-After` header is honoured, capped);
* never retried: any other 4xx, 500 (on SGLang a 500 is a deterministic failure, e.g. an unknown
  sampling key on <= 0.5.21), malformed responses.

Error bodies come in three shapes on SGLang (sglang-http-api.md §2.6) and are all read here:
``{"error": {"message": ...}}``, ``{"error": "<text>"}`` and
``{"object": "error", "message": ..., "type": ..., "code": ...}``.

The API key is sent as ``Authorization: Bearer <key>`` and never appears in logs or exception
messages: every message that leaves this module is passed through `HttpClient.redact`.

The transport is aiohttp, and pdr's only HTTP client library (readiness probes of a launched
server included): with hundreds of requests in flight httpx/httpcore cost ~1-2 ms of client CPU
per request (anyio cancel scopes, and a connection pool that rescans every connection on each
request event), aiohttp ~0.2 ms (experiments/benchmarks/bench_client_overhead.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import certifi

from pdr.engines.base import BaseEngine, Completion, GenRequest
from pdr.engines.context import is_context_error, with_context_fallback
from pdr.engines.retry import RETRYABLE_ERRORS, Backoff, poll_until
from pdr.errors import (
    AuthError,
    ConfigError,
    ContextLengthError,
    EngineError,
    EngineRequestError,
    EngineUnavailable,
)

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
_BODY_SNIPPET = 300  # characters of an unparseable error body quoted in messages
# Idle keep-alive connections are dropped after this long: below uvicorn's (SGLang's) 5 s, so a
# connection the server is about to close is not reused (that would be a needless reset + retry).
_KEEPALIVE_S = 4.0


class RetryableHTTPError(EngineUnavailable):
    """A retryable HTTP status (408/429/502/503/504); `retry_after` in seconds if the server said."""

    def __init__(self, message: str, status: int, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def read_api_key(env_name: str | None) -> str | None:
    """The API key from the environment variable *named* `env_name` (None = no key).

    Raises ConfigError naming the variable (never printing a value) when it is unset or empty.
    """
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(
            f"engine.api_key_env={env_name}: environment variable {env_name} is not set or empty "
            f"(export {env_name}=..., or set engine.api_key_env=null for a server without a key)"
        )
    return value


def error_message(body: Any, text: str = "") -> str:
    """The human message of an error body in any of the three SGLang shapes (or OpenAI's).

    Falls back to the raw text (truncated) when the body is not one of them.
    """
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if body.get("message"):
            return str(body["message"])
        if body.get("detail"):  # FastAPI's own 404/405 bodies
            return str(body["detail"])
    text = text.strip()
    return text[:_BODY_SNIPPET] + ("..." if len(text) > _BODY_SNIPPET else "") if text else "(empty body)"


def error_code(body: Any) -> str | None:
    """The machine-readable code of an OpenAI-style error (e.g. "model_not_found"), if any."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("code") is not None:
            return str(err["code"])
        if body.get("code") is not None:
            return str(body["code"])
    return None


class HttpClient:
    """A pooled `aiohttp.ClientSession` with bounded retries; one per engine, created in `start()`.

    `request_json` returns the decoded JSON of a 2xx answer or raises: `EngineUnavailable` after
    the retries are exhausted, `AuthError` on 401/403, `ContextLengthError` on a 400 about context
    length, `EngineRequestError` for the rest. Each attempt is bounded by `timeout_s` (total time,
    not just between bytes).
    """

    @classmethod
    def for_engine(cls, base_url: str, name: str, cfg: Any, api_key: str | None) -> HttpClient:
        """The client of an engine config (SGLang or OpenAI): its timeouts, retries and limits.
        Connections: `max_concurrency` plus a few for readiness and info calls."""
        return cls(
            base_url,
            name=name,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            max_connections=cfg.max_concurrency + 4,
            api_key=api_key,
            api_key_env=cfg.api_key_env,
            connect_timeout_s=cfg.connect_timeout_s,
            backoff_s=cfg.retry_backoff_s,
            backoff_max_s=cfg.retry_backoff_max_s,
        )

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        timeout_s: float,
        max_retries: int,
        max_connections: int,
        api_key: str | None = None,
        api_key_env: str | None = None,
        connect_timeout_s: float = 10.0,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff = Backoff(backoff_s, backoff_max_s)
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._max_connections = max_connections
        self._connect_timeout_s = min(connect_timeout_s, timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self.retries = 0  # retries performed over the client's life (for info and tests)

    async def start(self) -> None:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=_KEEPALIVE_S,
            ssl=_ssl_context() if self.base_url.startswith("https:") else True,
        )
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self._connect_timeout_s),
            # Only our own traffic: no proxies from the environment (an http_proxy set on a
            # cluster commonly breaks requests to localhost servers).
            trust_env=False,
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise EngineError(f"{self.name}: the engine is not started (call `await engine.start()` first)")
        return self._session

    def redact(self, text: str) -> str:
        """`text` with the API key (if any) replaced by ***."""
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    async def request_json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        retry: bool = True,
        body_factory: Callable[[], Any] | None = None,
    ) -> Any:
        """Send one request (retrying transient failures) and return the decoded JSON body.

        `body_factory`, when given, builds the body afresh for every attempt (e.g. a new request
        id: a timed-out request may still be in flight on the server under the old one).

        A plain loop over `self.backoff`, not tenacity: see `pdr.engines.retry` for why."""
        attempts = self.max_retries + 1 if retry else 1
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(method, path, body_factory() if body_factory else body)
            except RETRYABLE_ERRORS as e:
                last = e
                if attempt == attempts:
                    break
                delay = self.backoff.delay(attempt, getattr(e, "retry_after", None))
                self.retries += 1
                logger.warning("%s; retry %d/%d in %.2f s", e, attempt, self.max_retries, delay)
                await asyncio.sleep(delay)
        if attempts == 1 or last is None:
            raise last or EngineUnavailable(f"{self.name}: {method} {path} failed")
        raise EngineUnavailable(f"{last} (gave up after {attempts} attempts)") from last

    async def _attempt(self, method: str, path: str, body: Any) -> Any:
        url = f"{self.base_url}{path}"
        session = self._require_session()
        try:
            async with asyncio.timeout(self.timeout_s), session.request(method, url, json=body) as resp:
                status = resp.status
                text = (await resp.read()).decode("utf-8", "replace")
                retry_after = resp.headers.get("retry-after")
        except TimeoutError as e:  # aiohttp's ServerTimeoutError is a TimeoutError too
            raise EngineUnavailable(
                f"{self.name}: {method} {url} timed out after {self.timeout_s:g} s ({type(e).__name__}; "
                "raise engine.timeout_s for long generations)"
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            # Connect errors, resets, a body cut short: transient.
            raise EngineUnavailable(
                self.redact(
                    f"{self.name}: {method} {url} failed: {type(e).__name__}: {e or 'connection error'}"
                )
            ) from None
        except aiohttp.ClientError as e:  # malformed responses and the like: not worth retrying
            raise EngineRequestError(
                self.redact(f"{self.name}: {method} {url} failed: {type(e).__name__}: {e}")
            ) from None
        return self._decode(method, url, status, text, retry_after)

    def _decode(self, method: str, url: str, status: int, text: str, retry_after: str | None) -> Any:
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if 200 <= status < 300:
            if data is None:
                raise EngineRequestError(
                    self.redact(
                        f"{self.name}: {method} {url}: HTTP {status} with a non-JSON body: {text[:_BODY_SNIPPET]!r}"
                    ),
                    status,
                )
            return data
        raise self.error_for(status, data, text, method, url, retry_after)

    def error_for(
        self, status: int, data: Any, text: str, method: str, url: str, retry_after: str | None = None
    ) -> EngineError:
        """The exception for a non-2xx answer (see the module docstring for the mapping)."""
        msg = error_message(data, text)
        where = f"{self.name}: {method} {url}: HTTP {status}"
        if status in RETRYABLE_STATUS:
            return RetryableHTTPError(self.redact(f"{where}: {msg}"), status, _parse_retry_after(retry_after))
        if status in (401, 403):
            hint = (
                f"check the key in ${self._api_key_env}"
                if self._api_key_env
                else "the server needs a key: set engine.api_key_env"
            )
            return AuthError(self.redact(f"{where}: {msg} ({hint})"), status)
        if status in (400, 413, 422) and is_context_error(msg, error_code(data)):
            return ContextLengthError(
                self.redact(
                    f"{where}: the prompt does not fit the model's context: {msg} "
                    "(lower sampling.max_tokens or shorten the prompt; engine.on_context_overflow=truncate "
                    "retries once with a smaller max_tokens)"
                ),
                status,
            )
        return EngineRequestError(self.redact(f"{where}: {msg}"), status)

    async def get_status(self, path: str, *, timeout_s: float = 5.0) -> int:
        """One GET without retries; returns the HTTP status (body ignored). Transport failures
        and timeouts raise EngineUnavailable. Used for readiness probes."""
        session = self._require_session()
        try:
            async with asyncio.timeout(timeout_s), session.get(f"{self.base_url}{path}") as resp:
                await resp.read()
                return resp.status
        except TimeoutError:
            raise EngineUnavailable(f"{self.name}: GET {self.base_url}{path} timed out") from None
        except aiohttp.ClientError as e:
            raise EngineUnavailable(f"{self.name}: GET {self.base_url}{path}: {type(e).__name__}") from None

    async def get_json_optional(self, *paths: str) -> dict[str, Any] | None:
        """GET the first of `paths` that exists (404 → try the next; older servers only have the
        deprecated aliases). None if none exists. Other errors raise as in `request_json`."""
        for path in paths:
            try:
                data = await self.request_json("GET", path)
            except EngineRequestError as e:
                if e.status in (404, 405):
                    continue
                raise
            return data if isinstance(data, dict) else {"value": data}
        return None


async def wait_ready(
    http: HttpClient,
    *,
    timeout_s: float,
    paths: tuple[str, ...] = ("/health_generate", "/health"),
    interval_s: float = 0.25,
    max_interval_s: float = 5.0,
) -> str:
    """Poll GET `paths[0]` until it answers 200 (a 404 moves on to the next path); return the
    path that answered. 503 and connection errors mean "still starting". 401/403 raise AuthError.
    Raises EngineUnavailable after `timeout_s` seconds."""
    idx = 0
    last = "no answer yet"

    async def probe() -> str | None:
        nonlocal idx, last
        while True:
            path = paths[idx]
            try:
                status = await http.get_status(path, timeout_s=min(30.0, max(1.0, timeout_s)))
            except EngineUnavailable as e:
                last = str(e)
                return None
            if status == 200:
                return path
            if status in (404, 405) and idx + 1 < len(paths):
                idx += 1
                continue
            if status in (401, 403):
                raise AuthError(
                    f"{http.name}: GET {http.base_url}{path}: HTTP {status} (health endpoints need no key: is this an SGLang server?)",
                    status,
                )
            last = f"HTTP {status} from {path}"
            return None

    return await poll_until(
        probe,
        timeout_s=timeout_s,
        first_s=interval_s,
        max_s=max_interval_s,
        on_timeout=lambda: EngineUnavailable(
            f"{http.name}: server at {http.base_url} not ready after {timeout_s:g} s ({last}); "
            "is it running? (raise engine.ready_timeout_s while it loads)"
        ),
        progress=lambda: logger.info(
            "%s: waiting for %s to become ready (%s)", http.name, http.base_url, last
        ),
    )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One default SSL context per process, trusting certifi's CA bundle (as the httpx default
    pdr used before): building it costs tens of milliseconds."""
    return ssl.create_default_context(cafile=certifi.where())


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: ignore, the backoff applies


class HttpEngine(BaseEngine):
    """The base of the HTTP engines: config, URL, fork mode, the client (`start()` opens it with
    `open_http`), and generation under `engine.on_context_overflow`.

    Subclasses implement `start()` and `_sender(request)`: a function that sends the request
    with a given generation cap and returns its completions.
    """

    def __init__(self, cfg: Any, problems: Any = (), *, run_dir: Path | None = None):
        super().__init__(cfg.max_concurrency)
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.supports_n = cfg.fork == "n"  # fanout: BaseEngine splits forks into n=1 requests
        self.url = cfg.url.rstrip("/")
        self._http: HttpClient | None = None
        self._retries_before_close = 0

    async def open_http(self, api_key: str | None) -> HttpClient:
        """Open the pooled client to `self.url` with the engine's timeouts and retries."""
        self._http = HttpClient.for_engine(self.url, self.name, self.cfg, api_key)
        await self._http.start()
        return self._http

    async def close(self) -> None:
        """Close the connection pool. Idempotent; `retries` and `info()` still work."""
        if self._http is not None:
            self._retries_before_close = self._http.retries
            await self._http.close()
            self._http = None

    def _require_http(self) -> HttpClient:
        if self._http is None:
            raise EngineRequestError(f"{self.name}: engine not started (await engine.start() first)")
        return self._http

    @property
    def retries(self) -> int:
        """Request retries over the engine's life (for info and tests)."""
        return self._http.retries if self._http is not None else self._retries_before_close

    async def _generate(self, request: GenRequest) -> list[Completion]:
        return await with_context_fallback(
            self._sender(request),
            request.sampling.max_tokens,
            on_overflow=self.cfg.on_context_overflow,
            name=self.name,
        )

    def _sender(self, request: GenRequest) -> Callable[[int], Awaitable[list[Completion]]]:
        raise NotImplementedError
