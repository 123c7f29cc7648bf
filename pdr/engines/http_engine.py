"""`HttpEngine`, the base of the HTTP engines (sglang, openai), and `wait_ready`, the readiness poll
of a server pdr did not start. The transport, retries and error mapping they use are in
`pdr.engines.http`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pdr.engines.base import (
    DEFAULT_MAX_CONCURRENCY,
    BaseEngine,
    Completion,
    GenRequest,
    WeightedLimiter,
    _branch,
)
from pdr.engines.chat_api import FewerChoices
from pdr.engines.context import with_context_fallback
from pdr.engines.http import UNREACHABLE_S, HttpClient, ServerUnreachable
from pdr.engines.retry import poll_until
from pdr.errors import AuthError, EngineRequestError, EngineUnavailable

logger = logging.getLogger(__name__)


async def wait_ready(
    http: HttpClient,
    *,
    timeout_s: float,
    paths: tuple[str, ...] = ("/health_generate", "/health"),
    interval_s: float = 0.25,
    max_interval_s: float = 5.0,
    unreachable_s: float | None = UNREACHABLE_S,
) -> str:
    """Poll GET `paths[0]` until it answers 200 (a 404 moves on to the next path); return the
    path that answered. 503 and connection errors mean "still starting". 401/403 raise AuthError.
    Raises EngineUnavailable after `timeout_s` seconds.

    Fails fast where waiting cannot help: every path answering 404 means the server is not an
    SGLang server (EngineRequestError, at once); a connection refused for `unreachable_s`
    seconds means nothing listens at the URL (None: keep waiting, e.g. for a launched server)."""
    idx = 0
    last = "no answer yet"
    t0 = time.monotonic()
    answered = False  # anything ever answered at the URL (then refusals mean a restart)

    async def probe() -> str | None:
        nonlocal idx, last, answered
        while True:
            path = paths[idx]
            try:
                status = await http.get_status(path, timeout_s=min(30.0, max(1.0, timeout_s)))
            except ServerUnreachable as e:
                last = str(e)
                if (
                    e.refused
                    and not answered
                    and unreachable_s is not None
                    and time.monotonic() - t0 >= unreachable_s
                ):
                    raise ServerUnreachable(
                        f"{http.name}: nothing listens at {http.base_url} (connection refused for "
                        f"{unreachable_s:g} s): check engine.url, or start the server (engine.launch=true "
                        "lets pdr start it)",
                        refused=True,
                    ) from None
                return None
            except EngineUnavailable as e:
                last = str(e)
                return None
            answered = True
            if status == 200:
                return path
            if status in (404, 405):
                if idx + 1 < len(paths):
                    idx += 1
                    continue
                raise EngineRequestError(
                    f"{http.name}: {http.base_url} is not an SGLang server: GET "
                    f"{' and '.join(paths)} answer HTTP {status}. For another OpenAI-compatible server use "
                    f"engine=openai engine.url={http.base_url}/v1",
                    status,
                )
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


class HttpEngine(BaseEngine):
    """The base of the HTTP engines: config, URL, fork mode, the client (`start()` opens it with
    `open_http`), and generation under `engine.on_context_overflow`.

    Forks: a fork wider than `engine.max_n` is split into requests of at most `max_n`; with
    `engine.fork=n`, a server that answers fewer choices than asked (it ignores `n`) switches
    the engine to fan-out for the rest of its life (logged once), the choices it did return
    being kept. In-flight limit: `engine.max_concurrency`, or (null) the server's capacity as
    the subclass reads it in `start()` (`set_capacity`).

    Subclasses implement `start()` and `_sender(request)`: a function that sends the request
    with a given generation cap and returns its completions.
    """

    def __init__(self, cfg: Any, problems: Any = (), *, run_dir: Path | None = None):
        super().__init__(cfg.max_concurrency)
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.supports_n = cfg.fork == "n"  # fanout: BaseEngine splits forks into n=1 requests
        self.n_fallback = False  # fork=n but the server ignored n: fanned out since
        self.url = cfg.url.rstrip("/")
        self.capacity: int | None = None  # what the server says it runs at once
        self.capacity_source: str | None = None
        self._http: HttpClient | None = None
        self._retries_before_close = 0
        self._watch_before_close: dict[str, Any] = {}

    async def open_http(self, api_key: str | None) -> HttpClient:
        """Open the pooled client to `self.url` with the engine's timeouts and retries."""
        self._http = HttpClient.for_engine(self.url, self.name, self.cfg, api_key)
        await self._http.start()
        return self._http

    def set_capacity(self, capacity: int | None, source: str) -> None:
        """Record the server's capacity (requests it runs at once) and, when
        `engine.max_concurrency` is null, size the in-flight limit to it. Call before any
        generate(). More in flight than the server runs would only queue there, and the wait
        would count against `engine.timeout_s`."""
        configured = self.cfg.max_concurrency
        if capacity is not None and capacity >= 1:
            self.capacity, self.capacity_source = capacity, source
        limit = configured or self.capacity or DEFAULT_MAX_CONCURRENCY
        if configured and self.capacity and configured > self.capacity:
            logger.warning(
                "%s: engine.max_concurrency=%d but the server runs %d at once (%s): the rest queue on the "
                "server and their wait counts against engine.timeout_s=%g",
                self.name, configured, self.capacity, source, self.cfg.timeout_s,
            )  # fmt: skip
        self.limiter = WeightedLimiter(limit)
        logger.info(
            "%s: up to %d requests in flight (%s)",
            self.name,
            limit,
            "engine.max_concurrency" if configured else (source if self.capacity else "default"),
        )

    async def close(self) -> None:
        """Close the connection pool (servers that honour disconnects abort what was in
        flight). Idempotent; `retries` and `info()` still work."""
        if self._http is not None:
            self._retries_before_close = self._http.retries
            self._watch_before_close = self._watch_info()
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

    def client_info(self) -> dict[str, Any]:
        """What the engine learnt about the server and how it sends: for `info()`."""
        return {
            "max_concurrency": self.limiter.capacity,
            "server_capacity": self.capacity,
            "capacity_source": self.capacity_source,
            "max_n": self.cfg.max_n,
            "n_fallback": self.n_fallback,
            **(self._watch_info() if self._http is not None else self._watch_before_close),
        }

    def _watch_info(self) -> dict[str, Any]:
        """The stall watchdog's endpoint (None: off), the stalls it detected, the downtime waited."""
        http = self._require_http()
        return {
            "stall_watch": http.liveness_path if http.watchdog is not None else None,
            "stalls": http.watchdog.stalls if http.watchdog is not None else 0,
            "downtime_s": round(http.downtime_s, 1),
        }

    async def generate(self, request: GenRequest) -> list[Completion]:
        if request.n > 1 and self.supports_n:
            max_n = self.cfg.max_n
            if request.n > max_n:
                parts = await asyncio.gather(
                    *(
                        self.generate(_branch(request, i, min(max_n, request.n - i)))
                        for i in range(0, request.n, max_n)
                    )
                )
                return [c for part in parts for c in part]
            try:
                return await self._one(request)
            except FewerChoices as e:
                got = e.completions
                if self.supports_n:
                    self.supports_n, self.n_fallback = False, True
                    logger.warning(
                        "%s: the server at %s ignores n (asked %d, got %d): fanning forks out as n=1 requests "
                        "from now on (engine.fork=fanout avoids the probe)",
                        self.name, self.url, request.n, len(got),
                    )  # fmt: skip
                rest = await asyncio.gather(
                    *(self._one(_branch(request, i)) for i in range(len(got), request.n))
                )
                return got + [c for part in rest for c in part]
        return await super().generate(request)

    async def _generate(self, request: GenRequest) -> list[Completion]:
        return await with_context_fallback(
            self._sender(request),
            request.sampling.max_tokens,
            on_overflow=self.cfg.on_context_overflow,
            name=self.name,
        )

    def _sender(self, request: GenRequest) -> Callable[[int], Awaitable[list[Completion]]]:
        raise NotImplementedError
