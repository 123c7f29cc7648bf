"""HTTP plumbing shared by the real engines (sglang, openai): one pooled client, timeouts,
bounded retries and the mapping of server errors onto `pdr.errors` (their base class `HttpEngine`
is in `pdr.engines.http_engine`).

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
import contextlib
import functools
import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import certifi

from pdr.engines.context import is_context_error, overflow_hint
from pdr.engines.liveness import Watchdog
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
# Connection refused this long at start (no managed launch) = nothing listens there: say so
# instead of waiting out engine.ready_timeout_s (a loading server accepts connections or is
# launched by pdr, which waits on the process instead).
UNREACHABLE_S = 10.0


class ServerUnreachable(EngineUnavailable):
    """No answer at the transport level: connection refused, reset or closed mid-request. The
    server may be restarting: requests wait for it (`HttpClient.wait_until_back`) instead of
    spending retry attempts. `refused`: the connection was refused (nothing listens there)."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


class ServerStalled(ServerUnreachable):
    """The stall watchdog (`pdr.engines.liveness`) cut this attempt: the server gave no sign of
    life for `engine.stall_timeout_s` (a hang). Handled as downtime; `body` is what was sent
    (to abort it once the server answers again)."""

    def __init__(self, message: str, body: Any = None):
        super().__init__(message)
        self.body = body


