"""The fake SGLang server with prefill accounting, for the benchmarks (run it in its own process).

    PYTHONPATH=. python experiments/benchmarks/accounting_server.py --port 0 \\
        --latency-base-ms 200 --latency-per-token-ms 0.5

It is `tests.fakes.fake_sglang.FakeSGLangServer` (same protocol, latency model and simulated radix
cache; two harness fixes below) plus counters of what the server had to compute, read with
`GET /bench/stats` and zeroed with `POST /bench/reset`:

- `requests`, `samples`: /generate requests and samples (a fork with n is 1 request, n samples);
- `prompt_tokens_sent`: prompt tokens on the wire (once per request);
- `prompt_tokens_logical`: prompt tokens per sample (what each branch "reads": requests x n);
- `prefill_tokens`: prompt tokens the server computed: for n > 1, one warm-up prefill of the
  uncached part of the shared prompt plus, per sample, the part the sample reports as uncached
  (SGLang's n > 1 path); for n = 1, the uncached part;
- `cached_tokens_reported`: the sum of `meta_info.cached_tokens` over samples;
- `completion_tokens`: generated tokens;
- `max_in_flight`: the peak of concurrent HTTP requests;
- `overhead_ms`: per /generate request, the time it spent in the server beyond its slowest
  sample's generation (body parsing, validation, queueing behind other requests on the server's
  one thread, response encoding): percentiles p50/p95/max.

Token = whitespace-separated word, as in the fake.

Sample generation: the fake's own `generate_sample` costs ~0.6 ms of CPU per sample at 100-400
thinking words (a `random.choice` and a blake2b per word), so with hundreds of samples per step
a single-process fake server, not the client, would set the pace. By default this server draws
the same shape of sample (thinking words from the same vocabulary, a boxed answer, the same
length/stop/finish rules and token accounting), taking the thinking as a slice of a fixed
pseudo-random word stream with precomputed ids: ~25 us per sample, ~20x cheaper.
`--reference-generator` keeps the fake's own.

TCP_NODELAY: the fake's listening socket is created without `proto=IPPROTO_TCP`, so asyncio does
not set TCP_NODELAY on its connections, and every reply on a kept-alive connection waits ~40 ms
for the client's delayed ACK (Nagle). This server sets it (`--no-nodelay` reproduces the fake).
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import hashlib
import random
import socket
import time
from typing import Any

from fastapi import FastAPI

from tests.fakes.fake_sglang import _VOCAB, EOS_TOKEN_ID, FakeSGLangServer, Sample, serve_forever

_COUNTERS = (
    "requests",
    "samples",
    "prompt_tokens_sent",
    "prompt_tokens_logical",
    "prefill_tokens",
    "cached_tokens_reported",
    "completion_tokens",
)


_E2E: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("_E2E", default=None)


class AccountingFakeServer(FakeSGLangServer):
    """`FakeSGLangServer` that also counts prefilled vs sent prompt tokens (see the module doc)."""

    def __init__(self, *, fast_generator: bool = True, nodelay: bool = True, **kwargs: Any):
        self.bench: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.fast_generator = fast_generator
        self.nodelay = nodelay
        self._prompt_len: dict[str, int] = {}  # prompt -> its token count, while its samples are drawn
        self._overheads: list[float] = []
        super().__init__(**kwargs)

    def start(self) -> AccountingFakeServer:
        """Start, then set TCP_NODELAY on the listening socket (accepted connections inherit it on
        Linux). The base class binds a socket created without `proto=IPPROTO_TCP`, so asyncio skips
        its usual TCP_NODELAY and every response on a kept-alive connection (written as headers, then
        body) waits ~40 ms for the client's delayed ACK: a latency floor a real server does not have."""
        super().start()
        for server in (getattr(self._server, "servers", None) or []) if self.nodelay else []:
            for sock in server.sockets:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/generate":
            return await super()._asgi(scope, receive, send)
        t_in = time.perf_counter()
        e2e: list[float] = []
        token = _E2E.set(e2e)

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message.get("type") == "http.response.body" and not message.get("more_body") and e2e:
                self._overheads.append(time.perf_counter() - t_in - max(e2e))

        try:
            return await super()._asgi(scope, receive, timed_send)
        finally:
            _E2E.reset(token)

    def generate_sample(
        self, prompt: str, index: int, max_new_tokens: int | None = 128, stop: list[str] | None = None
    ) -> Sample:
        """The fake's sample `index` of `prompt`, cheaper (see the module docstring)."""
        if not self.fast_generator:
            return super().generate_sample(prompt, index, max_new_tokens, stop)
        rng = random.Random(hashlib.blake2b(f"{prompt}\x00{index}".encode(), digest_size=16).digest())
        stripped = prompt.rstrip()
        thinking = not stripped.endswith("</think>")
        open_in_prompt = stripped.endswith("<think>")
        answer = self.answer_fn(prompt, index) if self.answer_fn else None
        if answer is None:
            answer = str(rng.randrange(1000))
        count = rng.randint(*self.think_words) if thinking else 0
        offset = rng.randrange(len(_POOL) - count + 1)  # the thinking: a slice of a fixed word stream
        head = [] if not thinking or open_in_prompt else ["<think>"]
        tail = (["</think>"] if thinking else []) + ["So", "the", "answer", "is", f"\\boxed{{{answer}}}."]
        total = len(head) + count + len(tail)
        prompt_len = self._prompt_len.get(prompt)
        limit = max(
            0, self.context_length - (prompt_len if prompt_len is not None else len(prompt.split())) - 1
        )
        if max_new_tokens is not None:
            limit = min(limit, max_new_tokens)
        if limit >= total and not stop:  # the common case, without building token lists
            text = _join(head, _pool_text(offset, count), tail, thinking)
            ids = (
                [_word_id(w) for w in head] + _POOL_IDS[offset : offset + count] + [_word_id(w) for w in tail]
            )
            ids.append(EOS_TOKEN_ID)
            reasoning = len(head) + count + 1 if self.reasoning_parser and thinking else 0
            return Sample(text, ids, total + 1, reasoning, {"type": "stop", "matched": EOS_TOKEN_ID})
        tokens = head + _POOL[offset : offset + count] + tail
        emitted = tokens[:limit]
        text = " ".join(emitted)
        if thinking:
            text = text.replace("<think> ", "<think>\n", 1).replace(" </think> ", "\n</think>\n\n", 1)
        matched = [(text.find(s), s) for s in stop or [] if s and s in text]
        if matched:
            pos, s = min(matched)
            text = text[:pos]
            finish: dict[str, Any] = {"type": "stop", "matched": s}
            n_tok = len(text.split()) + 1
        elif len(emitted) < len(tokens):
            finish, n_tok = {"type": "length", "length": len(emitted)}, len(emitted)
        else:
            finish, n_tok = {"type": "stop", "matched": EOS_TOKEN_ID}, len(emitted) + 1
        words = text.split()
        reasoning = 0
        if self.reasoning_parser and thinking:
            reasoning = min(words.index("</think>") + 1 if "</think>" in words else len(words), n_tok)
        ids = [_word_id(w) for w in words]
        if finish.get("matched") == EOS_TOKEN_ID:
            ids.append(EOS_TOKEN_ID)
        return Sample(text, ids, n_tok, reasoning, finish)

    async def _run_samples(
        self, prompt_key: str, prompt_tokens: list[str], n: int, sp: dict[str, Any], max_new: int | None
    ) -> list[Any]:
        plen = len(prompt_tokens)
        # The same lookup the base class makes first thing (no await in between: same answer).
        cached_before = self._cache.match(prompt_tokens) if self.radix_cache else 0
        self._prompt_len[prompt_key] = plen
        try:
            results = await super()._run_samples(prompt_key, prompt_tokens, n, sp, max_new)
        finally:
            self._prompt_len.pop(prompt_key, None)
        warm = max(0, plen - cached_before) if n > 1 and self.radix_cache else 0
        e2e = _E2E.get()
        if e2e is not None:
            e2e.extend(lat for _, _, lat in results)
        b = self.bench
        b["requests"] += 1
        b["samples"] += n
        b["prompt_tokens_sent"] += plen
        b["prompt_tokens_logical"] += plen * n
        b["prefill_tokens"] += warm + sum(plen - cached for _, cached, _ in results)
        b["cached_tokens_reported"] += sum(cached for _, cached, _ in results)
        b["completion_tokens"] += sum(sample.completion_tokens for sample, _, _ in results)
        return results

    def _build_app(self) -> FastAPI:
        app = super()._build_app()

        @app.get("/bench/stats")
        async def stats() -> dict[str, Any]:
            xs = sorted(self._overheads)
            pct = (
                {f"p{q}": round(1000 * xs[min(len(xs) - 1, len(xs) * q // 100)], 2) for q in (50, 95)}
                if xs
                else {}
            )
            return {
                **self.bench,
                "max_in_flight": self.max_in_flight,
                "overhead_ms": {**pct, "max": round(1000 * xs[-1], 2)} if xs else {},
            }

        @app.post("/bench/reset")
        async def reset() -> dict[str, Any]:
            self.bench = dict.fromkeys(_COUNTERS, 0)
            self._overheads = []
            self.max_in_flight = self.in_flight
            self.flush_cache()
            self._seen.clear()
            return {"ok": True}

        return app


@functools.lru_cache(maxsize=65536)
def _word_id(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % 151000


def _join(head: list[str], body: str, tail: list[str], thinking: bool) -> str:
    """A sample's text laid out as the fake lays it out (newlines around the thinking)."""
    if not thinking:
        return " ".join(tail)
    opening = "<think>\n" if head else ""
    return f"{opening}{body}\n</think>\n\n{' '.join(tail[1:])}"


def _word_stream(size: int, seed: int) -> tuple[list[str], list[int], str, list[int]]:
    """A fixed pseudo-random stream of vocabulary words: the words, their ids, the words joined by
    spaces, and each word's character offset in that string (plus the end)."""
    rng = random.Random(seed)
    words = [rng.choice(_VOCAB) for _ in range(size)]
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    starts.append(pos)
    return words, [_word_id(w) for w in words], " ".join(words), starts


_POOL, _POOL_IDS, _POOL_STR, _POOL_STARTS = _word_stream(1 << 16, 20251001)


def _pool_text(offset: int, count: int) -> str:
    """Words offset .. offset+count of the stream, space-separated (one slice of a prebuilt string)."""
    if count == 0:
        return ""
    return _POOL_STR[_POOL_STARTS[offset] : _POOL_STARTS[offset + count] - 1]


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; the first stdout line names the URL."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-base-ms", type=float, default=0.0)
    ap.add_argument("--latency-per-token-ms", type=float, default=0.0)
    ap.add_argument("--think-words", type=int, nargs=2, default=(20, 60), metavar=("MIN", "MAX"))
    ap.add_argument("--no-radix-cache", action="store_true")
    ap.add_argument(
        "--reference-generator", action="store_true", help="the fake's own (slower) sample generator"
    )
    ap.add_argument(
        "--no-nodelay", action="store_true", help="leave TCP_NODELAY off, as the fake does (~40 ms per reply)"
    )
    # PDR [8,4] with a global summary at the 4096 cap plans up to ~37.6K tokens for the summary call
    # (it reads all 8 drafts), past the fake model's native 32,768: serve it as if launched with
    # --context-length 131072 (YaRN), so that pdr's context planning lets the benchmarks run.
    ap.add_argument("--context-length", type=int, default=131072)
    args = ap.parse_args(argv)
    srv = AccountingFakeServer(
        context_length=args.context_length,
        host=args.host,
        port=args.port,
        latency_base_ms=args.latency_base_ms,
        latency_per_token_ms=args.latency_per_token_ms,
        think_words=tuple(args.think_words),
        radix_cache=not args.no_radix_cache,
        fast_generator=not args.reference_generator,
        nodelay=not args.no_nodelay,
    )
    serve_forever(srv)


if __name__ == "__main__":
    main()
