"""Final-answer extraction from a model response. Pure string functions, no sympy.

The rules, in order:

1. **Strip thinking.** Everything up to and including the last ``</think>`` is removed. In what is left,
   an opening ``<think>`` (a thinking block that never closed: the output was truncated while the
   model was still thinking) cuts the text there, so nothing inside thinking is ever used as the
   answer. A response with ``<think>`` but no ``</think>`` therefore has no answer, and a
   ``\\boxed{}`` inside a thinking block is never extracted. Responses that only carry the closing
   tag (chat templates that put ``<think>`` in the prompt) are handled by the same rule.
2. **Last box.** The last ``\\boxed{...}`` or ``\\fbox{...}`` whose braces close, with proper nesting
   (``\\boxed{\\frac{1}{2}}``) and escaped braces ignored (``\\boxed{\\{1, 2\\}}``). The space form
   ``\\boxed 5`` takes the next token (without trailing punctuation). "Last" is by the position of
   the box command, so for nested boxes (``\\boxed{x = \\boxed{5}}``) the inner one wins. Empty
   boxes (``\\boxed{}``, e.g. a model restating the format instruction) and boxes left unclosed by
   truncation are skipped: an earlier complete box is used.
3. **Explicit statement.** With no usable box, the last "Final Answer: X", "The final answer is X",
   "Answer: X" or "**Answer:** X" (case-insensitive, Markdown bold allowed) wins. X is the first
   math span on the rest of that line (``$..$``, ``\\(..\\)``, ``\\[..\\]``), else the rest of the
   line up to the end of the sentence, with Markdown emphasis and trailing punctuation removed.
   "The answer is X" without "final" or a colon is deliberately not an anchor: it is too common in
   the middle of reasoning.
4. Nothing found: ``None`` (graded as ``no_answer``).

Every function is linear in the length of the response (at most a few passes over the braces, no
regular expression that can backtrack badly), so a multi-megabyte response costs well under a
second, never a hang.
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "final_answer_statement", "last_boxed", "normalize_answer", "strip_thinking"]

_THINK_CLOSE = re.compile(r"</think\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think\s*>", re.IGNORECASE)

# One token stream for the brace matcher: box openers, escape pairs that must not count as braces
# (`\{`, `\}`, and `\\` so that `\\}` is a line break followed by a real closing brace), and braces.
_BRACE_TOKENS = re.compile(r"(?P<box>\\(?:boxed|fbox)\s*\{)|(?P<esc>\\[\\{}])|(?P<open>\{)|(?P<close>\})")
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACES = re.compile(r"(?P<esc>\\[\\{}])|(?P<open>\{)|(?P<close>\})")
_FAST_TRIES = 3
# `\boxed 5`: the box command, then whitespace, then one token (stops at whitespace and `$`).
_BOX_SPACE_FORM = re.compile(r"\\(?:boxed|fbox)[ \t]+([^\s${}\\][^\s$]*)")

# "Final answer: X", "The final answer is X", "Answer: X", "**Answer:** X", "**Final Answer**: X".
_STATEMENT = re.compile(
    # Written so that no two adjacent quantifiers can split the same whitespace run (no backtracking
    # blow-up on adversarial input).
    r"(?:\bfinal\s+answer\s*(?:\*\*\s*)?(?::|is\b\s*:?)|\banswer\s*(?:\*\*\s*)?:)[ \t]*(?:\*\*)?[ \t]*",
    re.IGNORECASE,
)
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
# End of sentence: a period (or !, ?) followed by whitespace; "3.5" is not an end.
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_STATEMENT_MAX_CHARS = 500  # how much of the line after the anchor we look at
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # control characters other than \t \n \r


def strip_thinking(response: str) -> str:
    """The part of ``response`` outside thinking (rule 1 of the module docstring).

    Returns ``""`` when the response is still inside an unclosed ``<think>`` block.
    """
    closes = list(_THINK_CLOSE.finditer(response))
    if closes:
        response = response[closes[-1].end() :]
    opened = _THINK_OPEN.search(response)
    if opened:
        response = response[: opened.start()]
    return response


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{}`` / ``\\fbox{}`` in ``text``, stripped.

    "Last" is by where the box command starts (so for nested boxes the inner one wins). ``None``
    when there is none. The last few box commands are matched forward from their position (the
    common case costs the length of the box, not of the response); if none of them is usable, one
    linear pass over all braces decides.
    """
    end = len(text)
    for _ in range(_FAST_TRIES):
        start = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if start < 0:
            return None
        content = _box_at(text, start)
        if content:
            return content
        end = start
    return _last_boxed_full(text)