class RequestTimeout(EngineUnavailable):
    """One attempt ran past `engine.timeout_s`; `body` is what was sent (to abort it)."""

    def __init__(self, message: str, body: Any = None):
        super().__init__(message)
        self.body = body


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
            # The engine's limiter bounds requests in flight (its size is known only once the
            # server said its capacity), so the pool itself is unbounded.
            max_connections=0,
            max_downtime_s=cfg.max_downtime_s,
            health_interval_s=cfg.health_interval_s,
            stall_timeout_s=cfg.stall_timeout_s,
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
        max_downtime_s: float = 600.0,
        health_interval_s: float | None = None,
        stall_timeout_s: float | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.max_downtime_s = max_downtime_s
        # GET this path to tell whether the server is back after an outage (the engine sets it:
        # SGLang's readiness endpoint, /models on OpenAI-compatible servers).
        self.health_path = "/health"
        # GET this path to tell whether a busy server still lives (the stall watchdog, and the
        # wait after a stall); it must answer while the server generates (`check_liveness`).
        self.liveness_path = "/health"
        self.watchdog = (
            Watchdog(
                self.alive,
                interval_s=health_interval_s,
                stall_s=stall_timeout_s,
                what=f"{name}: server at {self.base_url}",
            )
            if health_interval_s is not None and stall_timeout_s is not None
            else None
        )
        self.server_down = False  # the last wait for the server gave up (max_downtime_s)
        self._outage: asyncio.Future[float] | None = None
        self.downtime_s = 0.0  # seconds spent waiting for the server over the client's life
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
        if self.watchdog is not None:
            await self.watchdog.close()
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
        on_timeout: Callable[[Any], None] | None = None,
    ) -> Any:
        """Send one request (retrying transient failures) and return the decoded JSON body.

        `body_factory`, when given, builds the body afresh for every attempt (e.g. a new request
        id: a timed-out request may still be in flight on the server under the old one).
        `on_timeout(body)` is called with the body of an attempt that timed out (to abort it on
        the server before the retry), or that the stall watchdog cut (once the server answers
        again).

        Connection failures (`ServerUnreachable`) do not spend attempts while the server is
        down: they wait for it (`wait_until_back`, up to `max_downtime_s`). A stall (the
        watchdog cut the attempt: `ServerStalled`) waits the same way and spends one attempt.

        A plain loop over `self.backoff`, not tenacity: see `pdr.engines.retry` for why."""
        attempts = self.max_retries + 1 if retry else 1
        last: Exception | None = None
        attempt = 0
        while attempt < attempts:
            attempt += 1
            try:
                return await self._attempt(method, path, body_factory() if body_factory else body)
            except ServerUnreachable as e:
                last = e
                if not retry:
                    raise
                # Downtime is measured in time, not attempts: wait for the server (up to
                # max_downtime_s) and try again. An outage that lasted no time at all (the
                # server answers its health check at once) counts as an attempt, so a server
                # that resets every request still ends; so does every stall (a request that
                # hangs the server each time, or a liveness endpoint that does not answer
                # while the server is busy, must not cut and re-send forever).
                waited = await self.wait_until_back(e)
                stalled = isinstance(e, ServerStalled)
                if on_timeout is not None and stalled:
                    on_timeout(e.body)
                self.retries += 1
                if waited > 0 and not stalled:
                    attempt -= 1
                elif attempt < attempts and waited == 0:
                    await asyncio.sleep(self.backoff.delay(attempt))
            except RETRYABLE_ERRORS as e:
                last = e
                if on_timeout is not None and isinstance(e, RequestTimeout):
                    on_timeout(e.body)
                if attempt == attempts:
                    break
                delay = self.backoff.delay(attempt, getattr(e, "retry_after", None))
                self.retries += 1
                logger.warning("%s; retry %d/%d in %.2f s", e, attempt, self.max_retries, delay)
                await asyncio.sleep(delay)
        if attempts == 1 or last is None:
            raise last or EngineUnavailable(f"{self.name}: {method} {path} failed")
        raise EngineUnavailable(f"{last} (gave up after {attempts} attempts)") from last

    async def wait_until_back(self, cause: Exception) -> float:
        """Wait until the server answers `health_path` again; return the seconds waited (0.0 if
        it answered at once). Concurrent callers share one poll. Raises EngineUnavailable after
        `max_downtime_s` of unreachability. After a stall (`ServerStalled`) only an answer to
        `liveness_path` counts: a hung server also accepts connections."""
        if self._outage is None or self._outage.done():
            self._outage = asyncio.ensure_future(self._poll_back(cause))
        return await asyncio.shield(self._outage)

    async def _poll_back(self, cause: Exception) -> float:
        t0 = time.monotonic()
        deadline = t0 + self.max_downtime_s

        async def back() -> bool:
            if not isinstance(cause, ServerStalled):
                return await self.reachable()
            # A resumed server answers its liveness probe at once (SGLang's /health in about
            # 1 s): health_interval_s, at least 2 s, is ample; never past the deadline.
            wait = max(2.0, self.watchdog.interval_s) if self.watchdog is not None else 10.0
            return await self.alive(max(0.5, min(wait, deadline - time.monotonic())))

        if await back():  # at once: counts as an attempt (see request_json)
            self.downtime_s += time.monotonic() - t0
            return 0.0
        logger.warning(
            "%s: server at %s unreachable (%s); waiting up to engine.max_downtime_s=%g s for it to come back",
            self.name, self.base_url, cause, self.max_downtime_s,
        )  # fmt: skip

        async def probe() -> bool | None:
            return True if await back() else None

        self.server_down = True
        await poll_until(
            probe,
            timeout_s=max(0.0, deadline - time.monotonic()),
            first_s=0.25,
            max_s=5.0,
            on_timeout=lambda: EngineUnavailable(
                f"{self.name}: server at {self.base_url} unreachable for engine.max_downtime_s="
                f"{self.max_downtime_s:g} s ({cause}); raise engine.max_downtime_s to wait longer"
            ),
            progress=lambda: logger.info(
                "%s: still waiting for %s (down %.0f s)", self.name, self.base_url, time.monotonic() - t0
            ),
        )
        waited = time.monotonic() - t0
        self.downtime_s += waited
        self.server_down = False
        logger.warning("%s: server at %s is back after %.1f s; resuming", self.name, self.base_url, waited)
        return waited

    async def reachable(self) -> bool:
        """True if the server answers GET `health_path` with anything but a 5xx, or accepts the
        connection but is too busy to answer within 5 s (a one-slot server serialises even its
        /models behind the running generation)."""
        session = self._require_session()
        try:
            async with asyncio.timeout(5.0), session.get(self._url(self.health_path)) as resp:
                await resp.read()
                return resp.status < 500
        except TimeoutError:
            return True
        except aiohttp.ClientError:
            return False

    async def alive(self, timeout_s: float) -> bool:
        """True if the server answers GET `liveness_path` within `timeout_s` with any status
        below 500 (a 404 too: the server's HTTP layer lives). A probe of the stall watchdog."""
        session = self._require_session()
        try:
            async with asyncio.timeout(timeout_s), session.get(self._url(self.liveness_path)) as resp:
                await resp.read()
                return resp.status < 500
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def check_liveness(self, path: str) -> None:
        """Use GET `path` for the stall watchdog if the server answers it now (idle: at once);
        else switch the watchdog off, with a warning (it would take every long generation for
        a stall)."""
        self.liveness_path = path
        if self.watchdog is None:
            return
        if not await self.alive(min(self.watchdog.stall_s, 10.0)):
            logger.warning(
                "%s: GET %s gave no answer below HTTP 500 at start: the stall watchdog is off "
                "(a hung server costs engine.timeout_s=%g s per request)",
                self.name, self._url(path), self.timeout_s,
            )  # fmt: skip
            self.watchdog = None

    def _url(self, path: str) -> str:
        """`base_url + path`, or `path` itself when it is already an absolute URL."""
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"

    async def _attempt(self, method: str, path: str, body: Any) -> Any:
        url = self._url(path)
        session = self._require_session()
        timeout = asyncio.timeout(self.timeout_s)
        attempt = None
        watched = self.watchdog.watching(timeout) if self.watchdog is not None else contextlib.nullcontext()
        try:
            async with timeout:
                with watched as attempt:
                    async with session.request(method, url, json=body) as resp:
                        status = resp.status
                        text = (await resp.read()).decode("utf-8", "replace")
                        retry_after = resp.headers.get("retry-after")
        except TimeoutError as e:  # aiohttp's ServerTimeoutError is a TimeoutError too
            if attempt is not None and attempt.cut:
                stall_s = self.watchdog.stall_s if self.watchdog is not None else float("nan")
                raise ServerStalled(
                    f"{self.name}: {method} {url}: the server gave no sign of life for "
                    f"engine.stall_timeout_s={stall_s:g} s (hung)",
                    body,
                ) from None
            if isinstance(e, aiohttp.ServerTimeoutError) and "connect" in str(e).lower():
                raise ServerUnreachable(f"{self.name}: {method} {url}: connect timed out") from None
            raise RequestTimeout(
                f"{self.name}: {method} {url} timed out after {self.timeout_s:g} s ({type(e).__name__}; "
                "engine.timeout_s bounds one request from send to answer: raise it for long generations)",
                body,
            ) from None
        except aiohttp.ClientConnectorError as e:
            raise ServerUnreachable(
                self.redact(f"{self.name}: {method} {url}: cannot connect ({e.os_error or e})"),
                refused=isinstance(e.os_error, ConnectionRefusedError),
            ) from None
        except aiohttp.ClientConnectionError as e:
            # Reset or closed mid-request: the server may have died (a restart) or just dropped us.
            raise ServerUnreachable(
                self.redact(
                    f"{self.name}: {method} {url} failed: {type(e).__name__}: {e or 'connection lost'}"
                )
            ) from None
        except aiohttp.ClientPayloadError as e:
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
                    f"{where}: the prompt does not fit the model's context: {msg} ({overflow_hint(msg)})"
                ),
                status,
            )
        return EngineRequestError(self.redact(f"{where}: {msg}"), status)

    async def get_status(self, path: str, *, timeout_s: float = 5.0) -> int:
        """One GET without retries; returns the HTTP status (body ignored). Transport failures
        and timeouts raise EngineUnavailable. Used for readiness probes."""
        session = self._require_session()
        try:
            async with asyncio.timeout(timeout_s), session.get(self._url(path)) as resp:
                await resp.read()
                return resp.status
        except TimeoutError:
            raise EngineUnavailable(f"{self.name}: GET {self.base_url}{path} timed out") from None
        except aiohttp.ClientConnectorError as e:
            raise ServerUnreachable(
                f"{self.name}: GET {self.base_url}{path}: cannot connect ({e.os_error or e})",
                refused=isinstance(e.os_error, ConnectionRefusedError),
            ) from None
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
