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

__all__ = ["check", "fast_check", "load_math_verify", "math_verify_check", "prepare"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Preparation of both sides (before the fast paths and math-verify)
# --------------------------------------------------------------------------------------------------

# Unicode math as LaTeX. Commands get a trailing space so that `πr` stays two tokens (`\pi r`);
# normalization drops the spaces that do not separate two letters or digits.
_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u22c5": "\\cdot ", "\u00b7": "\\cdot ",
    "\u00f7": "\\div ", "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ",
    "\u2260": "\\ne ", "\u2248": "\\approx ", "\u00b0": "^\\circ ", "\u00bd": "\\frac{1}{2}",
    "\u2153": "\\frac{1}{3}", "\u2154": "\\frac{2}{3}", "\u00bc": "\\frac{1}{4}", "\u00be": "\\frac{3}{4}",
    "\u2026": "\\ldots ", "\u222a": "\\cup ", "\u2229": "\\cap ", "\u2208": "\\in ",
    "\u00b1": "\\pm ", "\u2213": "\\mp ", "\u2205": "\\emptyset ",
}
_SUPERSCRIPTS = str.maketrans("\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a", "0123456789-+")
_SUPERSCRIPT_RUN = re.compile("[\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u207b\u207a]+")
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
# `√2`, `√x`, `√(x+1)`, `√{2}`: the radicand is a parenthesized group or one number/letter token.
_ROOT = re.compile("([\u221a\u221b])\\s*(\\([^()]*\\)|\\{[^{}]*\\}|\\d+(?:\\.\\d+)?|[A-Za-z]|\\\\[A-Za-z]+)")
# Euler's number written upright: `\mathrm{e}`, `\mathrm e`, `\text{e}`, `\operatorname{e}`.
_UPRIGHT_E = re.compile(r"\\(?:mathrm|text|operatorname|rm)\s*(?:\{\s*e\s*\}|\s+e(?![A-Za-z]))")
_APPROX = re.compile(r"\\approx(?![A-Za-z])|\\simeq(?![A-Za-z])")
# Repeating decimals: `0.\overline{27}`, `0.1\overline{6}`, `0.1\dot{6}`, `0.(27)`, `0.666\ldots`, `0.666...`.
_OVERLINE = re.compile(
    r"(?<![\d.])([+-]?)(\d*)\.(\d*)(?:\\overline|\\dot)\s*\{(\d+)\}|(?<![\d.])([+-]?)(\d*)\.(\d*)\((\d+)\)"
)
_ELLIPSIS_DECIMAL = re.compile(r"(?<![\d.])([+-]?)(\d*)\.(\d+)\s*(?:\\[lc]?dots(?![A-Za-z])|\.\.\.)")


def prepare(s: str) -> str:
    """The answer as math-verify and the fast paths should read it (applied to gold and answer):
    Unicode math as LaTeX, an upright ``e`` as ``e``, ``X \\approx Y`` as its exact part ``X``,
    and a repeating decimal as the fraction it denotes. Ordinary LaTeX answers pass unchanged."""
    if not s.isascii():
        s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], s)
        s = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + m.group().translate(_SUPERSCRIPTS) + "}", s)
        s = _ROOT.sub(_root_latex, s)
    if "\\" in s:
        s = _UPRIGHT_E.sub("e", s).replace("\\varnothing", "\\emptyset")
        approx = _APPROX.search(s)
        if approx and s[: approx.start()].strip(" $"):
            s = s[: approx.start()].rstrip()
    if "." in s:
        s = _OVERLINE.sub(_overline_fraction, s)
        s = _ELLIPSIS_DECIMAL.sub(_ellipsis_fraction, s)
    return s


def _root_latex(m: re.Match[str]) -> str:
    radicand = m.group(2)
    if radicand[0] in "({":
        radicand = radicand[1:-1]
    return ("\\sqrt{" if m.group(1) == "\u221a" else "\\sqrt[3]{") + radicand + "}"


