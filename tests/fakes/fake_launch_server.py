"""A stand-in for `python -m sglang.launch_server`, for testing pdr's managed launch.

    python -m tests.fakes.fake_launch_server --model-path M --port P [--host H] [any sglang flags]

It prints SGLang-like start-up log lines, serves `FakeSGLangServer` on the port, prints
"The server is fired up and ready to roll!" once ready, and exits on SIGTERM. Unknown flags are
accepted (and logged), as a real server would take them.

Behaviour switches (environment variables, so tests can set them through `engine.launch_env`):

* ``FAKE_SGLANG_FAIL=1`` — print a few log lines and a CUDA-OOM-like traceback, exit with code 1.
* ``FAKE_SGLANG_LOAD_S=X`` — "load weights" for X seconds before the port opens.
* ``FAKE_SGLANG_STARTING_S=X`` — port open but /health* answer 503 for X seconds (warm-up).
* ``FAKE_SGLANG_IGNORE_SIGTERM=1`` — ignore SIGTERM (the launcher must escalate to SIGKILL).
* ``FAKE_SGLANG_CHILD_PID_FILE=path`` — spawn a child process (like SGLang's scheduler) in the
  same process group and write its pid to `path` (to check the whole group is stopped).
* ``FAKE_SGLANG_ARGV_FILE=path`` — write the received argv as JSON to `path`.
* ``FAKE_SGLANG_LATENCY_BASE_MS=X``, ``FAKE_SGLANG_LATENCY_PER_TOKEN_MS=Y`` — the latency model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from tests.fakes.fake_sglang import FakeSGLangServer

READY_LINE = "The server is fired up and ready to roll!"


def _log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-path", "--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=30000)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--context-length", type=int, default=None)
    ap.add_argument("--reasoning-parser", default=None)
    ap.add_argument("--served-model-name", default=None)
    ap.add_argument("--enable-deterministic-inference", action="store_true")
    args, unknown = ap.parse_known_args(argv)
    env = os.environ

    if env.get("FAKE_SGLANG_ARGV_FILE"):
        with open(env["FAKE_SGLANG_ARGV_FILE"], "w") as f:
            json.dump(argv, f)
    # Like SGLang, print the server args with the API key in clear: the launcher must mask it.
    _log(
        f"server_args=ServerArgs(model_path='{args.model_path}', port={args.port}, api_key={args.api_key!r}, argv={argv})"
    )
    if unknown:
        _log(f"(fake) accepted flags: {' '.join(unknown)}")
    _log("Load weight begin. avail mem=79.10 GB")

    if env.get("FAKE_SGLANG_FAIL") == "1":
        print("Traceback (most recent call last):", flush=True)
        print('  File "sglang/srt/model_executor/model_runner.py", line 412, in load_model', flush=True)
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (fake)", flush=True)
        _log("Received sigquit from a child process. It usually means the child failed.")
        return 1

    if env.get("FAKE_SGLANG_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if env.get("FAKE_SGLANG_CHILD_PID_FILE"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(env["FAKE_SGLANG_CHILD_PID_FILE"], "w") as f:
            f.write(str(child.pid))

    time.sleep(float(env.get("FAKE_SGLANG_LOAD_S", "0")))
    _log("Load weight end. type=Qwen3ForCausalLM, dtype=torch.bfloat16, mem usage=15.27 GB.")
    starting_s = float(env.get("FAKE_SGLANG_STARTING_S", "0"))
    srv = FakeSGLangServer(
        host=args.host,
        port=args.port,
        model_path=args.model_path,
        served_model_name=args.served_model_name,
        api_key=args.api_key,
        context_length=args.context_length,
        reasoning_parser=args.reasoning_parser,
        deterministic_inference=args.enable_deterministic_inference,
        starting=starting_s > 0,
        latency_base_ms=float(env.get("FAKE_SGLANG_LATENCY_BASE_MS", "0")),
        latency_per_token_ms=float(env.get("FAKE_SGLANG_LATENCY_PER_TOKEN_MS", "0")),
    )
    done = threading.Event()
    if env.get("FAKE_SGLANG_IGNORE_SIGTERM") != "1":
        signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    srv.start()
    _log(f"Uvicorn running on http://{args.host}:{srv.port} (Press CTRL+C to quit)")
    if starting_s > 0 and not done.wait(starting_s):
        srv.set_starting(False)
    if not done.is_set():
        _log(READY_LINE)
    done.wait()
    _log("Shutting down")
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
