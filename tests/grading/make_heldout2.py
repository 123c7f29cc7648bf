"""Appends batch 2 (73 cases, lines 261-333) to tests/grading/heldout.jsonl; run after make_heldout.py.
Written after seeing batch 1 results (one false positive on a long decimal approximation) but before
reading pdr/evaluation or cases.jsonl; labelled from the README policy only."""
import json

POL = "tests/grading/README.md#labelling-policy"
MV48 = "https://github.com/huggingface/Math-Verify/issues/48"
VERIF = "https://github.com/PrimeIntellect-ai/verifiers/pull/1028"
MARIN = "https://github.com/marin-community/marin/pull/9163"
M5 = "pdr/data/bundled/math500.jsonl"
HM = "pdr/data/bundled/hmmt_feb2025.jsonl"
W = ("Let me denote the quantity by $S$. Expanding, $S = \\sum_{k=1}^{n} (2k-1) = n^2$. Checking $n=3$: $1+3+5=9$. "
     "Good. Now I apply the constraint from the statement and simplify the resulting expression carefully, "
     "keeping track of signs.")
cases = []
def add(final, gold, expected, source, rule, think=True, closed=True):
    if think:
        r = "<think>\n" + W + ("\n</think>\n\n" + final if closed else " " + final)
    else:
        r = W + "\n\n" + final
    cases.append(dict(response=r, gold=gold, expected=expected, source=source, rule=rule))
def B(v):
    return f"The answer is $\\boxed{{{v}}}$."
