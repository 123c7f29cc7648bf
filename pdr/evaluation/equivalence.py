"""Equivalence of two answer strings: inline fast paths (no sympy) and the math-verify check.

Pure functions. ``fast_check`` decides in microseconds what string normalization and exact number
comparison can decide; ``check`` runs math-verify (sympy) with pdr's corrections on top and has no
timeout of its own: the grader calls it in a killable worker process (``pdr.evaluation.pool``).
See ``pdr.evaluation.grading`` for the order of checks and the reasons behind each rule.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

__all__ = ["check", "fast_check", "load_math_verify", "math_verify_check"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Fast paths (inline, no sympy)
# --------------------------------------------------------------------------------------------------

_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_LEFT_RIGHT_DOT = re.compile(r"\\(?:left|right)\s*\.")  # invisible delimiters: drop entirely
_SIZING = re.compile(r"\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])")
_SPACING = re.compile(r"\\[,;:! ]|\\(?:quad|qquad|displaystyle|textstyle)(?![a-zA-Z])|~")
_WS = re.compile(r"\s+")
# A space survives only between two alphanumerics: `\pi r` (a different token from `\pir`), `2 3`.
_DROPPABLE_SPACE = re.compile(r"(?<![A-Za-z0-9]) | (?![A-Za-z0-9])")

_NUM_MAX_CHARS = 200  # longer "numbers" go to math-verify (and int() refuses > 4300 digits anyway)
_INT = re.compile(r"[+-]?\d+")
# Thousands separators: `1,000`, `1{,}000`, and `1\,000` / `1\!000` (spacing commands → a space).
_INT_SEP = re.compile(r"[+-]?\d{1,3}(?:(?:,|\{,\}| )\d{3})+")
_DEC = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+)")
_SLASH = re.compile(r"([+-]?\d+)/([+-]?\d+)")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}")
_FRAC_SHORT = re.compile(r"([+-]?)\\frac(\d)(\d)")
_BASE_NUMBER = re.compile(r"([0-9A-Za-z]+)_\{?(\d+)\}?")  # 52_8, 4210_{5}, 1A_{16}


def _normalize(s: str) -> str:
    """A canonical spelling of a LaTeX answer; equal outputs mean equal answers (see docstring)."""
    s = s.strip()
    for left, right in _DELIMS:
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _LEFT_RIGHT_DOT.sub("", s)
    s = _SIZING.sub("", s)
    s = _SPACING.sub(" ", s)
    s = s.replace("^{\\circ}", "^\\circ")
    s = _WS.sub(" ", s).strip()
    s = _DROPPABLE_SPACE.sub("", s)
    return s.rstrip(".")


def _plain_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, exact) if normalized ``s`` is a plain number; exact is False for decimals."""
    if len(s) > _NUM_MAX_CHARS:
        return None
    try:
        if _INT.fullmatch(s):
            return Fraction(int(s)), True
        if _INT_SEP.fullmatch(s):
            return Fraction(int(s.replace("{,}", "").replace(",", "").replace(" ", ""))), True
        if _DEC.fullmatch(s):
            return Fraction(s), False
        if m := _SLASH.fullmatch(s):
            return Fraction(int(m[1]), int(m[2])), True
        if m := _FRAC.fullmatch(s) or _FRAC_SHORT.fullmatch(s):
            value = Fraction(int(m[2]), int(m[3]))
            return (-value if m[1] == "-" else value), True
    except (ValueError, ZeroDivisionError):
        return None
    return None


def fast_check(extracted: str, gold: str) -> tuple[bool, str] | None:
    """(correct, method) when the fast paths can decide, else None (ask math-verify)."""
    pred_n, gold_n = _normalize(extracted), _normalize(gold)
    if pred_n == gold_n and pred_n:
        return True, "string"
    pred_b, gold_b = _BASE_NUMBER.fullmatch(pred_n), _BASE_NUMBER.fullmatch(gold_n)
    if pred_b and gold_b:
        # math-verify drops the base subscript, so `52_6` would "equal" `52_8`.
        return (pred_b[1].lstrip("0") == gold_b[1].lstrip("0") and pred_b[2] == gold_b[2]), "string"
    pred_v, gold_v = _plain_number(pred_n), _plain_number(gold_n)
    if pred_v is not None and gold_v is not None:
        if pred_v[0] == gold_v[0]:
            return True, "number"
        if pred_v[1] and gold_v[1]:
            return False, "number"
    return None


# --------------------------------------------------------------------------------------------------
# The math-verify check (runs in a worker process, or in the caller with workers=0)
# --------------------------------------------------------------------------------------------------


_SQRT_PAREN = re.compile(r"\\sqrt\s*\(")
# `1\,000`, `1\ 000`, `1{,}000`: thousands separators math-verify does not know (it does know `1,\!000`).
_THIN_SEPARATOR = re.compile(r"(?<=\d)(?:\\[,; ]|\{,\})(?=\d{3}(?!\d))")
_PLUS_MINUS = re.compile(r"\\(?:pm|mp)(?![a-zA-Z])")


def _sqrt_parens(s: str) -> str:
    """``\\sqrt(2)`` → ``\\sqrt{2}``: math-verify reads ``4\\sqrt(2)`` as 4 (Math-Verify #41)."""
    out: list[str] = []
    pos = 0
    for m in _SQRT_PAREN.finditer(s):
        if m.start() < pos:
            continue
        depth, j = 1, m.end()
        while j < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[j], 0)
            j += 1
        if depth:
            break  # unbalanced: leave the rest alone
        out.append(s[pos : m.start()] + "\\sqrt{" + s[m.end() : j - 1] + "}")
        pos = j
    return "".join(out) + s[pos:]


