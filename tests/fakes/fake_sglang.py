"""A fake SGLang (v0.5.23) HTTP server: real HTTP on a real port, the protocol of
docs `sglang-http-api.md`, deterministic generations, a latency model and fault injection.

In a test (or benchmark)::

    with FakeSGLangServer(latency_base_ms=200, latency_per_token_ms=0.5) as srv:
        srv.url                        # "http://127.0.0.1:<port>"
        srv.fail_next(2)               # next 2 POST /generate answer 503 (SGLang's object-error shape)
        srv.reset_next(1)              # next one: connection closed abruptly (TCP RST)
        srv.hang_next(1, seconds=5)    # next one: sleeps 5 s before answering (past a client timeout)
        srv.count("/generate")         # requests received on a route (faulted ones included)
        srv.last_body("/generate")     # the JSON body of the last one; srv.bodies(route) for all
        srv.max_in_flight              # peak number of concurrent requests

From a shell (e.g. an end-to-end run or a benchmark in another process)::

    python -m tests.fakes.fake_sglang --port 30000 --latency-base-ms 200 --latency-per-token-ms 0.5

What it models (each a trap a client must handle):

* `/health`, `/health_generate`, `/ready`: 503 while "starting" (`starting=True`, `set_starting`),
  200 after; no API key needed. `/model_info`, `/v1/models` answer 200 even while starting.
* `/generate`: `text` or `input_ids` (string/flat list → one object; a list or `n>1` → a JSON list in
  prompt-major order, fresh uuid ids per sample); `max_new_tokens` defaults to **128** when absent;
  unknown `sampling_params` keys → 400 ``{"error": "unknown field `seed`, expected one of ..."}``;
  body-shape errors → 400 ``{"object": "error", ...}``; range errors, duplicate in-flight rid and
  context overflow → 400 ``{"error": {"message": ...}}``; `stream: true` → SSE with cumulative text.
* `meta_info`: prompt/completion/cached/reasoning tokens, finish_reason dicts (stop/length), e2e_latency.
  A prefix cache is simulated (token = whitespace word): `n>1` pre-fills the prompt once, so each
  sample reports cached ≈ prompt_len − 1.
* `/v1/chat/completions`: `n`, usage counting the prompt once, `reasoning_content` when the server
  has a reasoning parser and `separate_reasoning` is on, `return_meta_info`, OpenAI error shape.
* Logprobs: native `return_logprob` → `meta_info.output_token_logprobs` (`[logprob, token_id, null]`
  per output token); chat `logprobs: true` → `choices[i].logprobs.content` (vLLM's
  `return_tokens_as_token_ids` → tokens `token_id:N`; `return_token_ids` → `token_ids` per choice and
  `prompt_token_ids`). Deterministic values in (-1, 0]. `logprobs=False`: a server that ignores them.
* API key: 401 ``{"error": "Unauthorized"}`` on every route but /health*, /ready, /metrics.

Generation: the text depends only on the prompt and the sample index (the k-th sample ever drawn for
that prompt, unless temperature is 0 or a seed is honoured): ``<think>\\n…\\n</think>\\n\\nSo the
answer is \\boxed{A}.``; one token = one whitespace-separated word.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import re
import signal
import socket
import struct
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)

EOS_TOKEN_ID = 151645  # Qwen's <|im_end|>, reported as `matched` for a natural stop
DEFAULT_CONTEXT_LENGTH = 32768
DEFAULT_MAX_NEW_TOKENS = 128  # SGLang's native default: the trap this fake reproduces
AUTH_EXEMPT_PREFIXES = ("/health", "/ready", "/metrics")

# sampling_params keys of the 0.5.23 JSON contract, with the JSON types they accept.
_INT, _NUM, _BOOL, _STR, _LIST, _DICT = "integer", "number", "boolean", "string", "array", "object"
SAMPLING_PARAM_TYPES: dict[str, tuple[str, ...]] = {
    "max_new_tokens": (_INT,),
    "min_new_tokens": (_INT,),
    "temperature": (_NUM,),
    "top_p": (_NUM,),
    "top_k": (_INT,),
    "min_p": (_NUM,),
    "frequency_penalty": (_NUM,),
    "presence_penalty": (_NUM,),
    "repetition_penalty": (_NUM,),
    "n": (_INT,),
    "stop": (_STR, _LIST),
    "stop_token_ids": (_LIST,),
    "stop_regex": (_STR, _LIST),
    "ignore_eos": (_BOOL,),
    "skip_special_tokens": (_BOOL,),
    "spaces_between_special_tokens": (_BOOL,),
    "no_stop_trim": (_BOOL,),
    "json_schema": (_STR,),
    "regex": (_STR,),
    "ebnf": (_STR,),
    "structural_tag": (_STR,),
    "logit_bias": (_DICT,),
    "sampling_seed": (_INT,),
    "stream_interval": (_INT,),
    "custom_params": (_DICT,),
    "beam_width": (_INT,),
    "watermark": (_DICT,),
    "choice": (_LIST,),
}

_VOCAB = (
    "let consider the sum of terms so we get modulo check case both sides factor equation "
    "substitute value then gives integer prime divisor triangle angle area circle radius hence "
    "note that therefore compute wait verify again answer must be count ways each pair"
).split()


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, int):
        return _INT
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return _STR
    if isinstance(v, list):
        return _LIST
    return _DICT


def _type_ok(v: Any, allowed: tuple[str, ...]) -> bool:
    t = _json_type(v)
    return (
        t == "null" or t in allowed or (t == "float" and _NUM in allowed) or (t == _INT and _NUM in allowed)
    )


def render_chatml(messages: list[dict[str, Any]], enable_thinking: bool = True) -> str:
    """How the fake 'server-side chat template' renders messages (ChatML, like Qwen3)."""
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    out += "<|im_start|>assistant\n"
    if not enable_thinking:
        out += "<think>\n\n</think>\n\n"
    return out


@dataclass
class Sample:
    """One generated sample. Units: tokens (= whitespace words)."""

    text: str
    output_ids: list[int]
    completion_tokens: int
    reasoning_tokens: int
    finish_reason: dict[str, Any]


@dataclass
class _Fault:
    kind: str  # "fail" | "reset" | "hang" | "slow"
    route: str
    remaining: int
    status: int = 503
    body: Any = None
    seconds: float = 0.0


class _PrefixCache:
    """A radix-cache stand-in over word tokens: hashes of block-aligned prefixes (and whole
    sequences) of everything prefilled or generated. `match` = cached prefix length in tokens."""

    BLOCK = 16
    MAX_ENTRIES = 2_000_000

    def __init__(self) -> None:
        self._blocks: set[int] = set()
        self._full: set[int] = set()

    def clear(self) -> None:
        self._blocks.clear()
        self._full.clear()

    def insert(self, tokens: list[str]) -> None:
        if len(self._blocks) > self.MAX_ENTRIES:
            self.clear()
        h = 0
        for i in range(0, len(tokens) - self.BLOCK + 1, self.BLOCK):
            h = hash((h, tuple(tokens[i : i + self.BLOCK])))
            self._blocks.add(h)
        self._full.add(hash(tuple(tokens)))

    def match(self, tokens: list[str]) -> int:
        if hash(tuple(tokens)) in self._full:
            return len(tokens)
        h, matched = 0, 0
        for i in range(0, len(tokens) - self.BLOCK + 1, self.BLOCK):
            h = hash((h, tuple(tokens[i : i + self.BLOCK])))
            if h not in self._blocks:
                break
            matched = i + self.BLOCK
        return matched


class _GenerateReqInput(BaseModel):
    """The body shape FastAPI validates first (shape errors → 400 object-error, as SGLang does)."""

    model_config = ConfigDict(extra="ignore")  # unknown top-level keys are silently ignored

    text: str | list[str] | None = None
    input_ids: list[int] | list[list[int]] | None = None
    sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None
    rid: str | list[str] | None = None
    stream: bool = False
    return_logprob: bool | list[bool] = False


class _Abort(Exception):
    """Raised inside handlers to answer with an exact (status, body)."""

    def __init__(self, status: int, body: Any):
        super().__init__(str(body))
        self.status = status
        self.body = body


def _tokens(text: str) -> list[str]:
    return text.split()


class FakeSGLangServer:
    """See the module docstring. All counters are read from the test thread; the server runs
    in a daemon thread with its own event loop (latency is `asyncio.sleep`, never blocking)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_path: str = "fake/Qwen3-fake",
        served_model_name: str | None = None,
        context_length: int | None = None,
        api_key: str | None = None,
        reasoning_parser: str | None = "qwen3",
        version: str = "0.5.23",
        latency_base_ms: float = 0.0,
        latency_per_token_ms: float = 0.0,
        latency_per_prompt_token_ms: float = 0.0,
        max_running_requests: int | None = None,
        starting: bool = False,
        think_words: tuple[int, int] = (20, 60),
        answer_fn: Callable[[str, int], str | None] | None = None,
        radix_cache: bool = True,
        enable_cache_report: bool = False,
        cached_tokens_summed: bool = False,
        strict_model_name: bool = False,
        deterministic_inference: bool = False,
        legacy: bool = False,
        dp_size: int = 1,
        hang_s: float = 30.0,
        log_level: str = "warning",
        chat_cap_fields: tuple[str, ...] = ("max_completion_tokens", "max_tokens"),
        chat_n: bool = True,
        total_slots: int | None = None,
        title: str = "FastAPI",
        logprobs: bool = True,
    ):
        """`context_length`: as if passed with --context-length (None: the model's 32768, and
        /server_info reports null like a real server). `legacy`: behave like 0.5.3 (no
        /model_info, /server_info, /ready; smaller meta_info). `cached_tokens_summed`: chat usage
        sums cached_tokens over the n choices (older SGLang) instead of once per prompt.

        Behaving like other OpenAI-compatible servers (llama.cpp's): `chat_cap_fields`, the chat
        cap fields read (others are dropped silently: the answer runs to its natural length);
        `chat_n=False` ignores `n` (one choice); `total_slots` serves llama.cpp's GET /props;
        `title` is the OpenAPI title (llama-cpp-python's is "🦙 llama.cpp Python API");
        `max_running_requests=1` is a one-slot server. `logprobs=False`: logprob requests are
        ignored (no logprob fields in the answer), as by a server without support."""
        self.host = host
        self.port = port
        self.model_path = model_path
        self.served_model_name = served_model_name or model_path
        self.context_length_arg = context_length
        self.context_length = context_length or DEFAULT_CONTEXT_LENGTH
        self.api_key = api_key
        self.reasoning_parser = reasoning_parser
        self.version = version
        self.latency_base_ms = latency_base_ms
        self.latency_per_token_ms = latency_per_token_ms
        self.latency_per_prompt_token_ms = latency_per_prompt_token_ms
        self.max_running_requests = max_running_requests
        self.starting = starting
        self.think_words = think_words
        self.answer_fn = answer_fn
        self.radix_cache = radix_cache
        self.enable_cache_report = enable_cache_report
        self.cached_tokens_summed = cached_tokens_summed
        self.strict_model_name = strict_model_name
        self.deterministic_inference = deterministic_inference
        self.legacy = legacy
        self.dp_size = dp_size
        self.hang_s = hang_s
        self.log_level = log_level
        self.chat_cap_fields = chat_cap_fields
        self.chat_n = chat_n
        self.total_slots = total_slots
        self.title = title
        self.logprobs = logprobs
        self.aborted: list[Any] = []  # bodies of POST /abort_request

        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._stopping = threading.Event()
        self._counts: Counter[str] = Counter()
        self._bodies: dict[str, deque[Any]] = defaultdict(lambda: deque(maxlen=10_000))
        self._headers: dict[str, deque[dict[str, str]]] = defaultdict(lambda: deque(maxlen=1_000))
        self._cache = _PrefixCache()
        self._seen: Counter[str] = Counter()  # samples drawn per prompt (the sample index source)
        self._rids_in_flight: set[str] = set()
        self._running: asyncio.Semaphore | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.generated_tokens = 0  # completion tokens over all samples (for benchmarks)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeSGLangServer:
        """Bind, start the server thread and wait until it accepts connections."""
        # An explicit IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted connections, as real
        # servers do; without it every reply on a reused connection waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            log_level=self.log_level,
            http="h11",
            loop="asyncio",
            lifespan="off",
            interface="asgi3",
            access_log=False,
            timeout_keep_alive=5,  # uvicorn's (and SGLang's) default: idle keep-alives get closed
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-sglang-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake SGLang server failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop the server; in-flight hangs are cut short. Idempotent."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeSGLangServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers

    def set_starting(self, starting: bool) -> None:
        """While starting, /health, /health_generate and /ready answer 503."""
        self.starting = starting

    def set_latency(
        self,
        base_ms: float | None = None,
        per_token_ms: float | None = None,
        per_prompt_token_ms: float | None = None,
    ) -> None:
        if base_ms is not None:
            self.latency_base_ms = base_ms
        if per_token_ms is not None:
            self.latency_per_token_ms = per_token_ms
        if per_prompt_token_ms is not None:
            self.latency_per_prompt_token_ms = per_prompt_token_ms

    def fail_next(
        self, count: int = 1, status: int = 503, route: str = "/generate", body: Any = None
    ) -> None:
        """The next `count` requests to `route` ("*" = any) answer `status` with `body`
        (default: SGLang's object-error shape, e.g. a scheduler waiting-timeout 503)."""
        if body is None:
            body = {
                "object": "error",
                "message": f"injected failure {status}",
                "type": str(status),
                "param": None,
                "code": status,
            }
        self._add(_Fault("fail", route, count, status=status, body=body))

    def reset_next(self, count: int = 1, route: str = "/generate") -> None:
        """The next `count` requests to `route` get their connection closed with a TCP RST."""
        self._add(_Fault("reset", route, count))

    def hang_next(self, count: int = 1, route: str = "/generate", seconds: float | None = None) -> None:
        """The next `count` requests to `route` sleep `seconds` (default `hang_s`) before being
        processed normally — long enough for a client timeout. The rid stays in flight meanwhile."""
        self._add(_Fault("hang", route, count, seconds=self.hang_s if seconds is None else seconds))

    def slow_next(self, count: int = 1, route: str = "/generate", seconds: float = 1.0) -> None:
        """Like hang_next, for short extra delays."""
        self._add(_Fault("slow", route, count, seconds=seconds))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def count(self, route: str) -> int:
        """Requests received on `route` (e.g. "/generate"), faulted and rejected ones included."""
        return self._counts[route]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def bodies(self, route: str) -> list[Any]:
        """Decoded JSON bodies received on `route`, oldest first (raw text if not JSON)."""
        return list(self._bodies[route])

    def last_body(self, route: str) -> Any:
        b = self._bodies[route]
        return b[-1] if b else None

    def headers(self, route: str) -> list[dict[str, str]]:
        return list(self._headers[route])

    def reset_stats(self) -> None:
        self._counts.clear()
        self._bodies.clear()
        self._headers.clear()
        self.max_in_flight = self.in_flight
        self.generated_tokens = 0

    def flush_cache(self) -> None:
        self._cache.clear()

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.route in (path, "*") and f.remaining > 0:
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._faults.remove(f)
                    return f
        return None

    # ------------------------------------------------------------------ generation model

    def generate_sample(
        self,
        prompt: str,
        index: int,
        max_new_tokens: int | None = DEFAULT_MAX_NEW_TOKENS,
        stop: list[str] | None = None,
    ) -> Sample:
        """The deterministic sample number `index` of `prompt` (see the module docstring).

        `max_new_tokens=None` generates to the natural end (capped by the context)."""
        rng = random.Random(hashlib.sha256(f"{prompt}\x00{index}".encode()).digest())
        stripped = prompt.rstrip()
        thinking = not stripped.endswith("</think>")  # Qwen3 enable_thinking=false pre-fills it
        open_in_prompt = stripped.endswith("<think>")  # templates that put <think> in the prompt
        answer = self.answer_fn(prompt, index) if self.answer_fn else None
        if answer is None:
            answer = str(rng.randrange(1000))
        lo, hi = self.think_words
        parts: list[str] = []
        if thinking:
            words = " ".join(rng.choice(_VOCAB) for _ in range(rng.randint(lo, hi)))
            parts.append(("" if open_in_prompt else "<think>\n") + words + "\n</think>\n\n")
        parts.append(f"So the answer is \\boxed{{{answer}}}.")
        full = "".join(parts)
        pieces = re.findall(r"\S+\s*", full)
        cap = len(_tokens(prompt))
        limit = self.context_length - cap - 1
        if max_new_tokens is not None:
            limit = min(limit, max_new_tokens)
        limit = max(0, limit)
        emitted = pieces[:limit]
        text = "".join(emitted)
        finish: dict[str, Any]
        matched_stop = None
        for s in stop or []:
            pos = text.find(s)
            if s and pos >= 0 and (matched_stop is None or pos < matched_stop[0]):
                matched_stop = (pos, s)
        if matched_stop is not None:
            text = text[: matched_stop[0]]
            finish = {"type": "stop", "matched": matched_stop[1]}
            n_tok = len(_tokens(text)) + 1
        elif len(emitted) < len(pieces):
            finish = {"type": "length", "length": len(emitted)}
            n_tok = len(emitted)
        else:
            finish = {"type": "stop", "matched": EOS_TOKEN_ID}
            n_tok = len(emitted) + 1  # the EOS token is generated (and counted) but not shown
            text = text.rstrip() if text.endswith("\n") else text
        reasoning = 0
        if self.reasoning_parser and thinking:
            toks = _tokens(text)
            reasoning = toks.index("</think>") + 1 if "</think>" in toks else len(toks)
            reasoning = min(reasoning, n_tok)
        ids = [
            int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "big") % 151000
            for w in _tokens(text)
        ]
        if finish.get("matched") == EOS_TOKEN_ID:
            ids.append(EOS_TOKEN_ID)
        return Sample(text, ids, n_tok, reasoning, finish)

    def _sample_indices(self, key: str, n: int, sp: dict[str, Any]) -> list[int]:
        temperature = sp.get("temperature")
        seed = sp.get("sampling_seed")
        if temperature is not None and temperature < 1e-6:
            return [0] * n  # greedy: every sample is the same
        if seed is not None and self.deterministic_inference:
            # The seeded sampler hashes (seed, position): all n copies share it -> identical.
            return [int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:4], "big")] * n
        base = self._seen[key]
        self._seen[key] += n
        return list(range(base, base + n))

    async def _run_samples(
        self, prompt_key: str, prompt_tokens: list[str], n: int, sp: dict[str, Any], max_new: int | None
    ) -> list[tuple[Sample, int, float]]:
        """Draw n samples of one prompt concurrently (with a warm-up prefill when n > 1).
        Returns (sample, cached_tokens, e2e_latency_s) per sample, in sample order."""
        t0 = time.monotonic()
        plen = len(prompt_tokens)
        cached_before = self._cache.match(prompt_tokens) if self.radix_cache else 0
        warm_s = 0.0
        if n > 1 and self.radix_cache:
            # SGLang pre-fills the prompt once (a hidden max_new_tokens=0 request), then the
            # samples find it in the radix cache: each computes only the last token.
            warm_s = self.latency_per_prompt_token_ms * max(0, plen - cached_before) / 1000
            self._cache.insert(prompt_tokens)
        stop = sp.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        indices = self._sample_indices(prompt_key, n, sp)
        if warm_s:
            await asyncio.sleep(warm_s)

        async def one(i: int) -> tuple[Sample, int, float]:
            sample = self.generate_sample(prompt_key, indices[i], max_new, stops)
            if n > 1 and self.radix_cache:
                cached = max(0, plen - 1)
            else:
                cached = min(cached_before, max(0, plen - 1))
            delay = (
                self.latency_base_ms
                + self.latency_per_token_ms * sample.completion_tokens
                + self.latency_per_prompt_token_ms * (plen - cached)
            ) / 1000
            sem = self._semaphore()
            if sem is not None:
                async with sem:
                    await asyncio.sleep(delay)
            elif delay > 0:
                await asyncio.sleep(delay)
            if self.radix_cache:
                self._cache.insert(prompt_tokens + _tokens(sample.text))
            self.generated_tokens += sample.completion_tokens
            return sample, cached, time.monotonic() - t0

        return list(await asyncio.gather(*(one(i) for i in range(n))))

    def _semaphore(self) -> asyncio.Semaphore | None:
        if self.max_running_requests is None:
            return None
        if self._running is None:
            self._running = asyncio.Semaphore(self.max_running_requests)
        return self._running

    def _meta(self, rid: str, sample: Sample, plen: int, cached: int, e2e: float) -> dict[str, Any]:
        if self.legacy:  # 0.5.3's subset
            return {
                "id": rid,
                "finish_reason": sample.finish_reason,
                "prompt_tokens": plen,
                "weight_version": "default",
                "completion_tokens": sample.completion_tokens,
                "cached_tokens": cached,
                "e2e_latency": round(e2e, 6),
            }
        return {
            "id": rid,
            "finish_reason": sample.finish_reason,
            "prompt_tokens": plen,
            "weight_version": "default",
            "num_retractions": 0,
            "reasoning_tokens": sample.reasoning_tokens,
            "completion_tokens": sample.completion_tokens,
            "cached_tokens": cached,
            "cached_tokens_details": None,
            "dp_rank": None,
            "e2e_latency": round(e2e, 6),
            "response_sent_to_client_ts": time.time(),
        }

    # ------------------------------------------------------------------ HTTP

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Outer ASGI layer: counting, body recording, API key, fault injection."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        chunks = []
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        raw = b"".join(chunks)
        self._counts[path] += 1
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self._headers[path].append(headers)
        if raw:
            try:
                self._bodies[path].append(json.loads(raw))
            except ValueError:
                self._bodies[path].append(raw.decode("utf-8", "replace"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.api_key and not path.startswith(AUTH_EXEMPT_PREFIXES):
                if headers.get("authorization") != f"Bearer {self.api_key}":
                    await _send_json(send, 401, {"error": "Unauthorized"})
                    return None
            fault = self._take_fault(path)
            if fault is not None:
                if fault.kind == "reset":
                    _reset_connection(receive)
                    return None
                if fault.kind == "fail":
                    await _send_json(send, fault.status, fault.body)
                    return None
                if path in ("/generate", "/v1/chat/completions"):
                    scope.setdefault("state", {})["fake_delay_s"] = fault.seconds  # applied after rid checks
                else:
                    await self._sleep(fault.seconds)
            sent = False

            async def replay() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": raw, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            self.in_flight -= 1
        return None

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, cut short when the server stops."""
        end = time.monotonic() + seconds
        while not self._stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(0.05, left))

    def _build_app(self) -> FastAPI:
        # No generated OpenAPI schema (it warns about the routes registered under two paths);
        # a title to be found by, when given, is served below.
        app = FastAPI(title=self.title, openapi_url=None)
        if self.title != "FastAPI":

            @app.get("/openapi.json")
            async def openapi() -> dict[str, Any]:
                return {"openapi": "3.1.0", "info": {"title": self.title, "version": "0.1.0"}, "paths": {}}

        @app.exception_handler(RequestValidationError)
        async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
            # SGLang rewrites FastAPI's 422 into a 400 with the object-error shape.
            msg = "; ".join(
                f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
            )
            return JSONResponse(
                {"object": "error", "message": msg, "type": "Bad Request", "param": None, "code": 400}, 400
            )

        @app.exception_handler(_Abort)
        async def _abort(request: Request, exc: _Abort) -> JSONResponse:
            return JSONResponse(exc.body, exc.status)

        async def health() -> Response:
            return Response(status_code=503 if self.starting else 200)

        for p in ("/health", "/health_generate"):
            app.add_api_route(p, health, methods=["GET"])
        if not self.legacy:
            app.add_api_route("/ready", health, methods=["GET"])

        async def model_info() -> dict[str, Any]:
            return {
                "model_path": self.model_path,
                "served_model_name": self.served_model_name,
                "tokenizer_path": self.model_path,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": "default",
                "load_format": "auto",
                "reasoning_parser": self.reasoning_parser,
                "tool_call_parser": None,
                "disaggregation_mode": "null",
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "model_type": "qwen3",
                "architectures": ["Qwen3ForCausalLM"],
            }

        async def server_info() -> dict[str, Any]:
            # Like the real one: all server args, the API key included (clients must not record it).
            return {
                "model_path": self.model_path,
                "served_model_name": self.served_model_name,
                "host": self.host,
                "port": self.port,
                "api_key": self.api_key,
                "admin_api_key": None,
                "context_length": self.context_length_arg,
                "tp_size": 1,
                "dp_size": self.dp_size,
                "reasoning_parser": self.reasoning_parser,
                "enable_deterministic_inference": self.deterministic_inference,
                "disable_radix_cache": not self.radix_cache,
                "random_seed": 1234,
                "launch_command": f"python -m sglang.launch_server --model-path {self.model_path}",
                "max_total_num_tokens": 500_000,
                "max_running_requests": self.max_running_requests,
                "max_req_input_len": self.context_length - 5,
                "internal_states": [{"last_gen_throughput": 0.0}] * self.dp_size,
                "version": self.version,
                "frontend": "python",
            }

        if not self.legacy:
            app.add_api_route("/model_info", model_info, methods=["GET"])
            app.add_api_route("/server_info", server_info, methods=["GET"])
        app.add_api_route("/get_model_info", model_info, methods=["GET"])
        app.add_api_route("/get_server_info", server_info, methods=["GET"])

        def model_card() -> dict[str, Any]:
            return {
                "id": self.served_model_name,
                "object": "model",
                "created": 1767225600,
                "owned_by": "sglang",
                "root": self.model_path,
                "parent": None,
                "max_model_len": self.context_length,
            }

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [model_card()]}

        @app.get("/v1/models/{name:path}")
        async def model(name: str) -> Any:
            if name != self.served_model_name:
                raise _Abort(404, _model_not_found(name))
            return model_card()

        @app.post("/abort_request")
        async def abort_request(request: Request) -> Response:
            self.aborted.append(json.loads(await request.body() or b"{}"))
            return Response(status_code=200)

        if self.total_slots is not None:

            @app.get("/props")
            async def props() -> dict[str, Any]:
                return {"total_slots": self.total_slots, "default_generation_settings": {}}

        @app.api_route("/flush_cache", methods=["GET", "POST"])
        async def flush() -> Response:
            self._cache.clear()
            return Response(
                "Cache flushed.\nPlease check backend logs for more details.", media_type="text/plain"
            )

        @app.api_route("/generate", methods=["POST", "PUT"])
        async def generate(req: _GenerateReqInput, request: Request) -> Any:
            return await self._generate(req, request)

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Any:
            return await self._chat(request)

        return app

    # ------------------------------------------------------------------ /generate

    async def _generate(self, req: _GenerateReqInput, request: Request) -> Any:
        try:
            prompts, sps, n, rids = self._validate_generate(req)
        except _Abort as e:
            if req.stream and e.status == 400 and isinstance(e.body.get("error"), dict):
                # After validation starts, a streamed request reports errors inside the stream.
                chunk = {
                    "error": {
                        "message": e.body["error"]["message"],
                        "type": "invalid_request_error",
                        "code": 400,
                        "retryable": False,
                    }
                }
                return StreamingResponse(_sse([chunk]), media_type="text/event-stream")
            raise
        self._rids_in_flight.update(r for r in rids if r)
        try:
            delay = request.scope.get("state", {}).get("fake_delay_s")
            if delay:
                await self._sleep(delay)
            results = await asyncio.gather(
                *(
                    self._run_samples(key, toks, n, sp, sp["max_new_tokens"])
                    for (key, toks), sp in zip(prompts, sps, strict=True)
                )
            )
        finally:
            self._rids_in_flight.difference_update(r for r in rids if r)
        outputs = []
        for p, ((_, toks), per_prompt) in enumerate(zip(prompts, results, strict=True)):
            for sample, cached, e2e in per_prompt:
                rid = rids[p] if (n == 1 and rids[p]) else uuid.uuid4().hex
                meta = self._meta(rid, sample, len(toks), cached, e2e)
                if req.return_logprob and self.logprobs:
                    meta["output_token_logprobs"] = [
                        [lp, tid, None] for lp, tid, _ in _logprob_entries(sample)
                    ]
                outputs.append({"text": sample.text, "output_ids": sample.output_ids, "meta_info": meta})
        single = (
            n == 1
            and not isinstance(req.text, list)
            and not (req.input_ids and isinstance(req.input_ids[0], list))
        )
        if req.stream:
            return StreamingResponse(
                _sse(_stream_chunks(outputs, indexed=not single)), media_type="text/event-stream"
            )
        return JSONResponse(outputs[0] if single else outputs)

    def _validate_generate(
        self, req: _GenerateReqInput
    ) -> tuple[list[tuple[str, list[str]]], list[dict[str, Any]], int, list[str | None]]:
        """Returns ([(prompt key, prompt tokens)], per-prompt sampling params, n, per-prompt rids)."""
        if req.text is not None:
            texts = req.text if isinstance(req.text, list) else [req.text]
            prompts = [(t, _tokens(t)) for t in texts]
        elif req.input_ids is not None:
            if not req.input_ids:
                raise _Abort(400, {"error": {"message": "input_ids cannot be empty."}})
            batch = req.input_ids if isinstance(req.input_ids[0], list) else [req.input_ids]
            prompts = [(" ".join(map(str, ids)), [str(i) for i in ids]) for ids in batch]  # type: ignore[union-attr]
        else:
            raise _Abort(
                400, {"error": {"message": "Either text, input_ids or input_embeds should be provided."}}
            )
        raw_sp = req.sampling_params
        sps_in = raw_sp if isinstance(raw_sp, list) else [raw_sp or {}] * len(prompts)
        if len(sps_in) != len(prompts):
            raise _Abort(
                400, {"error": {"message": "The length of sampling_params must match the batch size."}}
            )
        sps = []
        for sp in sps_in:
            for key, value in sp.items():  # the 0.5.22+ JSON contract: strict keys and JSON types
                if key not in SAMPLING_PARAM_TYPES:
                    expected = ", ".join(f"`{k}`" for k in SAMPLING_PARAM_TYPES)
                    raise _Abort(400, {"error": f"unknown field `{key}`, expected one of {expected}"})
                if not _type_ok(value, SAMPLING_PARAM_TYPES[key]):
                    raise _Abort(
                        400,
                        {
                            "error": f"invalid type: {_json_type(value)} `{value}`, expected {' or '.join(SAMPLING_PARAM_TYPES[key])} at field `{key}`"
                        },
                    )
            _verify_sampling(sp)
            clean = {k: v for k, v in sp.items() if v is not None}
            # Absent: the default 128. Explicit null: "until the context is full".
            clean["max_new_tokens"] = (
                sp["max_new_tokens"] if "max_new_tokens" in sp else DEFAULT_MAX_NEW_TOKENS
            )
            clean["_max_given"] = sp.get("max_new_tokens") is not None
            sps.append(clean)
        ns = {sp.get("n", 1) for sp in sps}
        if len(ns) != 1:
            raise _Abort(
                400, {"error": {"message": "The n parameter must be the same for all requests in a batch."}}
            )
        n = ns.pop()
        if isinstance(req.rid, list):
            if len(req.rid) != len(prompts) or len(set(req.rid)) != len(req.rid):
                raise _Abort(
                    400, {"error": {"message": "The rid list must have the batch length and unique ids."}}
                )
            rids: list[str | None] = list(req.rid)
        elif isinstance(req.rid, str):
            rids = (
                [req.rid]
                if len(prompts) == 1 and not isinstance(req.text, list)
                else [f"{req.rid}_{i}" for i in range(len(prompts))]
            )
        else:
            rids = [None] * len(prompts)
        for r in rids:
            if r and r in self._rids_in_flight:
                raise _Abort(400, {"error": {"message": f"Duplicate request ID detected: {r}"}})
        for (_, toks), sp in zip(prompts, sps, strict=True):
            self._check_context(
                len(toks), sp["max_new_tokens"] if sp.pop("_max_given") else None, native=True
            )
        return prompts, sps, n, rids

    def _check_context(self, n_in: int, max_new: int | None, *, native: bool) -> None:
        c = self.context_length
        msg = None
        if n_in >= c:
            msg = f"The input ({n_in} tokens) is longer than the model's context length ({c} tokens)."
        elif max_new is not None and n_in + max_new > c:
            msg = (
                f"Requested token count exceeds the model's maximum context length of {c} tokens. You requested a "
                f"total of {n_in + max_new} tokens: {n_in} tokens from the input messages and {max_new} tokens for "
                "the completion. Please reduce the number of tokens in the input messages or the completion to fit "
                "within the limit."
            )
        if msg:
            raise _Abort(
                400, {"error": {"message": msg}} if native else _object_error(msg, 400, "BadRequest")
            )

    # ------------------------------------------------------------------ /v1/chat/completions

    async def _chat(self, request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise _Abort(400, _object_error("Invalid JSON body", 400, "BadRequest")) from None
        if not isinstance(body, dict):
            raise _Abort(400, _object_error("Request body must be a JSON object", 400, "BadRequest"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Abort(400, _object_error("messages: Field required (a non-empty list)", 400, "BadRequest"))
        norm = []
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise _Abort(400, _object_error("messages: each message needs a role", 400, "BadRequest"))
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            norm.append({"role": m["role"], "content": content or ""})
        model = body.get("model", "default")
        if self.strict_model_name and model != self.served_model_name:
            raise _Abort(404, _model_not_found(model))
        n = body.get("n") or 1
        if not isinstance(n, int) or n < 1:
            raise _Abort(400, _object_error(f"n: must be a positive integer, got {n!r}", 400, "BadRequest"))
        if not self.chat_n:
            n = 1  # like llama.cpp's servers: n is dropped, one choice comes back
        caps = [body[f] for f in self.chat_cap_fields if body.get(f) is not None]
        max_new = caps[0] if caps else None
        if max_new is not None and (not isinstance(max_new, int) or max_new <= 0):
            raise _Abort(400, _object_error("max_completion_tokens must be positive", 400, "BadRequest"))
        kwargs = body.get("chat_template_kwargs") or {}
        enable_thinking = kwargs.get("enable_thinking", kwargs.get("thinking", True)) is not False
        if body.get("reasoning_effort") == "none":
            enable_thinking = False
        prompt = render_chatml(norm, enable_thinking)
        toks = _tokens(prompt)
        self._check_context(len(toks), max_new, native=False)
        sp = {
            "temperature": body.get("temperature", 1.0),
            "stop": body.get("stop"),
        }
        if body.get("seed") is not None:
            sp["sampling_seed"] = body["seed"]
        delay = request.scope.get("state", {}).get("fake_delay_s")
        if delay:
            await self._sleep(delay)
        results = await self._run_samples(prompt, toks, n, sp, max_new)
        separate = bool(self.reasoning_parser) and body.get("separate_reasoning", True) is not False
        choices = []
        for i, (sample, cached, e2e) in enumerate(results):
            content: str | None = sample.text
            reasoning = None
            if separate and "</think>" in sample.text:
                head, _, tail = sample.text.partition("</think>")
                reasoning = head.replace("<think>", "", 1).strip()
                content = tail.lstrip("\n")
            elif separate and sample.text.lstrip().startswith("<think>"):  # truncated while thinking
                reasoning, content = sample.text.replace("<think>", "", 1).strip(), ""
            choice: dict[str, Any] = {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "reasoning_content": reasoning,
                    "tool_calls": None,
                },
                "logprobs": None,
                "finish_reason": sample.finish_reason["type"],
                "matched_stop": sample.finish_reason.get("matched"),
            }
            if body.get("return_meta_info"):
                choice["meta_info"] = self._meta(uuid.uuid4().hex, sample, len(toks), cached, e2e)
            if body.get("logprobs") and self.logprobs:
                as_ids = bool(body.get("return_tokens_as_token_ids"))
                choice["logprobs"] = {
                    "content": [
                        {
                            "token": f"token_id:{tid}" if as_ids else tok,
                            "logprob": lp,
                            "bytes": None,
                            "top_logprobs": [],
                        }
                        for lp, tid, tok in _logprob_entries(sample)
                    ]
                }
            if body.get("return_token_ids") and self.logprobs:
                choice["token_ids"] = list(sample.output_ids)
            choices.append(choice)
        completion = sum(s.completion_tokens for s, _, _ in results)
        reasoning_total = sum(s.reasoning_tokens for s, _, _ in results)
        cached_report = sum(c for _, c, _ in results) if self.cached_tokens_summed else results[0][1]
        usage: dict[str, Any] = {
            "prompt_tokens": len(toks),  # counted once per prompt, whatever n is
            "total_tokens": len(toks) + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached_report} if self.enable_cache_report else None,
            "reasoning_tokens": reasoning_total,
        }
        if reasoning_total:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_total}
        out: dict[str, Any] = {}
        if body.get("return_token_ids") and self.logprobs:
            out["prompt_token_ids"] = [_token_id(w) for w in toks]
        return out | {
            "id": uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage,
            "metadata": {"weight_version": "default"},
        }


def _token_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % 151000


def _logprob_entries(sample: Sample) -> list[tuple[float, int, str]]:
    """(logprob, token id, token text) per output token of `sample` (its output_ids: the words,
    then the EOS token on a natural stop); the logprob is a deterministic value in (-1, 0]."""
    words = _tokens(sample.text) + ["<|im_end|>"]
    return [
        (-((tid * 2654435761) % 1000) / 1000.0, tid, words[i] if i < len(words) else "")
        for i, tid in enumerate(sample.output_ids)
    ]


def _verify_sampling(sp: dict[str, Any]) -> None:
    """SamplingParams.verify: range errors are tokenizer-side ValueErrors → {"error": {"message"}}."""

    def bad(msg: str) -> _Abort:
        return _Abort(400, {"error": {"message": msg}})

    t = sp.get("temperature")
    if t is not None and t < 0:
        raise bad(f"temperature must be non-negative, got {t}.")
    p = sp.get("top_p")
    if p is not None and not 0 < p <= 1:
        raise bad(f"top_p must be in (0, 1], got {p}.")
    k = sp.get("top_k")
    if k is not None and k != -1 and k < 1:
        raise bad(f"top_k must be -1 (disable), or at least 1, got {k}.")
    m = sp.get("max_new_tokens")
    if m is not None and m < 0:
        raise bad(f"max_new_tokens must be at least 0, got {m}.")
    n = sp.get("n")
    if n is not None and n < 1:
        raise bad(f"n must be at least 1, got {n}.")
    stop = sp.get("stop")
    if isinstance(stop, list) and len(stop) > 32:
        raise bad("stop can have at most 32 strings.")


def _object_error(message: str, code: int, type_: str) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def _model_not_found(name: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"The model `{name}` does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def _stream_chunks(outputs: list[dict[str, Any]], *, indexed: bool) -> list[dict[str, Any]]:
    """SSE chunks with cumulative text (SGLang's default), a few per sample, finish on the last."""
    chunks = []
    for i, out in enumerate(outputs):
        pieces = re.findall(r"\S+\s*", out["text"]) or [""]
        cuts = sorted({max(1, len(pieces) * j // 3) for j in (1, 2, 3)})
        for c in cuts:
            meta = dict(out["meta_info"])
            last = c == cuts[-1]
            if not last:
                meta["finish_reason"] = None
                meta["completion_tokens"] = c
                meta.pop("e2e_latency", None)
            chunk = {
                "text": "".join(pieces[:c]),
                "output_ids": out["output_ids"][:c] if not last else out["output_ids"],
                "meta_info": meta,
            }
            if indexed:
                chunk["index"] = i
            chunks.append(chunk)
    return chunks


async def _sse(chunks: list[dict[str, Any]]) -> Any:
    for c in chunks:
        yield f"data: {json.dumps(c)}\n\n"
    yield "data: [DONE]\n\n"


async def _send_json(send: Any, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _reset_connection(receive: Any) -> None:
    """Close the request's TCP connection with an RST, sending nothing (a crashed proxy/server).

    uvicorn's h11 `receive` is a bound method of the request cycle, which holds the transport."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("fake SGLang: cannot reach the transport to reset the connection")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    cycle.disconnected = True  # so uvicorn does not log "returned without starting response"


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.fakes.fake_sglang --port P [...]`: serve until SIGINT/SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=30000)
    ap.add_argument("--model-path", default="fake/Qwen3-fake")
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--context-length", type=int, default=None)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--reasoning-parser", default="qwen3")
    ap.add_argument("--latency-base-ms", type=float, default=0.0)
    ap.add_argument("--latency-per-token-ms", type=float, default=0.0)
    ap.add_argument("--latency-per-prompt-token-ms", type=float, default=0.0)
    ap.add_argument("--max-running-requests", type=int, default=None)
    ap.add_argument("--think-words", type=int, nargs=2, default=(20, 60), metavar=("MIN", "MAX"))
    ap.add_argument("--starting-s", type=float, default=0.0, help="answer 503 on /health* for this long")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    srv = FakeSGLangServer(
        host=args.host,
        port=args.port,
        model_path=args.model_path,
        served_model_name=args.served_model_name,
        context_length=args.context_length,
        api_key=args.api_key,
        reasoning_parser=args.reasoning_parser or None,
        latency_base_ms=args.latency_base_ms,
        latency_per_token_ms=args.latency_per_token_ms,
        latency_per_prompt_token_ms=args.latency_per_prompt_token_ms,
        max_running_requests=args.max_running_requests,
        think_words=tuple(args.think_words),
        starting=args.starting_s > 0,
        log_level=args.log_level,
    )
    serve_forever(srv, starting_s=args.starting_s)


def serve_forever(srv: FakeSGLangServer, *, starting_s: float = 0.0, ready_line: str | None = None) -> None:
    """Run `srv` until SIGINT/SIGTERM (main thread only). Prints the URL, then `ready_line`
    once the 'starting' period is over."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    srv.start()
    print(f"fake SGLang server listening on {srv.url}", flush=True)
    if starting_s > 0 and not done.wait(starting_s):
        srv.set_starting(False)
    if ready_line and not done.is_set():
        print(ready_line, flush=True)
    done.wait()
    srv.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
