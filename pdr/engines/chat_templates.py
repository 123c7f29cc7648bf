"""Client-side chat rendering for SGLang's native /generate, which applies no chat template.

Prefix caching on the server is keyed on token ids, so the same messages must always render to the
same text: every template here is a pure function of (messages, kwargs).

Templates (`engine.chat_template`):

* ``chatml`` — ``<|im_start|>role\\n…<|im_end|>``, generation prompt ``<|im_start|>assistant\\n``
  (Qwen2/2.5, QwQ and other ChatML models).
* ``qwen3`` — ChatML as Qwen3's template renders it: earlier assistant turns lose their thinking
  block, and ``enable_thinking=False`` (from `engine.chat_template_kwargs`) appends the empty
  ``<think>\\n\\n</think>\\n\\n`` that switches thinking off.
* ``llama3`` — Llama 3 headers. No ``<|begin_of_text|>``: the server's tokenizer adds BOS itself
  and a second one degrades the output. (Llama 3.1's default system "knowledge date" preamble is
  not added; use `engine.tokenizer_path` for byte-exact HF rendering.)
* a path to a Jinja file — an HF-style template rendered with `messages`, `add_generation_prompt`,
  `bos_token=""`, `eos_token=""` and the kwargs (needs `jinja2`).
* `engine.tokenizer_path` — the HF tokenizer's own `apply_chat_template` (needs `transformers`,
  an optional dependency; a leading BOS is stripped when the tokenizer adds one anyway).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pdr.engines.base import Message, split_thinking
from pdr.errors import ConfigError

logger = logging.getLogger(__name__)

RenderFn = Callable[[Sequence[Message], dict[str, Any]], str]


@dataclass(frozen=True)
class ChatTemplate:
    """A named renderer: `render(messages, **kwargs)` → the prompt text, ending with the
    assistant generation prompt. `name` goes into the engine identity (it changes outputs)."""

    name: str
    fn: RenderFn

    def render(self, messages: Sequence[Message], **kwargs: Any) -> str:
        return self.fn(messages, kwargs)


def _chatml(messages: Sequence[Message], kwargs: dict[str, Any]) -> str:
    parts = [f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


def _qwen3(messages: Sequence[Message], kwargs: dict[str, Any]) -> str:
    parts = []
    for m in messages:
        content = m.content
        if m.role == "assistant":
            # Qwen3's template drops earlier turns' reasoning from the history.
            content = split_thinking(content)[1].strip()
        parts.append(f"<|im_start|>{m.role}\n{content}<|im_end|>\n")
    out = "".join(parts) + "<|im_start|>assistant\n"
    if kwargs.get("enable_thinking", True) is False:
        out += "<think>\n\n</think>\n\n"
    return out


def _llama3(messages: Sequence[Message], kwargs: dict[str, Any]) -> str:
    parts = [
        f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content.strip()}<|eot_id|>" for m in messages
    ]
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


BUILTIN_TEMPLATES: dict[str, RenderFn] = {"chatml": _chatml, "qwen3": _qwen3, "llama3": _llama3}


def guess_template(model_path: str) -> str | None:
    """The built-in template for a model path by family name, or None when unknown."""
    low = model_path.lower()
    if "deepseek" in low:  # e.g. DeepSeek-R1-Distill-Qwen/Llama use DeepSeek's own template
        return None
    if "qwen3" in low:
        return "qwen3"
    if "qwen" in low or "qwq" in low:
        return "chatml"
    if any(s in low for s in ("llama-3", "llama3", "llama-3.1", "llama-3.2", "llama-3.3")):
        return "llama3"
    return None


def _jinja_template(path: str) -> ChatTemplate:
    try:
        import jinja2
    except ImportError:
        raise ConfigError(
            f"engine.chat_template={path}: a Jinja template file needs `pip install jinja2`"
        ) from None
    with open(path, encoding="utf-8") as f:
        source = f.read()
    import jinja2.ext
    import jinja2.sandbox

    # The environment HF `apply_chat_template` uses, so HF template files render the same.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )

    def raise_exception(msg: str) -> None:
        raise ConfigError(f"engine.chat_template={path}: the template refused the messages: {msg}")

    env.globals["raise_exception"] = raise_exception
    tmpl = env.from_string(source)

    def render(messages: Sequence[Message], kwargs: dict[str, Any]) -> str:
        ctx = {"bos_token": "", "eos_token": "", "add_generation_prompt": True, **kwargs}
        return tmpl.render(messages=[{"role": m.role, "content": m.content} for m in messages], **ctx)

    # Named by content, not location: the name is part of the call-cache key.
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return ChatTemplate(f"file:{os.path.basename(path)}:{digest}", render)


def _hf_template(tokenizer_path: str) -> ChatTemplate:
    try:
        from transformers import AutoTokenizer  # optional dependency
    except ImportError:
        raise ConfigError(
            f"engine.tokenizer_path={tokenizer_path}: needs `pip install transformers` "
            "(or set engine.chat_template=chatml|qwen3|llama3 instead)"
        ) from None
    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"engine.tokenizer_path={tokenizer_path}: this tokenizer has no chat template")
    bos = getattr(tok, "bos_token", None)
    adds_bos = bool(bos) and tok("x").input_ids[:1] == [tok.bos_token_id]

    def render(messages: Sequence[Message], kwargs: dict[str, Any]) -> str:
        text = tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=True,
            **kwargs,
        )
        if adds_bos and bos and text.startswith(bos):
            text = text[len(bos) :]  # the server's tokenizer adds BOS again
        return text

    return ChatTemplate(f"hf:{tokenizer_path}", render)


def resolve_template(
    chat_template: str | None, tokenizer_path: str | None, model_paths: Sequence[str | None]
) -> ChatTemplate:
    """Pick the renderer: an explicit `chat_template` (name or file) wins, then `tokenizer_path`,
    then a guess from the first model path whose family is known. Raises ConfigError otherwise.

    May block (loading a tokenizer): call it off the event loop.
    """
    if chat_template:
        if chat_template in BUILTIN_TEMPLATES:
            return ChatTemplate(chat_template, BUILTIN_TEMPLATES[chat_template])
        if os.path.isfile(chat_template):
            return _jinja_template(chat_template)
        raise ConfigError(
            f"engine.chat_template={chat_template!r}: neither a built-in template "
            f"({', '.join(BUILTIN_TEMPLATES)}) nor an existing template file"
        )
    if tokenizer_path:
        return _hf_template(tokenizer_path)
    for path in model_paths:
        if path:
            name = guess_template(path)
            if name is not None:
                logger.info("native API: rendering chats with the %r template (guessed from %s)", name, path)
                return ChatTemplate(name, BUILTIN_TEMPLATES[name])
    known = ", ".join(p for p in model_paths if p) or "unknown"
    raise ConfigError(
        f"engine.chat_template is not set and no template is known for model {known}: set "
        f"engine.chat_template=chatml|qwen3|llama3 (or a Jinja file), engine.tokenizer_path=<HF tokenizer>, "
        "or use engine.api=chat to let the server render"
    )