def _expand_plus_minus(s: str) -> str:
    """``a \\pm b`` → ``a + b, a - b`` when ``s`` is one expression with one ``\\pm``/``\\mp``:
    math-verify expands ``1 \\pm \\sqrt{19}`` itself but not ``\\frac{-1\\pm\\sqrt{17}}{2}``."""
    if "," in s or len(_PLUS_MINUS.findall(s)) != 1:
        return s
    plus = _PLUS_MINUS.sub(lambda m: "+" if m.group() == "\\pm" else "-", s)
    minus = _PLUS_MINUS.sub(lambda m: "-" if m.group() == "\\pm" else "+", s)
    return f"{plus}, {minus}"


def _as_math(s: str) -> str:
    """Wrap ``s`` in ``$...$`` unless it already carries math delimiters; math-verify's inline
    patterns stop at newlines, so those become spaces."""
    s = _THIN_SEPARATOR.sub("", _sqrt_parens(s.replace("\n", " ").strip()))
    if "$" in s.replace("\\$", "") or s.startswith(("\\(", "\\[")):
        return s
    return f"${s}$"


@lru_cache(maxsize=1)
def load_math_verify() -> Any:
    """Import and set up math-verify once per process (lazily: sympy costs ~0.3 s to import)."""
    import math_verify
    import math_verify.grader as mv_grader
    import math_verify.parser as mv_parser

    # We disable math-verify's timeouts on purpose (we kill the worker instead); silence the
    # one-time warning that says so, and its per-failure log noise.
    mv_grader.TIMEOUT_WARNING_SHOWN = True
    mv_parser.TIMEOUT_WARNING_SHOWN = True
    _install_relative_guard(mv_grader)
    return math_verify


@lru_cache(maxsize=1)
def _verify_options() -> dict[str, Any]:
    import inspect

    options: dict[str, Any] = {"timeout_seconds": None, "raise_on_error": False}
    # MATH-500 golds are intervals, answers are often inequalities (`x \le 3` for `(-\infty, 3]`):
    # let math-verify compare a relation with a set both ways (older versions lack the option).
    if "allow_set_relation_comp" in inspect.signature(load_math_verify().verify).parameters:
        options["allow_set_relation_comp"] = True
    return options


def _install_relative_guard(mv_grader: Any) -> None:
    original = getattr(mv_grader, "sympy_numeric_eq", None)
    if original is None:
        log.warning("math_verify.grader.sympy_numeric_eq not found: the 1/2004! vs 1/2006! guard is off")
        return
    if getattr(original, "_pdr_guard", False):
        return

    def sympy_numeric_eq(a: Any, b: Any, float_rounding: int, numeric_precision: int) -> bool:
        return bool(original(a, b, float_rounding, numeric_precision)) and _relatively_close(a, b, mv_grader)

    sympy_numeric_eq._pdr_guard = True  # type: ignore[attr-defined]
    mv_grader.sympy_numeric_eq = sympy_numeric_eq


def _relatively_close(a: Any, b: Any, mv_grader: Any) -> bool:
    """Second opinion on a numeric "equal": the relative difference must be small too.

    math-verify compares ``(a - b).evalf(chop=True)`` to 0 (or rounds both to 6 decimals), an
    absolute test that calls any two tiny numbers equal. Only closed-form numbers are re-checked;
    anything we cannot evaluate keeps math-verify's verdict.
    """
    from sympy import Expr, Float

    try:
        if not (isinstance(a, Expr) and isinstance(b, Expr)) or a.free_symbols or b.free_symbols:
            return True
        tol = 1e-4 if (a.has(Float) or b.has(Float)) else 1e-10
        pairs = [(a.doit(), b.doit())]
        get_pct_val = getattr(mv_grader, "get_pct_val", None)
        if get_pct_val is not None:  # math-verify also compares 9% with 9 by the bare values
            pairs.append((get_pct_val(a, a), get_pct_val(b, b)))
        for x, y in pairs:
            xv, yv = x.evalf(30), y.evalf(30)
            if not (xv.is_number and yv.is_number):
                return True
            diff = abs(xv - yv)
            if diff == 0 or bool(diff <= tol * max(abs(xv), abs(yv))):
                return True
        return False
    except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError):
        return True


@lru_cache(maxsize=4096)
def _parse(text: str) -> Any:
    """math-verify's parse of one answer (gold answers repeat across samples: cached)."""
    mv = load_math_verify()
    return mv.parse(
        _as_math(text),
        extraction_config=[mv.LatexExtractionConfig(), mv.ExprExtractionConfig()],
        parsing_timeout=None,
    )


def math_verify_check(gold: str, pred: str) -> tuple[bool, str | None]:
    """(equal, error) by math-verify. No timeout of its own: call it in a killable process."""
    mv = load_math_verify()
    gold_parsed = _parse(gold)
    if not gold_parsed:
        return False, "gold_unparsable"
    pred_parsed = _parse(pred)
    if not pred_parsed:
        return False, None  # the prediction is not math we can read: wrong, not an internal failure
    if mv.verify(gold_parsed, pred_parsed, **_verify_options()):
        return True, None
    gold_pm, pred_pm = _expand_plus_minus(gold), _expand_plus_minus(pred)
    if (gold_pm, pred_pm) != (gold, pred):
        gold_parsed, pred_parsed = _parse(gold_pm), _parse(pred_pm)
        if gold_parsed and pred_parsed:
            return bool(mv.verify(gold_parsed, pred_parsed, **_verify_options())), None
    return False, None


def check(gold: str, pred: str) -> tuple[bool, str | None]:
    try:
        return math_verify_check(gold, pred)
    except Exception as exc:  # noqa: BLE001 - sympy raises anything; the verdict is "wrong", with why
        return False, f"exception: {type(exc).__name__}"

