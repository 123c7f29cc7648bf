"""Final-answer extraction from a model response. Pure string functions, no sympy.

The rules, in order:

1. **Strip thinking.** Everything up to and including the last ``</think>`` is removed. In what is left,
   an opening ``<think>`` (a thinking block that never closed: the output was truncated while the
   model was still thinking) cuts the text there, so nothing inside thinking is ever used as the
   answer. A response with ``<think>`` but no ``</think>`` therefore has no answer, and a
   ``\\boxed{}`` inside a thinking block is never extracted. Responses that only carry the closing
   tag (chat templates that put ``<think>`` in the prompt) are handled by the same rule.
2. **Cut inside a box.** If the last box command never closes (the output was truncated inside
   ``\\boxed{``), there is no answer: an earlier box is not the model's final word.
3. **Last box.** The last ``\\boxed{...}`` or ``\\fbox{...}`` whose braces close, with proper nesting
   (``\\boxed{\\frac{1}{2}}``) and escaped braces ignored (``\\boxed{\\{1, 2\\}}``). The space form
   ``\\boxed 5`` takes the next token (without trailing punctuation). "Last" is by the position of
   the box command, so for nested boxes (``\\boxed{x = \\boxed{5}}``) the inner one wins. Empty or
   blank boxes (``\\boxed{}``, ``\\boxed{\\ }``, ``\\boxed{\\quad}``, ``\\boxed{\\text{}}``:
   e.g. a model restating the format instruction) are skipped. Several boxes on the **same line** separated only by connectives
   (``and``, ``or``, commas, ``x =``, math delimiters) list the solutions and form one answer:
   ``$\\boxed{2}$ and $\\boxed{3}$`` is ``2, 3``; other words between them (``but rechecking``)
   leave the last box alone.
4. **Explicit statement.** With no usable box, the last "Final Answer: X", "The final answer is X",
   "Answer: X" or "**Answer:** X" (case-insensitive, Markdown bold allowed) wins. X is the first
   math span on the rest of that line (``$..$``, ``\\(..\\)``, ``\\[..\\]``), else the rest of the
   line up to the end of the sentence, with Markdown emphasis and trailing punctuation removed.
5. **Closing commitment.** Else the **last line** of the response may commit to a value: it ends
   with "the answer is X", "Hence/Thus/So/Therefore X" or is a bold ``**X**``, where X is a math
   span, a number or a choice letter followed only by the end of the sentence ("The answer is 42.",
   "So the answer is $17$.", "Hence $y = 3$.", "Thus, the minimum value is $12$.", "The answer is (D).";
   "the answer is approximately X" gives X, graded as the approximation it is). A value in the middle of the
   working ("we get 42 and then ...", "The answer is 42 if ...") is not an answer.
6. Nothing found, or an answer with control characters (``\\boxed{1\\x00}``, corrupted output) or a
   restated box command: ``None`` (graded as ``no_answer``).

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
# A box with only spacing inside is blank: `\boxed{\ }`, `\boxed{\,}`, `\boxed{\quad}`, `\boxed{~}`.
# An empty text wrapper is blank too: `\boxed{\text{}}`, `\boxed{\mathrm{\ }}`.
_BLANK_SPACING = re.compile(
    r"\\[,;:! ]|\\q?quad(?![a-zA-Z])|~|\\hspace\{[^}]*\}"
    r"|\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{(?:\s|\\[,;:! ]|\\q?quad(?![a-zA-Z])|~)*\}"
)
# What may separate boxes that list the solutions on one line: `$\boxed{2}$ and $x=\boxed{3}$`.
_CONNECTIVE = re.compile(r"(?:\s|\$|\\[()]|[,;&]|\band\b|\bor\b|\\text\{\s*(?:and|or)\s*\}|[A-Za-z](?:_\{?\d+\}?)?\s*=)*")
# Closing commitments (rule 4), only on the last line of the response.
_CLOSING_ANCHOR = re.compile(
    r"(?:\b(?:the|my|our)\s+(?:final\s+)?answer\s+is\b\s*:?|\b(?:hence|thus|therefore|so)\b,?)[ \t]*",
    re.IGNORECASE,
)
_CLOSING_BOLD = re.compile(r"\*\*([^*]{1,80})\*\*\.?")
# The value: one math span, a number, or a choice letter, then only the end of the sentence.
_CLOSING_VALUE = re.compile(
    r"(?:\$\$([^$]+)\$\$|\$([^$]+)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]"
    r"|\*\*([^*]+)\*\*|([-+]?\d[\d,]*(?:\.\d+)?)|(\(?[A-E]\)?))[ \t]*[.!]?"
    # a courtesy sentence may follow; nothing else may
    r"(?:[ \t]+I hope (?:it|this) (?:is correct|helps)[.!]?)?"
)
# "The answer is approximately $1.414$": the value given is the approximation (graded as such).
_APPROX_WORD = re.compile(r"^(?:approximately|about|roughly|around)[ \t]+", re.IGNORECASE)
# After "Hence/Thus/So/Therefore": "the minimum value is", "the number of pairs equals" ("the", then
# letters only, so the phrase never swallows a number or a math span; at most six words).
_NAMED_VALUE = re.compile(r"the[ \t]+(?:[A-Za-z][A-Za-z'-]*[ \t]+){0,5}?(?:is|are|equals|=)[ \t]+", re.IGNORECASE)
_BOX_WORD = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_LIST_LINE_MAX_CHARS = 2000
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
    close = _closing_brace(text, opener.end())
    if close is None:
        return None
    content = text[opener.end() : close]
    return None if _is_blank(content) else content.strip()


def _closing_brace(text: str, pos: int) -> int | None:
    """Index of the ``}`` that closes the group whose content starts at ``pos`` (just after its
    ``{``), escaped braces skipped; None when it never closes (the output was cut there)."""
    depth = 1
    for m in _BRACES.finditer(text, pos):
        kind = m.lastgroup
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            if depth == 0:
                return m.start()
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
                content = text[content_start : m.start()]
                if not _is_blank(content):
                    content = content.strip()
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

    Applies the rules of the module docstring: strip thinking; a box left open at the end
    (truncation) means no answer; the last box (joined with the boxes before it on the same line
    when they list solutions); else an explicit final-answer statement; else a closing commitment.
    """
    text = strip_thinking(response)
    if not text.strip():
        return None
    if _ends_inside_a_box(text):
        return None
    answer = last_boxed(text)
    if answer is not None:
        answer = _with_boxes_on_the_same_line(text, answer)
    else:
        answer = final_answer_statement(text)
        if answer is None:
            answer = closing_statement(text)
        if answer is not None and _BOX_WORD.search(answer):
            return None  # "The answer is $\boxed{}$.": a blank box, restated
    if answer is not None and _CONTROL.search(answer):
        return None  # `\boxed{1\x00\x00}` is corrupted output, not an answer
    return answer


def _is_blank(content: str) -> bool:
    r"""Empty, or only LaTeX spacing (``\ ``, ``\,``, ``\quad``, ``~``): a box left blank."""
    return not _BLANK_SPACING.sub("", content).strip()


def _ends_inside_a_box(text: str) -> bool:
    """True when the last box command never closes: the output was cut inside ``\boxed{``."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    opener = _BOX_OPEN.match(text, start) if start >= 0 else None
    return opener is not None and _closing_brace(text, opener.end()) is None


def _with_boxes_on_the_same_line(text: str, answer: str) -> str:
    """``$\\boxed{2}$ and $\\boxed{3}$`` on one line is one answer, ``2, 3``: the boxes are joined
    when only connectives (``and``, ``or``, commas, ``x =``, math delimiters) separate them."""
    end = len(text)
    for _ in range(_FAST_TRIES):  # the box that gave `answer` (blank ones after it were skipped)
        start = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if start < 0:
            return answer
        if _box_at(text, start) == answer:
            break
        end = start
    else:
        return answer
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    if len(line) > _LIST_LINE_MAX_CHARS:
        return answer  # not a sentence listing solutions; and joining must stay linear
    parts: list[str] = []
    prev_end = -1
    for m in _BOX_OPEN.finditer(line):
        content = _box_at(line, m.start())
        close = _box_close(line, m.start())
        if content is None or close is None or m.start() < prev_end:
            return answer  # a blank, unclosed or nested box: no list here
        if prev_end >= 0 and not _CONNECTIVE.fullmatch(line[prev_end : m.start()]):
            parts = []  # not a list: start again from this box
        parts.append(content)
        prev_end = close
    if len(parts) < 2 or parts[-1] != answer:
        return answer
    return ", ".join(dict.fromkeys(parts))


def _box_close(text: str, start: int) -> int | None:
    """Index just after the closing brace of the box whose command starts at ``start``."""
    opener = _BOX_OPEN.match(text, start)
    if opener is None:
        return None
    depth = 1
    for m in _BRACES.finditer(text, opener.end()):
        if m.lastgroup == "open":
            depth += 1
        elif m.lastgroup == "close":
            depth -= 1
            if depth == 0:
                return m.end()
    return None


def closing_statement(text: str) -> str | None:
    """The value a response commits to at its very end without a box or "Final answer:" (rule 4):
    the last line ends with "the answer is X.", "Hence/Thus/So/Therefore $X$." or is a bold
    ``**X**``. X must be a value (a math span, a number, a choice letter), never a phrase."""
    stripped = text.rstrip()
    last_line = stripped[stripped.rfind("\n") + 1 :].strip()
    if not last_line or len(last_line) > _STATEMENT_MAX_CHARS:
        return None
    bold = _CLOSING_BOLD.fullmatch(last_line)
    if bold:
        return _closing_value(bold.group(1))
    for m in reversed(list(_CLOSING_ANCHOR.finditer(last_line))):
        value = _closing_value(last_line[m.end() :])
        if value is not None:
            return value
    return None


def _closing_value(rest: str) -> str | None:
    rest = _APPROX_WORD.sub("", rest.strip(), count=1)
    m = _CLOSING_VALUE.fullmatch(rest)
    if m is None:
        # "Thus, the minimum value is $12$.": a short noun phrase, then "is", then the value.
        named = _NAMED_VALUE.match(rest)
        if named is None:
            return None
        m = _CLOSING_VALUE.fullmatch(_APPROX_WORD.sub("", rest[named.end() :], count=1))
        if m is None:
            return None
    value = next(g for g in m.groups() if g is not None).strip()
    return value or None


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
