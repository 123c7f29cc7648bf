"""`engine=sglang`: an SGLang server over HTTP (never `import sglang`: from 0.5.11 it pulls torch).

Two APIs (`engine.api`):

* ``native`` (default) — POST /generate. pdr renders the chat itself (`chat_templates`), so the
  same messages are always the same tokens (the radix cache shares every common prefix), and the
  thinking is split off on ``</think>``. `max_new_tokens` is always sent (the server's default is
  128), and only documented `sampling_params` keys (0.5.22+ rejects unknown ones).
* ``chat`` — POST /v1/chat/completions with `n`, `separate_reasoning` and
  `chat_template_kwargs`; the server renders with the model's own template.

A fork (`GenRequest.n > 1`) is one request with `n` when `engine.fork=n` (one prefill, n samples;
the list comes back prompt-major, i.e. in sample order for our single prompt), or n concurrent
n=1 requests when `engine.fork=fanout`.

Sample-level reproducibility is not guaranteed on a real server: batch composition changes the
numerics, and `sampling_seed` (sent only with `engine.send_seed=true`) is honoured only by servers
started with --enable-deterministic-inference.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pdr.config.engines import SGLangEngineConfig
from pdr.engines import thinking
from pdr.engines.base import Completion, GenRequest, Message, finish_reason, split_thinking
from pdr.engines.chat_api import chat_body, completion_logprobs, parse_chat_response
from pdr.engines.chat_templates import ChatTemplate, resolve_template
from pdr.engines.http import UNREACHABLE_S, read_api_key
from pdr.engines.http_engine import HttpEngine, wait_ready
from pdr.engines.launch import ManagedServer
from pdr.engines.registry import register_engine
from pdr.errors import ConfigError, EngineRequestError

logger = logging.getLogger(__name__)

# The sampling_params keys this client may send (all in SGLang's 0.5.23 contract and in the
# router's typed subset). Anything else would be a 400 on 0.5.22+ and a 500 on older servers.
NATIVE_SAMPLING_KEYS = frozenset(
    {"max_new_tokens", "temperature", "top_p", "top_k", "stop", "n", "sampling_seed"}
)
_Send = Callable[[int], Awaitable[list[Completion]]]  # max_tokens -> completions
_RID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")

# Server facts recorded by info(): picked field by field, because /server_info also returns the
# server's --api-key.
_SERVER_INFO_KEYS = (
    "version",
    "context_length",
    "dp_size",
    "tp_size",
    "reasoning_parser",
    "enable_deterministic_inference",
    "disable_radix_cache",
    "max_total_num_tokens",
    "max_req_input_len",
    "chat_template",
    "schedule_policy",
    "max_running_requests",
)
_MODEL_INFO_KEYS = ("model_path", "served_model_name", "tokenizer_path", "weight_version", "reasoning_parser")


@register_engine("sglang", SGLangEngineConfig)
class SGLangEngine(HttpEngine):
    """An SGLang server (external at `engine.url`, or launched by pdr with `engine.launch=true`).

    Lifecycle: `await start()` (launch if asked, readiness, server facts, chat template), then
    any number of concurrent `generate()` calls, then `await close()` (stops a launched server).
    `run_dir` receives the managed server's log (`sglang_server.log`).
    """

    name = "sglang"
    cfg: SGLangEngineConfig

    def __init__(self, cfg: SGLangEngineConfig, problems: Any = (), *, run_dir: Path | None = None):
        super().__init__(cfg, problems, run_dir=run_dir)
        self.template: ChatTemplate | None = None
        self.server: ManagedServer | None = None
        self._server_info: dict[str, Any] = {}
        self._model_info: dict[str, Any] = {}
        self._ready_path = ""
        # Every request id starts with this (one per engine): /abort_request matches by prefix.
        self._rid_prefix = f"pdr{uuid.uuid4().hex[:8]}"
        self._aborts: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Launch (if configured), wait for readiness, read /server_info and /model_info, pick
        the chat template. On failure everything started here is stopped again."""
        cfg = self.cfg
        api_key = read_api_key(cfg.api_key_env)
        try:
            if cfg.launch:
                log_dir = self.run_dir or Path(tempfile.mkdtemp(prefix="pdr-sglang-"))
                self.server = ManagedServer(
                    model=cfg.model,
                    log_path=log_dir / "sglang_server.log",
                    url=cfg.url,
                    server_args=cfg.server_args,
                    command=cfg.launch_command or None,
                    env=cfg.launch_env,
                    api_key=api_key,
                    startup_timeout_s=cfg.startup_timeout_s,
                    stop_grace_s=cfg.stop_grace_s,
                )
                self.url = await self.server.start()
            http = await self.open_http(api_key)
            self._ready_path = await wait_ready(
                http, timeout_s=cfg.ready_timeout_s, unreachable_s=None if cfg.launch else UNREACHABLE_S
            )
            http.health_path = self._ready_path
            # The stall watchdog's probe: /health answers as soon as the scheduler emits anything
            # (about 1 s on a busy server), and 503 when it emitted nothing for 20 s (wedged).
            await http.check_liveness("/health")
            await self._read_server_facts()
            running = self._server_info.get("max_running_requests")
            self.set_capacity(
                running if isinstance(running, int) else None, "/server_info max_running_requests"
            )
            self._check_seed_support()
            if cfg.api == "native":
                model_paths = [
                    cfg.model if cfg.model != "default" else None,
                    self._model_info.get("model_path"),
                    self._model_info.get("served_model_name"),
                ]
                self.template = await asyncio.to_thread(
                    resolve_template, cfg.chat_template, cfg.tokenizer_path, model_paths
                )
        except BaseException:
            await self.close()
            raise
        logger.info(
            "sglang: %s ready (version %s, model %s, api=%s, fork=%s%s)",
            self.url,
            self._server_info.get("version", "?"),
            self.model_path,
            cfg.api,
            cfg.fork,
            f", template={self.template.name}" if self.template else "",
        )

    async def _read_server_facts(self) -> None:
        http = self._require_http()
        server_info = await http.get_json_optional("/server_info", "/get_server_info") or {}
        model_info = await http.get_json_optional("/model_info", "/get_model_info") or {}
        self._server_info = {k: server_info[k] for k in _SERVER_INFO_KEYS if k in server_info}
        self._model_info = {k: model_info[k] for k in _MODEL_INFO_KEYS if k in model_info}
        if not isinstance(self._server_info.get("context_length"), int):
            # /server_info reports the --context-length flag (null when unset); /v1/models has the
            # effective value.
            models = await http.get_json_optional("/v1/models") or {}
            lengths = [m.get("max_model_len") for m in models.get("data", []) if isinstance(m, dict)]
            if lengths and isinstance(lengths[0], int):
                self._server_info["context_length"] = lengths[0]

    def _check_seed_support(self) -> None:
        if self.cfg.send_seed and self._server_info.get("enable_deterministic_inference") is False:
            raise ConfigError(
                f"engine.send_seed=true but the server at {self.url} runs without "
                "--enable-deterministic-inference, so it ignores sampling_seed: start it with that flag "
                "(engine.server_args.enable_deterministic_inference=true when launching) or set engine.send_seed=false"
            )

    async def abort(self, rid: str) -> None:
        """POST /abort_request for `rid` (a prefix: SGLang aborts every request whose id starts
        with it). Best effort, one attempt: the server may be gone. The samples of an n>1
        request get fresh ids on the server, so only a closed connection reaches them."""
        http = self._http
        if http is None:
            return
        try:
            await http.request_json("POST", "/abort_request", {"rid": rid}, retry=False)
        except Exception as e:  # noqa: BLE001 - best effort: the answer changes nothing
            logger.info("sglang: abort of %s failed: %s", rid, e)

    def _abort_timed_out(self, body: Any) -> None:
        """A request timed out: abort it on the server before the retry (else both run)."""
        rid = body.get("rid") if isinstance(body, dict) else None
        if rid:
            task = asyncio.ensure_future(self.abort(rid))
            self._aborts.add(task)
            task.add_done_callback(self._aborts.discard)

    async def close(self) -> None:
        """Abort this engine's requests still running on the server (its rid prefix), close the
        connection pool and stop a launched server. Idempotent; info() still works."""
        try:
            # (Not to a server that stayed down: the abort would wait out the watchdog there.)
            if self._http is not None and self.calls and self.server is None and not self._http.server_down:
                await self.abort(self._rid_prefix)
            await super().close()
        finally:
            if self.server is not None:
                self.server.stop()  # synchronous and idempotent: safe while Ctrl-C cancels tasks

    # ------------------------------------------------------------------ identity and info

    @property
    def model_path(self) -> str:
        return str(self._model_info.get("model_path") or self.cfg.model)

    def identity(self) -> str:
        """What determines outputs: engine kind, API, model path, configured URL, and (native) the
        chat template. Stable across runs of a launched server (uses the configured URL, not the
        chosen port); never contains the API key. Complete only after `start()`."""
        parts = [f"sglang|api={self.cfg.api}|model={self.model_path}|url={self.cfg.url.rstrip('/')}"]
        if self.cfg.api == "native":  # the client renders the prompt: the template is an input
            parts.append(
                f"template={self.template.name if self.template else self.cfg.chat_template or 'auto'}"
            )
        if self.cfg.chat_template_kwargs:
            parts.append(f"kwargs={sorted(self.cfg.chat_template_kwargs.items())}")
        if self.cfg.return_logprobs:  # only when asked: other configurations keep their cache keys
            parts.append("logprobs")
        return "|".join(parts)

    def info(self) -> dict[str, Any]:
        """Facts recorded with the run: server version, model, context length, dp size, how pdr
        talks to it. Never the API key."""
        info: dict[str, Any] = {
            "engine": self.name,
            "api": self.cfg.api,
            "fork": self.cfg.fork,
            "url": self.url,
            "model": self.model_path,
            "launched": self.cfg.launch,
            "chat_template": self.template.name if self.template else None,
            "send_seed": self.cfg.send_seed,
            "return_logprobs": self.cfg.return_logprobs,
            "readiness_endpoint": self._ready_path or None,
            "retries": self.retries,
            **self.client_info(),
        }
        for key, value in self._server_info.items():
            # The server's --chat-template (chat API) is not the client-side one above.
            info["server_chat_template" if key == "chat_template" else key] = value
        info.update({k: v for k, v in self._model_info.items() if k != "model_path"})
        if self.server is not None:
            info["server_log"] = str(self.server.log_path)
        return info

    # ------------------------------------------------------------------ generation

    def render(self, messages: tuple[Message, ...] | list[Message]) -> str:
        """The native prompt text for `messages` (start() must have picked the template)."""
        if self.template is None:
            raise EngineRequestError(f"{self.name}: no chat template (call start() first)")
        return self.template.render(messages, **self.cfg.chat_template_kwargs)

    def _sender(self, request: GenRequest) -> _Send:
        return self._send_native(request) if self.cfg.api == "native" else self._send_chat(request)

    def _send_native(self, request: GenRequest) -> _Send:
        http = self._require_http()
        prompt = self.render(request.messages)
        if request.sampling.thinking_tokens is not None:  # thinking cap + answer buffer
            if self.cfg.return_logprobs:
                # Budget forcing splices generated phases with injected text: no one sequence of
                # sampled tokens to report. Recorded as None (warned once), never stitched.
                completion_logprobs(None, f"{self.name} (budget forcing)")
            return lambda max_tokens: thinking.generate_native(self, http, request, prompt)

        async def send(max_tokens: int) -> list[Completion]:
            t0 = time.monotonic()
            data = await http.request_json(
                "POST",
                "/generate",
                body_factory=lambda: self.native_body(request, prompt, max_tokens),
                on_timeout=self._abort_timed_out,
            )
            return parse_native_response(
                data,
                request.n,
                client_latency_s=time.monotonic() - t0,
                name=self.name,
                logprobs=self.cfg.return_logprobs,
            )

        return send

    def native_body(self, request: GenRequest, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The /generate body: `text`, `sampling_params` (known keys only; `max_new_tokens`
        always), and a fresh `rid` per attempt (a retried rid may still be in flight on the
        server, which would answer 400 "Duplicate request ID")."""
        s = request.sampling
        sp: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if s.top_k is not None:
            sp["top_k"] = s.top_k
        if s.stop:
            sp["stop"] = list(s.stop)
        if request.n != 1:
            sp["n"] = request.n
        if self.cfg.send_seed:
            sp["sampling_seed"] = request.seed
        unknown = set(sp) - NATIVE_SAMPLING_KEYS
        if unknown:  # a programming error, not a user one: fail before the server does
            raise EngineRequestError(
                f"{self.name}: refusing to send unknown sampling_params {sorted(unknown)}"
            )
        body: dict[str, Any] = {"text": prompt, "sampling_params": sp, "rid": _rid(request, self._rid_prefix)}
        if self.cfg.return_logprobs:
            # Output tokens only (logprob_start_len -1, the default): prompt logprobs would cap the
            # prefix-cache reuse at their start (sglang-http-api.md §7).
            body["return_logprob"] = True
        return body

    def _send_chat(self, request: GenRequest) -> _Send:
        http = self._require_http()
        if request.sampling.thinking_tokens is not None:
            thinking.warn_not_enforced(self.name, "chat")
        model = (
            self.cfg.model
            if self.cfg.model != "default"
            else str(
                self._model_info.get("served_model_name") or self._model_info.get("model_path") or "default"
            )
        )
        extra: dict[str, Any] = {"separate_reasoning": True, "return_meta_info": True}
        if self.cfg.chat_template_kwargs:
            extra["chat_template_kwargs"] = dict(self.cfg.chat_template_kwargs)

        async def send(max_tokens: int) -> list[Completion]:
            body = chat_body(
                request,
                model=model,
                max_tokens=max_tokens,
                max_tokens_field="max_completion_tokens",  # SGLang reads both; this one wins
                seed=request.seed if self.cfg.send_seed else None,
                extra=extra,
                logprobs=self.cfg.return_logprobs,
            )
            t0 = time.monotonic()
            data = await http.request_json("POST", "/v1/chat/completions", body)
            return parse_chat_response(
                data,
                request.n,
                client_latency_s=time.monotonic() - t0,
                name=self.name,
                logprobs=self.cfg.return_logprobs,
            )

        return send


def _rid(request: GenRequest, prefix: str = "pdr") -> str:
    tag = request.tag
    suffix = uuid.uuid4().hex[:12]
    if tag is None:
        return f"{prefix}-{suffix}"
    raw = f"{prefix}-{tag.problem_id}-s{tag.sample}-t{tag.step}-{tag.kind}-b{tag.branch}"
    return f"{_RID_UNSAFE.sub('_', raw)[:96]}-{suffix}"


def parse_native_response(
    data: Any, n: int, *, client_latency_s: float, name: str = "sglang", logprobs: bool = False
) -> list[Completion]:
    """Completions from a /generate answer: one object for n == 1, a list of n objects
    (prompt-major = sample order for one prompt) otherwise. Tolerates missing and extra
    `meta_info` keys. Raises EngineRequestError on a malformed answer or a count mismatch."""
    items = data if isinstance(data, list) else [data]
    if len(items) != n:
        raise EngineRequestError(f"{name}: asked for n={n} samples, the server returned {len(items)}")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise EngineRequestError(f"{name}: malformed /generate item: {str(item)[:200]}")
        meta_info = item.get("meta_info") if isinstance(item.get("meta_info"), dict) else {}
        reasoning, text = split_thinking(item["text"])
        fr = meta_info.get("finish_reason")
        kind = fr.get("type") if isinstance(fr, dict) else fr
        meta: dict[str, Any] = {"id": meta_info.get("id"), "client_latency_s": round(client_latency_s, 6)}
        if isinstance(fr, dict):
            if "matched" in fr:
                meta["matched_stop"] = fr["matched"]
            if kind == "abort":
                meta["abort_message"] = fr.get("message")
        for key in ("weight_version", "dp_rank", "num_retractions", "cached_tokens_details"):
            if meta_info.get(key) is not None:
                meta[key] = meta_info[key]
        if logprobs:  # `output_token_logprobs`: [logprob, token_id, text] per generated token
            meta["token_ids"], meta["logprobs"] = completion_logprobs(item, name)
        out.append(
            Completion(
                text=text,
                reasoning=reasoning,
                prompt_tokens=int(meta_info.get("prompt_tokens") or 0),
                completion_tokens=int(meta_info.get("completion_tokens") or 0),
                cached_tokens=int(meta_info.get("cached_tokens") or 0),
                reasoning_tokens=int(meta_info.get("reasoning_tokens") or 0),
                finish_reason=finish_reason(kind),
                latency_s=float(meta_info.get("e2e_latency") or client_latency_s),
                meta=meta,
            )
        )
    return out