def _repeating(sign: str, whole: str, fixed: str, period: str) -> str:
    """``\\frac{p}{q}`` for sign whole.fixed(period repeating)."""
    shift = 10 ** len(fixed)
    value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), shift)
    value += Fraction(int(period), shift * (10 ** len(period) - 1))
    if sign == "-":
        value = -value
    if value.denominator == 1:
        return str(value.numerator)
    return ("-" if value < 0 else "") + f"\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _overline_fraction(m: re.Match[str]) -> str:
    if m.group(4) is not None:
        return _repeating(m.group(1), m.group(2), m.group(3), m.group(4))
    return _repeating(m.group(5), m.group(6), m.group(7), m.group(8))


def _ellipsis_fraction(m: re.Match[str]) -> str:
    """``0.1666\\ldots``: the shortest block that repeats at least twice at the end of the digits
    (three times for a one-digit block) is the period; no such block leaves the text unchanged."""
    sign, whole, digits = m.group(1), m.group(2), m.group(3)
    for size in range(1, len(digits) // 2 + 1):
        block = digits[-size:]
        reps = 1
        while digits[: len(digits) - reps * size].endswith(block):
            reps += 1
        if reps >= (3 if size == 1 else 2):
            fixed = digits[: len(digits) - reps * size]
            return _repeating(sign, whole, fixed, block)
    return m.group()


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
    sequence = sequence_check(gold_n, pred_n, _element_fast)
    if sequence is not None:
        return sequence, "sequence"
    return _fast_value_check(pred_n, gold_n)


def _fast_value_check(pred_n: str, gold_n: str) -> tuple[bool, str] | None:
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


def _element_fast(gold: str, pred: str) -> bool | None:
    decided = _fast_value_check(pred, gold) if pred != gold else (True, "string")
    return None if decided is None else decided[0]


_ELLIPSIS = re.compile(r"\\[lc]?dots(?![A-Za-z])|\.\.\.|\u2026")


def sequence_check(gold: str, pred: str, element_equal: Any) -> bool | None:
    """A sequence or pattern with an ellipsis (``1, 3, 5, \\ldots``) is compared element by element,
    in order, ellipsis against ellipsis: same length, same places for the ellipses, every element
    equal by ``element_equal(gold_el, pred_el) -> bool | None``. None when neither side is such a
    list, or when ``element_equal`` cannot decide an element (then a slower check decides)."""
    gold_items, pred_items = _top_level_items(gold), _top_level_items(pred)
    gold_dots = [bool(_ELLIPSIS.fullmatch(x)) for x in gold_items]
    pred_dots = [bool(_ELLIPSIS.fullmatch(x)) for x in pred_items]
    if not ((len(gold_items) > 1 and any(gold_dots)) or (len(pred_items) > 1 and any(pred_dots))):
        return None
    if gold_dots != pred_dots:
        return False
    undecided = False
    for g, p, dots in zip(gold_items, pred_items, gold_dots, strict=True):
        if dots:
            continue
        equal = element_equal(g, p)
        if equal is False:
            return False
        undecided |= equal is None
    return None if undecided else True


def _top_level_items(s: str) -> list[str]:
    """``s`` split at commas outside brackets and braces, stripped (``\\{1, 2\\}`` is one item)."""
    s = s.strip()
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(s[start:i].strip())
            start = i + 1
    items.append(s[start:].strip())
    return items


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
    absolute test that calls any two tiny numbers equal, and a 6-decimal rounding equal to the
    exact value. Only closed-form numbers are re-checked;
    anything we cannot evaluate keeps math-verify's verdict.
    """
    from sympy import Expr, Float

    try:
        if not (isinstance(a, Expr) and isinstance(b, Expr)) or a.free_symbols or b.free_symbols:
            return True
        # A decimal must be the value, not an approximation of it (issue 13: `1.7320508` for
        # `\sqrt{3}` is wrong); 1e-12 only absorbs the binary rounding of sympy's Floats.
        # Exact closed forms must agree to 40 digits (`\\sqrt{2} + 10^{-20}` is not `\\sqrt{2}`).
        tol = 1e-12 if (a.has(Float) or b.has(Float)) else 1e-40
        if _decimal_for_irrational(a, b) or _decimal_for_irrational(b, a):
            return False
        pairs = [(a.doit(), b.doit())]
        get_pct_val = getattr(mv_grader, "get_pct_val", None)
        if get_pct_val is not None:  # math-verify also compares 9% with 9 by the bare values
            pairs.append((get_pct_val(a, a), get_pct_val(b, b)))
        for x, y in pairs:
            xv, yv = x.evalf(60), y.evalf(60)
            if not (xv.is_number and yv.is_number):
                return True
            diff = abs(xv - yv)
            if diff == 0 or bool(diff <= tol * max(abs(xv), abs(yv))):
                return True
        return False
    except (TypeError, ValueError, ArithmeticError, AttributeError, RecursionError):
        return True


def _decimal_for_irrational(dec: Any, exact: Any) -> bool:
    """``dec`` is a plain decimal number and ``exact`` a Float-free irrational closed form: however
    many digits (``1.4142135623730951`` for ``\\sqrt{2}``, a float64 repr within 1e-16), a decimal
    only approximates it (policy: a decimal approximation of an exact value is wrong).
    Known cost: sympy evaluates a function of a decimal to a Float, so ``e^{1.0}`` or ``\\sqrt{2.0}``
    (spellings of an irrational with a decimal inside) count as decimals too and are graded wrong."""
    from sympy import Float, Rational

    if not dec.has(Float) or exact.has(Float):
        return False
    as_rational = dec.xreplace({f: Rational(str(f)) for f in dec.atoms(Float)})
    return bool(as_rational.is_rational) and exact.is_rational is False


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
    sequence = sequence_check(gold, pred, lambda g, p: math_verify_check(g, p)[0])
    if sequence is not None:
        return sequence, None
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
        gold_pm_parsed, pred_pm_parsed = _parse(gold_pm), _parse(pred_pm)
        if gold_pm_parsed and pred_pm_parsed:
            return bool(mv.verify(gold_pm_parsed, pred_pm_parsed, **_verify_options())), None
    return _equal_for_positive_symbols(gold_parsed[0], pred_parsed[0]), None


_SAMPLE_POINTS = ((2, 3, 5), (7, 11, 13), (3, 2, 17))


def _equal_for_positive_symbols(gold: Any, pred: Any) -> bool:
    """Equal when ``i`` is the imaginary unit and every other variable a positive real, the
    assumption a contest answer implies for its parameters (``\\sqrt{2/k}`` = ``\\sqrt{2}/\\sqrt{k}``,
    ``\\sqrt{n^2}`` = ``n``, Math-Verify #64), which sympy does not make. Only plain expressions with
    the same variables on both sides and no ``|.|`` (an absolute value in the gold says the sign
    matters); a quick numeric test at a few positive points rejects, ``simplify`` confirms."""
    from sympy import Abs, Dummy, Expr, I, sign, simplify

    if not (isinstance(gold, Expr) and isinstance(pred, Expr)):
        return False
    if gold.has(Abs, sign) or pred.has(Abs, sign):
        return False
    # math-verify's `i` is a symbol (with assumptions of its own): match it by name.
    gold = gold.subs({x: I for x in gold.free_symbols if x.name == "i"})
    pred = pred.subs({x: I for x in pred.free_symbols if x.name == "i"})
    symbols = sorted(gold.free_symbols, key=str)
    if set(symbols) != pred.free_symbols or len(symbols) > 3:
        return False
    if not symbols:  # `i^2` vs `-1`: closed forms, compared to 40 significant digits
        if gold == pred:
            return True
        gv, pv = gold.evalf(60), pred.evalf(60)
        if not all(v.is_number and v.is_finite for v in (gv, pv)):
            return False
        scale = max(abs(gv), abs(pv))
        return bool(scale == 0 or abs(gv - pv) <= 1e-40 * scale)
    positive = {x: Dummy(x.name, positive=True) for x in symbols}
    g, p = gold.subs(positive), pred.subs(positive)
    for point in _SAMPLE_POINTS:
        values = dict(zip(positive.values(), point, strict=False))
        gv, pv = complex(g.subs(values).evalf(30)), complex(p.subs(values).evalf(30))
        if abs(gv - pv) > 1e-9 * max(1.0, abs(gv), abs(pv)):
            return False
    return bool(simplify(g - p) == 0)


def check(gold: str, pred: str) -> tuple[bool, str | None]:
    """``math_verify_check`` that never raises: an exception is ``(False, "exception: <Type>")``."""
    try:
        return math_verify_check(gold, pred)
    except Exception as exc:  # noqa: BLE001 - sympy raises anything; the verdict is "wrong", with why
        return False, f"exception: {type(exc).__name__}"