def _box_at(text: str, start: int) -> str | None:
    """Content of the box whose command starts at ``start``, or None (unclosed, empty, not a box)."""
    opener = _BOX_OPEN.match(text, start)
    if opener is None:
        spaced = _BOX_SPACE_FORM.match(text, start)
        return (spaced.group(1).rstrip(".,;:") or None) if spaced else None
    depth = 1
    for m in _BRACES.finditer(text, opener.end()):
        kind = m.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            if depth == 0:
                return text[opener.end() : m.start()].strip() or None
    return None


def _last_boxed_full(text: str) -> str | None:
    """One pass with a stack of open braces over the whole text; the box that starts last wins."""
    stack: list[int] = []  # for each open brace: the content start if it opens a box, else -1
    best_start = -1
    best: str | None = None
    for m in _BRACE_TOKENS.finditer(text):
        kind = m.lastgroup
        if kind == "box":
            stack.append(m.end())
        elif kind == "open":
            stack.append(-1)
        elif kind == "close":
            if not stack:
                continue  # a stray closing brace: ignore it rather than derail the matching
            content_start = stack.pop()
            if content_start >= 0 and content_start > best_start:
                content = text[content_start : m.start()].strip()
                if content:
                    best_start, best = content_start, content
        # escape pairs (`\{`, `\}`, `\\`) are content, not structure
    for m in _BOX_SPACE_FORM.finditer(text):
        token = m.group(1).rstrip(".,;:")
        if token and m.start() > best_start:
            best_start, best = m.start(), token
    return best


def final_answer_statement(text: str) -> str | None:
    """X from the last "Final Answer: X" style statement (rule 3), or ``None``."""
    for m in reversed(list(_STATEMENT.finditer(text))):
        line = text[m.end() : m.end() + _STATEMENT_MAX_CHARS].split("\n", 1)[0]
        value = _statement_value(line)
        if value:
            return value
    return None


def _statement_value(line: str) -> str | None:
    math = _MATH_SPAN.search(line)
    if math:
        value = next(g for g in math.groups() if g is not None)
    else:
        end = _SENTENCE_END.search(line)
        value = line[: end.start()] if end else line
    value = value.strip().strip("*_`").strip()
    value = value.rstrip(".,;:").strip()
    return value or None


def extract_answer(response: str) -> str | None:
    """The final answer of ``response`` as a string, or ``None`` if it gave none.

    Applies the rules of the module docstring: strip thinking, then the last box, then an explicit
    final-answer statement.
    """
    text = strip_thinking(response)
    if not text.strip():
        return None
    answer = last_boxed(text)
    if answer is None:
        answer = final_answer_statement(text)
    if answer is not None and _CONTROL.search(answer):
        return None  # `\boxed{1\x00\x00}` is corrupted output, not an answer
    return answer


def normalize_answer(ans: str | None) -> str | None:
    """A cheap canonical spelling of an answer, for grouping answers (votes, agreement, the simulator's
    answer key); `grade` decides real equivalence."""
    if ans is None:
        return None
    s = ans.strip().strip("$").strip()
    for a, b in (("\\left", ""), ("\\right", ""), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\!", ""), (" ", "")):
        s = s.replace(a, b)
    if re.fullmatch(r"-?0*\d+", s):
        neg = s.startswith("-")
        s = ("-" if neg else "") + (s.lstrip("-").lstrip("0") or "0")
    return s or None