# approximations of exact values (format counts)
add(B("3.14159265"), r"\pi", "wrong", POL, "decimal approximation of exact")
add(B("0.7071067811865476"), r"\frac{\sqrt{2}}{2}", "wrong", MV48, "decimal approximation of exact")
add(B("1.4142135623730951"), r"\sqrt{2}", "wrong", MV48, "decimal approximation of exact")
add(B("0.142857142857"), r"\frac{1}{7}", "wrong", POL, "decimal approximation of fraction")
add(B(r"0.\overline{142857}"), r"\frac{1}{7}", "correct", POL, "repeating decimal")
add(B("2.718281828"), r"e", "wrong", POL, "decimal approximation of e")
add(B("6.283185307179586"), r"2\pi", "wrong", POL, "decimal approximation of pi")
add(B(r"2\pi \approx 6.28"), r"2\pi", "correct", POL, "exact with approximation")
add(B(r"2π ≈ 6.28"), r"2\pi", "correct", POL, "exact with approximation, unicode")
add(B(r"\sqrt{2} \approx 1.414"), r"\sqrt{2}", "correct", POL, "exact with approximation")
add("The answer is approximately $1.414$.", r"\sqrt{2}", "wrong", POL, "approximation in closing sentence")
add(B("4.1231"), r"\sqrt{17}", "wrong", MV48, "decimal approximation of exact")
add(B("149.33"), r"\frac{448}{3}", "wrong", HM, "decimal approximation of fraction")
add(B(r"149\frac{1}{3}"), r"\frac{448}{3}", "correct", HM, "mixed number")
add(B(r"149.\overline{3}"), r"\frac{448}{3}", "correct", HM, "repeating decimal")
add(B(r"-3.8\overline{8}"), r"-\frac{35}{9}", "correct", M5, "repeating decimal negative")
add(B("-3.89"), r"-\frac{35}{9}", "wrong", M5, "decimal approximation")
add(B(r"\frac{-35}{9}"), r"-\frac{35}{9}", "correct", M5, "sign placement")
add(B("0.0536"), r"\frac{3}{56}", "wrong", M5, "decimal approximation")
add(B(r"\frac{8}{2}"), "4", "correct", POL, "value not spelling")
add(B("1/576"), r"\frac{1}{576}", "correct", HM, "a/b")
add(B("576"), r"\frac{1}{576}", "wrong", HM, "near miss")
# closing commitments / which answer counts
add("Final answer: 42", "42", "correct", POL, "closing commitment", think=False)
add("**Answer: 42**", "42", "correct", POL, "closing bold", think=False)
add("Thus, the minimum value is $12$.", "12", "correct", POL, "closing commitment")
add("So the answer is $3/4$.", r"\frac{3}{4}", "correct", POL, "closing commitment a/b")
add("The answer is 42. I hope this helps!", "42", "correct", POL, "closing commitment then pleasantry")
add("The answer is", "42", "no_answer", POL, "cut mid-sentence")
add("Solving the system we get $x = 5$. Substituting back into the second equation, we check that $2(5) + 1 = 11$, which matches.", "5", "no_answer", VERIF, "value only in working")
add("The answer is $\\boxed{4", "4", "no_answer", MARIN, "cut inside boxed")
add("The answer is $\\boxed{\\frac{3", r"\frac{3}{4}", "no_answer", MARIN, "cut inside boxed")
add("So far the count is $\\boxed{12}$, but I still need to subtract the overcounted cases where", "12", "no_answer", POL, "box only inside unfinished think", closed=False)
add("The answer is $\\boxed{12}$.\n\nThe boxed answer above is final; note that 13 would be off by one.", "12", "correct", POL, "sentence mentioning boxed after box")
add("The answer is $\\boxed{12}$.\n\nThe boxed answer above is final; note that 13 would be off by one.", "13", "wrong", POL, "sentence mentioning boxed after box")
add("I'm not able to help with that request.", "42", "no_answer", POL, "refusal")
add("Find the value of $x$ such that $2x = 10$.", "5", "no_answer", POL, "restatement")
add(B(r"\text{}"), "5", "no_answer", POL, "empty box")
add(B(" "), "5", "no_answer", POL, "blank box")
add(B("1\x1b[0m2"), "12", "no_answer", POL, "control characters")
# lists / pm
add(B(r"\pm 3"), "3, -3", "correct", POL, "pm response vs list gold")
add(B(r"\pm 3"), "3", "wrong", POL, "pm response has extra element")
add(B("3"), r"\pm 3", "wrong", POL, "pm gold missing element")
add(B(r"-3, 3"), r"\pm 3", "correct", POL, "pm gold as list")
add(B(r"\{1, 2\}"), "1, 2", "correct", POL, "set braces")
add(B("2, 1, 1"), "1, 2, 3", "wrong", POL, "missing element")
add(B("1, 2, 3, 4"), "1, 2, 3", "wrong", POL, "extra element")
# base-n
add(B("11"), "1011_2", "wrong", POL, "base-n in base 10")
add(B("1011_{2}"), "1011_2", "correct", POL, "base-n spelling")
# units, percent, degrees, separators
add(B(r"40\text{ mph}"), "40", "correct", POL, "units")
add(B(r"25"), r"25\%", "correct", POL, "percent")
add(B(r"25\%"), r"25\%", "correct", POL, "percent")
add(B(r"45^{\circ}"), "45", "correct", POL, "degrees")
add(B("45°"), "45", "correct", POL, "degrees unicode")
add(B("54°"), "45", "wrong", POL, "degrees near miss")
add(B("1{,}000{,}000"), "1000000", "correct", POL, "thousands separators")
add(B("1,000,000"), "1000000", "correct", POL, "thousands separators")
add(B(r"10⁶"), "1000000", "correct", POL, "unicode superscript")
add(B(r"3 × 10^4"), "30000", "correct", POL, "unicode times")
add(B(r"2·5"), "10", "correct", POL, "unicode cdot")
add(B(r"¾"), r"\frac{3}{4}", "correct", POL, "unicode fraction")
add(B(r"\text{YES}"), r"\text{yes}", "correct", POL, "word case")
add(B(r"k = 4"), "4", "correct", POL, "x= prefix")
add(B(r"n = 5"), "4", "wrong", POL, "x= prefix near miss")
# constants
add(B(r"-2 - 7i"), r"-2 + 7i", "wrong", M5, "constant i sign")
add(B(r"7i - 2"), r"-2 + 7i", "correct", M5, "reordered complex")
add(B(r"2\mathrm{e}"), r"2e", "correct", POL, "mathrm e")
add(B(r"-2\mathrm{e}"), r"2e", "wrong", POL, "mathrm e sign")
add(B(r"e^{-\pi}"), r"e^{\pi}", "wrong", POL, "constant sign in exponent")
add(B(r"\sqrt{a^2 b}"), r"a\sqrt{b}", "correct", POL, "positive symbols")
add(B(r"\sqrt{a b^2}"), r"a\sqrt{b}", "wrong", POL, "positive symbols near miss")
# matrices / vectors
add(B(r"\begin{pmatrix} -\frac13 \\ \frac23 \\ \frac53 \end{pmatrix}"), r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", "correct", M5, "matrix value")
add(B(r"\begin{pmatrix} \frac13 \\ \frac23 \\ \frac53 \end{pmatrix}"), r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", "wrong", M5, "matrix sign")
add(B(r"\begin{pmatrix} -1 & 0 \\ 0 & 1 \end{pmatrix}"), r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", "wrong", M5, "matrix entry")
with open("tests/grading/heldout.jsonl", "a", encoding="utf-8") as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
print(len(cases))
