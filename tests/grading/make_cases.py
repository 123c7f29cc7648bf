"""Writes tests/grading/cases.jsonl: the labelled grading regression set (issue 13).

    python tests/grading/make_cases.py

Each case: response, gold, expected status (correct | wrong | no_answer: what a careful AIME /
MATH-500 grader decides under the labelling policy in tests/grading/README.md), source (where the
case or its pattern comes from) and rule (which policy rule it exercises). The cases are written
here by hand, after patterns reported in the sources; the bundled-gold cases take each gold answer
of pdr/data/bundled/*.jsonl and write a response around it (or around a deliberately wrong variant).
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLED = HERE.parents[1] / "pdr" / "data" / "bundled"

POLICY = "pdr issue 13 labelling policy"
MV14 = "https://github.com/huggingface/Math-Verify/issues/14"
MV25 = "https://github.com/huggingface/Math-Verify/issues/25"
MV37 = "https://github.com/huggingface/Math-Verify/issues/37"
MV41 = "https://github.com/huggingface/Math-Verify/issues/41"
MV64 = "https://github.com/huggingface/Math-Verify/issues/64"
MV76 = "https://github.com/huggingface/Math-Verify/issues/76"
LMEVAL_ANSWER = "https://github.com/EleutherAI/lm-evaluation-harness/issues/3643"
LMEVAL_BOXED_WORD = "https://github.com/EleutherAI/lm-evaluation-harness/issues/3477"
MARIN_EMPTY_BOX = "https://github.com/marin-community/marin/pull/9163"
NEMO_ANSWER_LETTER = "https://github.com/NVIDIA-NeMo/Skills/pull/1526"
VERIFIERS_NO_BOX = "https://github.com/PrimeIntellect-ai/verifiers/pull/1028"
SIEVAL_FORMAT = "https://github.com/scitix/sieval/issues/26"
QWEN_PARSER = "QwenLM/Qwen2.5-Math:evaluation/parser.py (strip_string: units, \\text, \\%, degrees)"
MATHARENA_PARSER = "eth-sri/matharena (last \\boxed/\\fbox with brace matching)"
PRIOR_ART = "/work/shared/docs/prior-art.md §7 (Math-Verify pitfalls)"

C, W, N = "correct", "wrong", "no_answer"


def b(x: str) -> str:
    return f"Therefore the answer is $\\boxed{{{x}}}$."


# (response, gold, expected, source, rule)
HAND: list[tuple[str, str, str, str, str]] = [
    # --- value equivalence: fractions -------------------------------------------------------------
    (b(r"\dfrac{3}{4}"), r"\frac{3}{4}", C, QWEN_PARSER, "frac-variants"),
    (b(r"\tfrac{3}{4}"), r"\frac34", C, QWEN_PARSER, "frac-variants"),
    (b("3/4"), r"\frac{3}{4}", C, QWEN_PARSER, "frac-variants"),
    (b("0.75"), r"\frac{3}{4}", C, POLICY, "terminating-decimal"),
    (b(r"\frac{3}{4}"), "0.75", C, POLICY, "terminating-decimal"),
    (b(r"\frac{6}{8}"), r"\frac{3}{4}", C, POLICY, "frac-variants"),
    (b(r"\frac{4}{3}"), r"\frac{3}{4}", W, POLICY, "frac-variants"),
    (b("0.7"), r"\frac{3}{4}", W, POLICY, "terminating-decimal"),
    (b(r"-\frac{5}{2}"), r"\frac{-5}{2}", C, POLICY, "frac-variants"),
    (b(r"\frac{5}{-2}"), r"-\frac{5}{2}", C, POLICY, "frac-variants"),
    (b(r"\frac{5}{2}"), r"-\frac{5}{2}", W, POLICY, "sign"),
    (b("2.5"), r"\frac52", C, POLICY, "terminating-decimal"),
    (b(r"2\frac{1}{2}"), r"\frac{5}{2}", C, POLICY, "mixed-number"),
    # --- repeating decimals, both directions --------------------------------------------------------
    (b(r"0.\overline{27}"), r"\frac{3}{11}", C, POLICY, "repeating-decimal"),
    (b(r"\frac{3}{11}"), r"0.\overline{27}", C, POLICY, "repeating-decimal"),
    (b(r"0.1\overline{6}"), r"\frac{1}{6}", C, POLICY, "repeating-decimal"),
    (b(r"\frac16"), r"0.1\overline{6}", C, POLICY, "repeating-decimal"),
    (b(r"0.666\ldots"), r"\frac{2}{3}", C, POLICY, "repeating-decimal"),
    (b(r"0.666..."), r"\frac{2}{3}", C, POLICY, "repeating-decimal"),
    (b(r"\frac{2}{3}"), r"0.\overline{6}", C, POLICY, "repeating-decimal"),
    (b(r"0.\overline{6}"), r"0.666\ldots", C, POLICY, "repeating-decimal"),
    (b(r"1.\overline{3}"), r"\frac{4}{3}", C, POLICY, "repeating-decimal"),
    (b(r"0.\overline{36}"), r"\frac{4}{11}", C, POLICY, "repeating-decimal"),
    (b(r"0.\overline{27}"), r"\frac{3}{10}", W, POLICY, "repeating-decimal"),
    (b(r"0.\overline{3}"), r"\frac{1}{6}", W, POLICY, "repeating-decimal"),
    (b(r"0.1\overline{6}"), r"\frac{1}{3}", W, POLICY, "repeating-decimal"),
    (b(r"\frac{5}{11}"), r"0.\overline{27}", W, POLICY, "repeating-decimal"),
    (b(r"0.\overline{142857}"), r"\frac{1}{7}", C, POLICY, "repeating-decimal"),
    (b(r"0.\overline{09}"), r"\frac{1}{11}", C, POLICY, "repeating-decimal"),
    (b(r"0.\overline{9}"), "1", C, POLICY, "repeating-decimal"),
    (b(r"0.27"), r"0.\overline{27}", W, POLICY, "decimal-approximation"),
    (b(r"0.6667"), r"\frac{2}{3}", W, POLICY, "decimal-approximation"),
    (b(r"0.67"), r"\frac{2}{3}", W, POLICY, "decimal-approximation"),
    # --- radicals, reordering, prefixes ----------------------------------------------------------------
    (b(r"\frac{\sqrt{3}}{3}"), r"\frac{1}{\sqrt{3}}", C, POLICY, "radical-form"),
    (b(r"\frac{1}{\sqrt{3}}"), r"\frac{\sqrt3}{3}", C, POLICY, "radical-form"),
    (b(r"\sqrt{50}"), r"5\sqrt{2}", C, POLICY, "radical-form"),
    (b(r"5\sqrt{3}"), r"5\sqrt{2}", W, POLICY, "radical-form"),
    (b(r"2\sqrt{3}+1"), r"1+2\sqrt{3}", C, POLICY, "reordered-terms"),
    (b(r"1-2\sqrt{3}"), r"1+2\sqrt{3}", W, POLICY, "sign"),
    (b(r"\sqrt[3]{16}"), r"2\sqrt[3]{2}", C, POLICY, "radical-form"),
    (b(r"x = 7"), "7", C, QWEN_PARSER, "x-prefix"),
    (b(r"n=12"), "12", C, QWEN_PARSER, "x-prefix"),
    (b(r"a = 12"), "13", W, QWEN_PARSER, "x-prefix"),
    (b(r"y = -\frac{1}{2}"), r"-\frac12", C, QWEN_PARSER, "x-prefix"),
    (b(r"b^2 + a^2"), r"a^2+b^2", C, POLICY, "reordered-terms"),
    (b(r"x^2 - 1"), r"(x-1)(x+1)", C, POLICY, "reordered-terms"),
    (b(r"x^2 + 1"), r"(x-1)(x+1)", W, POLICY, "reordered-terms"),
    # --- units, percent, degrees, separators, text ---------------------------------------------------
    (b(r"12 \text{ cm}"), "12", C, QWEN_PARSER, "units"),
    (b(r"12\text{ meters}"), r"12\text{ m}", C, QWEN_PARSER, "units"),
    (b(r"15 \text{ dollars}"), r"\$15", C, QWEN_PARSER, "units"),
    (b(r"\$15.00"), "15", C, QWEN_PARSER, "units"),
    (b(r"16 \text{ cm}"), "15", W, QWEN_PARSER, "units"),
    (b(r"45\%"), "45", C, QWEN_PARSER, "percent"),
    (b("45"), r"45\%", C, QWEN_PARSER, "percent"),
    (b(r"44\%"), r"45\%", W, QWEN_PARSER, "percent"),
    (b(r"60^\circ"), "60", C, SIEVAL_FORMAT, "degrees"),
    (b(r"60^{\circ}"), r"60^\circ", C, SIEVAL_FORMAT, "degrees"),
    (b(r"60\text{ degrees}"), r"60^\circ", C, SIEVAL_FORMAT, "degrees"),
    (b(r"120^\circ"), r"60^\circ", W, SIEVAL_FORMAT, "degrees"),
    (b("12,345"), "12345", C, PRIOR_ART, "thousands"),
    (b(r"12{,}345"), "12345", C, PRIOR_ART, "thousands"),
    (b(r"12\,345"), r"12,\!345", C, PRIOR_ART, "thousands"),
    (b("1,234,567"), "1234567", C, PRIOR_ART, "thousands"),
    (b("12,346"), "12345", W, PRIOR_ART, "thousands"),
    (b(r"\text{13}"), "13", C, MV37, "text-wrapper"),
    (b(r"\textbf{13}"), "13", C, MV37, "text-wrapper"),
    (b(r"\mathrm{13}"), "13", C, MV37, "text-wrapper"),
    (b(r"\text{Evelyn}"), r"\text{Evelyn}", C, QWEN_PARSER, "word-answer"),
    (b("evelyn"), r"\text{Evelyn}", C, POLICY, "word-case"),
    (b(r"\text{EVELYN}"), r"\text{Evelyn}", C, POLICY, "word-case"),
    (b(r"\text{Bob}"), r"\text{Evelyn}", W, POLICY, "word-answer"),
    (b(r"\text{even}"), r"\text{odd}", W, POLICY, "word-answer"),
    (b(r"\text{Odd}"), r"\text{odd}", C, POLICY, "word-case"),
    (b(r"\text{no}"), r"\text{No}", C, POLICY, "word-case"),
    (b(r"\text{yes}"), r"\text{No}", W, POLICY, "word-answer"),
    # --- choices -----------------------------------------------------------------------------------------
    (b("C"), r"\text{(C)}", C, NEMO_ANSWER_LETTER, "choice"),
    (b("(C)"), r"\text{(C)}", C, NEMO_ANSWER_LETTER, "choice"),
    (b(r"\textbf{(C)}"), r"\text{(C)}", C, NEMO_ANSWER_LETTER, "choice"),
    (b(r"\text{C}"), "C", C, NEMO_ANSWER_LETTER, "choice"),
    (b(r"\mathrm{(C)}"), "(C)", C, NEMO_ANSWER_LETTER, "choice"),
    (b("D"), r"\text{(C)}", W, NEMO_ANSWER_LETTER, "choice"),
    (b(r"\textbf{(E)}"), r"\textbf{(C)}", W, NEMO_ANSWER_LETTER, "choice"),
    ("After checking each option, the answer is (D).", r"\text{(D)}", C, NEMO_ANSWER_LETTER, "unboxed-commit"),
    ("After checking each option, the answer is (B).", r"\text{(D)}", W, NEMO_ANSWER_LETTER, "unboxed-commit"),
    ("**Answer: D**", "D", C, NEMO_ANSWER_LETTER, "unboxed-commit"),
    # --- format counts where it is the task ------------------------------------------------------------
    (b("42"), "52_8", W, POLICY, "base-n"),
    (b("52_8"), "52_8", C, POLICY, "base-n"),
    (b("52_{8}"), "52_8", C, POLICY, "base-n"),
    (b("52"), "52_8", C, POLICY, "base-n"),
    (b("1011_2"), "1011_2", C, POLICY, "base-n"),
    (b("11"), "1011_2", W, POLICY, "base-n"),
    (b("1.4142"), r"\sqrt{2}", W, POLICY, "decimal-approximation"),
    (b("3.14"), r"\pi", W, POLICY, "decimal-approximation"),
    (b("3.14159"), r"\pi", W, POLICY, "decimal-approximation"),
    (b("37.70"), r"12\pi", W, POLICY, "decimal-approximation"),
    (b(r"12\pi \approx 37.70"), r"12\pi", C, POLICY, "exact-with-approximation"),
    (b(r"2\sqrt{2} \approx 2.83"), r"2\sqrt{2}", C, POLICY, "exact-with-approximation"),
    (b(r"4\pi \approx 12.57"), r"12\pi", W, POLICY, "exact-with-approximation"),
    (b("0.5"), r"\frac{1}{2}", C, POLICY, "terminating-decimal"),
    (b("1.7320508"), r"\sqrt{3}", W, POLICY, "decimal-approximation"),
    # --- lists are sets; plus-minus; sequences ----------------------------------------------------------
    (b("2, 3"), "3, 2", C, POLICY, "list-as-set"),
    (b(r"\{2, 3\}"), "2, 3", C, POLICY, "list-as-set"),
    (b("2, 3, 4"), "2, 3", W, POLICY, "list-extra"),
    (b("2"), "2, 3", W, POLICY, "list-missing"),
    (b("-1, 1"), r"\pm 1", C, POLICY, "plus-minus"),
    (b(r"\pm 1"), "1, -1", C, POLICY, "plus-minus"),
    (b("1"), r"\pm 1", W, POLICY, "plus-minus"),
    (b(r"\pm 2"), r"\pm 1", W, POLICY, "plus-minus"),
    (b(r"2 \pm \sqrt{3}"), r"2+\sqrt{3}, 2-\sqrt{3}", C, POLICY, "plus-minus"),
    (b(r"2 + \sqrt{3}"), r"2 \pm \sqrt{3}", W, POLICY, "plus-minus"),
    (b(r"x = 2 \text{ or } x = 3"), "2, 3", C, POLICY, "list-as-set"),
    (b(r"x=2, x=3"), "2, 3", C, POLICY, "list-as-set"),
    (b("1, 2, 3, 4"), "1, 2, 3", W, MV14, "list-extra"),
    (b("n=2,3,4"), "n=1,2,3", W, MV14, "list-as-set"),
    (b(r"1, 3, 5, \ldots"), r"1, 3, 5, \ldots", C, POLICY, "sequence-ellipsis"),
    (b(r"1, 3, 5, \dots"), r"1, 3, 5, \ldots", C, POLICY, "sequence-ellipsis"),
    (b(r"1, 3, 7, \ldots"), r"1, 3, 5, \ldots", W, POLICY, "sequence-ellipsis"),
    (b(r"2, 4, 6, \ldots"), r"1, 3, 5, \ldots", W, POLICY, "sequence-ellipsis"),
    (b(r"1, 3, \ldots"), r"1, 3, 5, \ldots", W, POLICY, "sequence-ellipsis"),
    (b(r"1, 2, 4, 8, \ldots"), r"1, 2, 4, 8, \ldots", C, POLICY, "sequence-ellipsis"),
    (b(r"1, 2, 4, 7, \ldots"), r"1, 2, 4, 8, \ldots", W, POLICY, "sequence-ellipsis"),
    # --- inequality gold vs interval ---------------------------------------------------------------------
    (b(r"[2, \infty)"), r"t \ge 2", C, POLICY, "inequality-interval"),
    (b(r"t \ge 2"), r"[2, \infty)", C, POLICY, "inequality-interval"),
    (b(r"(2, \infty)"), r"t \ge 2", W, POLICY, "inequality-interval"),
    (b(r"[3, \infty)"), r"t \geq 2", W, POLICY, "inequality-interval"),
    (b(r"(-\infty, 5)"), r"x < 5", C, POLICY, "inequality-interval"),
    (b(r"(-\infty, 5]"), r"x < 5", W, POLICY, "inequality-interval"),
    # --- which answer counts: last box, several boxes, think ------------------------------------------
    (r"First $\boxed{3}$, but rechecking, $\boxed{5}$.", "5", C, MATHARENA_PARSER, "last-box"),
    (r"First $\boxed{5}$, but rechecking, $\boxed{3}$.", "5", W, MATHARENA_PARSER, "last-box"),
    (r"\fbox{8}", "8", C, MATHARENA_PARSER, "fbox"),
    (r"The solutions are $\boxed{2}$ and $\boxed{3}$.", "2, 3", C, POLICY, "boxes-on-one-line"),
    (r"The solutions are $x=\boxed{-1}$, $x=\boxed{4}$.", "-1, 4", C, POLICY, "boxes-on-one-line"),
    (r"The solutions are $\boxed{2}$ and $\boxed{4}$.", "2, 3", W, POLICY, "boxes-on-one-line"),
    ("We get $\\boxed{2}$ from case 1.\n\nRechecking everything, the answer is $\\boxed{3}$.", "3", C, POLICY, "last-box"),
    ("<think>maybe \\boxed{3}</think>The answer is $\\boxed{4}$.", "4", C, POLICY, "after-think"),
    ("<think>it is \\boxed{4}</think>So the answer is $\\boxed{3}$.", "4", W, POLICY, "after-think"),
    ("<think>I think 4.</think>\nThe answer is 4.", "4", C, POLICY, "after-think"),
    ("<think>compute... \\boxed{12}</think>\nFinal: $\\boxed{12}$", "12", C, POLICY, "after-think"),
    (r"The answer is $\boxed{7}$. Please put the final answer in \boxed{} as requested.", "7", C, LMEVAL_BOXED_WORD, "boxed-word-after"),
    (r"$\boxed{7}$" + "\n\nI have boxed the final answer above.", "7", C, LMEVAL_BOXED_WORD, "boxed-word-after"),
    (r"$\boxed{6}$" + "\n\nI have boxed the final answer above.", "7", W, LMEVAL_BOXED_WORD, "boxed-word-after"),
    # --- unboxed answers that commit -----------------------------------------------------------------------
    ("Adding the cases gives 40 + 2 = 42.\n\nThe answer is 42.", "42", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("Adding the cases gives 40 + 2 = 42.\n\nThe answer is 43.", "42", W, LMEVAL_ANSWER, "unboxed-commit"),
    ("So the answer is $17$.", "17", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("So the answer is $17$.", "71", W, LMEVAL_ANSWER, "unboxed-commit"),
    ("Substituting back, we find y is three. Hence $y = 3$.", "3", C, POLICY, "unboxed-commit"),
    ("Hence $y = 4$.", "3", W, POLICY, "unboxed-commit"),
    ("Summing over all cases gives the total.\n\n**58**", "58", C, MV76, "unboxed-commit"),
    ("Summing over all cases gives the total.\n\n**59**", "58", W, MV76, "unboxed-commit"),
    ("**Answer:** 4.", "4", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", "0.5", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("Therefore, the answer is \\(\\frac{3}{5}\\).", r"\frac35", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("Thus the answer is 1000.", "1000", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("The answer is: 25", "25", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("Final Answer: The final answer is $8$. I hope it is correct.", "8", C, LMEVAL_ANSWER, "unboxed-commit"),
    # values that merely appear in the working are not answers
    ("We compute 6 * 7 = 42 and then we need to subtract", "42", N, VERIFIERS_NO_BOX, "value-in-working"),
    ("Let me compute $x = 42$ first, and then", "42", N, VERIFIERS_NO_BOX, "value-in-working"),
    ("The sum is 42 if we ignore the constraint, but the constraint matters, so", "42", N, VERIFIERS_NO_BOX, "value-in-working"),
    ("Using the formula we get 17, 18 and 19 for the three cases.", "17", N, VERIFIERS_NO_BOX, "value-in-working"),
    ("The answer is probably related to 42 but I am not sure how.", "42", N, VERIFIERS_NO_BOX, "value-in-working"),
    ("**Step 1.** Note that 12 divides 36.", "12", N, VERIFIERS_NO_BOX, "value-in-working"),
    # --- no answer -------------------------------------------------------------------------------------------
    (r"The answer is $\boxed{", "5", N, MARIN_EMPTY_BOX, "truncated-box"),
    (r"So we get $\boxed{\frac{1}{", r"\frac12", N, MARIN_EMPTY_BOX, "truncated-box"),
    (r"Earlier $\boxed{3}$, now recomputing, the answer is $\boxed{\frac{7", "3", N, MARIN_EMPTY_BOX, "truncated-box"),
    ("<think>Let me think. The sum is 42 so", "42", N, POLICY, "truncated-think"),
    ("<think>we get \\boxed{42}. Hmm, wait, that cannot be right, let me re-check", "42", N, POLICY, "box-in-unfinished-think"),
    ("<think>so it is \\boxed{42}. But wait, maybe I double counted", "42", N, POLICY, "box-in-unfinished-think"),
    ("Let me carefully compute the value of the sum which is", "42", N, POLICY, "truncated"),
    (r"The answer is $\boxed{}$.", "5", N, MARIN_EMPTY_BOX, "empty-box"),
    (r"The answer is $\boxed{ }$.", "5", N, MARIN_EMPTY_BOX, "empty-box"),
    (r"The answer is $\boxed{\ }$.", "5", N, MARIN_EMPTY_BOX, "empty-box"),
    (r"The answer is $\boxed{\,}$.", "5", N, MARIN_EMPTY_BOX, "empty-box"),
    (r"The answer is $\boxed{\quad}$.", "5", N, MARIN_EMPTY_BOX, "empty-box"),
    (r"The answer is $\boxed{~}$.", "5", N, MARIN_EMPTY_BOX, "empty-box"),
    ("Find the number of ordered pairs $(a, b)$ such that $a + b = 10$.", "11", N, POLICY, "restatement"),
    ("I'm sorry, but I can't help with that.", "7", N, POLICY, "refusal"),
    ("I cannot determine the answer from the given information.", "7", N, POLICY, "refusal"),
    ("", "7", N, POLICY, "empty"),
    ("\\boxed{1\x00\x00}", "1", N, POLICY, "control-characters"),
    ("\\boxed{\x01}", "1", N, POLICY, "control-characters"),
    # --- unicode math -------------------------------------------------------------------------------------
    (b("2√2"), r"2\sqrt{2}", C, POLICY, "unicode"),
    (b("√8"), r"2\sqrt{2}", C, POLICY, "unicode"),
    (b("√3/2"), r"\frac{\sqrt{3}}{2}", C, POLICY, "unicode"),
    (b("−5"), "-5", C, POLICY, "unicode"),
    (b("−5"), "5", W, POLICY, "unicode"),
    (b("3 × 10^5"), "300000", C, POLICY, "unicode"),
    (b("2·3"), "6", C, POLICY, "unicode"),
    (b("2π"), r"2\pi", C, POLICY, "unicode"),
    (b("π/4"), r"\frac{\pi}{4}", C, POLICY, "unicode"),
    (b("π/3"), r"\frac{\pi}{4}", W, POLICY, "unicode"),
    (b("(−∞, 3]"), r"(-\infty, 3]", C, POLICY, "unicode"),
    (b("x²+1"), "x^2+1", C, POLICY, "unicode"),
    (b("2³"), "8", C, POLICY, "unicode"),
    (b("2³"), "9", W, POLICY, "unicode"),
    (b("10⁶"), "1000000", C, POLICY, "unicode"),
    (b("60°"), "60", C, POLICY, "unicode"),
    (b("½"), "0.5", C, POLICY, "unicode"),
    (b("3 ≤ x ≤ 5"), "[3, 5]", C, POLICY, "unicode"),
    # --- constants -----------------------------------------------------------------------------------------
    (b(r"2 + e^{-1}"), r"2 + \frac{1}{e}", C, POLICY, "constants"),
    (b(r"2 - e^{-1}"), r"2 + e^{-1}", W, POLICY, "constants"),
    (b(r"2 - \mathrm{e}^{-1}"), r"2 + e^{-1}", W, POLICY, "constants"),
    (b(r"2 + \mathrm{e}^{-1}"), r"2 + e^{-1}", C, POLICY, "constants"),
    (b(r"2 + e^{-1}"), r"2 + \mathrm{e}^{-1}", C, POLICY, "constants"),
    (b(r"2 - e^{-1}"), r"2 + \mathrm{e}^{-1}", W, POLICY, "constants"),
    (b(r"e^2"), r"\mathrm{e}^2", C, POLICY, "constants"),
    (b(r"e^{2}-1"), r"e^2+1", W, POLICY, "constants"),
    (b(r"\pi - 2"), r"\pi + 2", W, POLICY, "constants"),
    (b(r"2 + \pi"), r"\pi + 2", C, POLICY, "constants"),
    (b(r"3 - 4i"), r"3 + 4i", W, POLICY, "constants"),
    (b(r"4i + 3"), r"3 + 4i", C, POLICY, "constants"),
    (b(r"i"), r"-i", W, POLICY, "constants"),
    (b(r"\frac{1}{e}"), r"e^{-1}", C, POLICY, "constants"),
    # --- assumptions a contest implies ---------------------------------------------------------------------
    (b(r"\sqrt{2/k}"), r"\frac{\sqrt{2}}{\sqrt{k}}", C, MV64, "positive-variables"),
    (b(r"\sqrt{\frac{1}{n}}"), r"\frac{1}{\sqrt{n}}", C, MV64, "positive-variables"),
    (b(r"\sqrt{n^2}"), "n", C, MV64, "positive-variables"),
    (b(r"\sqrt{4n}"), r"2\sqrt{n}", C, MV64, "positive-variables"),
    (b(r"\sqrt{3/k}"), r"\frac{\sqrt{2}}{\sqrt{k}}", W, MV64, "positive-variables"),
    # --- math-verify pitfalls ---------------------------------------------------------------------------------
    (b(r"\frac{1}{2006!}"), r"\frac{1}{2004!}", W, MV14, "tiny-numbers"),
    (b(r"\frac{1}{2004!}"), r"\frac{1}{2004!}", C, MV14, "tiny-numbers"),
    (b(r"4\sqrt(2)"), "4", W, MV41, "sqrt-parens"),
    (b(r"4\sqrt(2)"), r"4\sqrt{2}", C, MV41, "sqrt-parens"),
    ("Final Answer: **73**", "73", C, MV76, "bold"),
    (b("1"), "0", W, MV25, "asymmetry"),
    (b("0"), "1", W, MV25, "asymmetry"),
    (b(r"x \in [1, 2]"), "[1, 2]", C, MV25, "asymmetry"),
    (b("[1, 2]"), r"x \in [1, 2]", C, MV25, "asymmetry"),
    # --- probes of the rules above for false positives (added after a probe run) ------------------------
    (b(r"2^{100}+1"), "2^{100}", W, MV14, "tiny-relative-difference"),
    (b(r"\frac{10^{20}+1}{10^{20}}"), "1", W, MV14, "tiny-relative-difference"),
    (b(r"\sqrt{2}+10^{-20}"), r"\sqrt{2}", W, MV14, "tiny-relative-difference"),
    (b("1.000000001"), "1", W, MV14, "tiny-relative-difference"),
    (b(r"3^{100}"), "3^{101}", W, POLICY, "exact-integers"),
    (b(r"10!"), "3628800", C, POLICY, "exact-integers"),
    (b(r"\binom{5}{2}"), "10", C, POLICY, "exact-integers"),
    (b(r"2^{10}"), "1024", C, POLICY, "exact-integers"),
    ("Final Answer: 12 or 13", "12", W, POLICY, "hedged"),
    ("So the answer is $17$ or $18$.", "17", N, POLICY, "hedged"),
    ("Thus $x = 5$ is impossible.", "5", N, VERIFIERS_NO_BOX, "value-in-working"),
    ("The answer is 42.\nBut wait, let me double-check the second case", "42", N, POLICY, "truncated"),
    ("The answer is 42. I hope it is correct.", "42", C, LMEVAL_ANSWER, "unboxed-commit"),
    ("The answer is 41. I hope it is correct.", "42", W, LMEVAL_ANSWER, "unboxed-commit"),
    (b(r"5 \text{ and } 7"), "5, 7", C, POLICY, "list-as-set"),
    (b(r"x=5 \text{ or } x=-5"), r"\pm 5", C, POLICY, "plus-minus"),
    (r"$\boxed{2}$ and $\boxed{3}$", "3", W, POLICY, "boxes-on-one-line"),
    (r"$\boxed{-2}$ or $\boxed{2}$", r"\pm 2", C, POLICY, "boxes-on-one-line"),
    (r"We get $\boxed{2}$." + "\n" + r"Then we get $\boxed{3}$.", "2, 3", W, POLICY, "last-box"),
    (b(r"-\infty"), r"\infty", W, POLICY, "sign"),
    (b(r"\emptyset"), r"\varnothing", C, POLICY, "empty-set"),
    (b(r"\text{no solution}"), r"\text{no solution}", C, POLICY, "word-answer"),
    (b("±3"), r"\pm 3", C, POLICY, "unicode"),
    (b("3"), "±3", W, POLICY, "unicode"),
    (b("∅"), r"\emptyset", C, POLICY, "unicode"),
    (b("0.3..."), r"\frac13", W, POLICY, "decimal-approximation"),
    (b("0.33"), r"\frac13", W, POLICY, "decimal-approximation"),
    (b("e"), "2.718", W, POLICY, "decimal-approximation"),
    (b("2.718"), "e", W, POLICY, "decimal-approximation"),
    (b("5."), "5", C, POLICY, "integer"),
    (b("+5"), "5", C, POLICY, "integer"),
    (b(r"2x+3=y"), "y = 2x + 3", C, POLICY, "equation"),
    (b(r"y = 3x + 2"), "y = 2x + 3", W, POLICY, "equation"),
    (b("x"), "|x|", W, MV64, "positive-variables"),
    (b("x^2"), "x", W, MV64, "positive-variables"),
    (b(r"2\sqrt{x}"), r"\sqrt{4x}", C, MV64, "positive-variables"),
    (b(r"\frac{a}{b}"), r"\frac{b}{a}", W, MV64, "positive-variables"),
    (b(r"\ln(e^2)"), "2", C, POLICY, "constants"),
    (b("i^2"), "-1", C, POLICY, "constants"),
    (b(r"\sqrt{-1}"), "i", C, POLICY, "constants"),
    (b("2i"), "-2i", W, POLICY, "constants"),
    (b("(1,2)"), "(1,2]", W, POLICY, "interval"),
    (b("[1,2]"), r"\{1,2\}", W, POLICY, "interval"),
    (b("1,2"), "[1,2]", W, POLICY, "interval"),
    (r"The total is $\boxed{5}$ apples.", "5", C, MATHARENA_PARSER, "last-box"),
    ("$\\boxed{5}$\n\nNote: the final answer is boxed above.", "5", C, LMEVAL_BOXED_WORD, "boxed-word-after"),
    ("<think>hmm</think>", "5", N, POLICY, "nothing-after-think"),
    ("<think>so 12</think>\n\n**Answer:** 12", "12", C, LMEVAL_ANSWER, "after-think"),
    # --- second probe run: sequences, tuples, matrices, intervals ---------------------------------------
    (b(r"5, 3, 1, \ldots"), r"1, 3, 5, \ldots", W, POLICY, "sequence-ellipsis"),
    (b("1, 3, 5"), r"1, 3, 5, \ldots", W, POLICY, "sequence-ellipsis"),
    (b(r"1, 4, 9, \ldots, n^2"), r"1, 4, 9, \ldots", W, POLICY, "sequence-ellipsis"),
    (b(r"1, 4, 9, 16, \ldots"), r"1, 4, 9, \ldots", W, POLICY, "sequence-ellipsis"),
    (b(r"1, \frac12, \frac14, \ldots"), r"1, 0.5, 0.25, \ldots", C, POLICY, "sequence-ellipsis"),
    (b(r"x, x^2, x^3, \ldots"), r"x, x^2, x^3, \dots", C, POLICY, "sequence-ellipsis"),
    (b("(2,1)"), "(1,2)", W, POLICY, "tuple-order"),
    (b(r"\left(1, 2\right)"), "(1,2)", C, POLICY, "tuple-order"),
    (b(r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"), r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", C, POLICY, "matrix"),
    (b(r"\begin{pmatrix} 1 & 2 \\ 4 & 3 \end{pmatrix}"), r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", W, POLICY, "matrix"),
    (b(r"x \in (1, 3)"), "1 < x < 3", C, POLICY, "inequality-interval"),
    (b(r"1 \le x < 3"), "[1, 3)", C, POLICY, "inequality-interval"),
    (b(r"1 < x \le 3"), "[1, 3)", W, POLICY, "inequality-interval"),
    (b(r"(-\infty, -1) \cup (1, \infty)"), "|x| > 1", C, POLICY, "inequality-interval"),
    (b(r"\frac{1-\sqrt{5}}{2}"), r"\frac{\sqrt{5}+1}{2}", W, POLICY, "sign"),
    (b(r"\sqrt{5}/2+1/2"), r"\frac{\sqrt{5}+1}{2}", C, POLICY, "reordered-terms"),
    (b("4"), r"4 \text{ or } 5", W, POLICY, "list-missing"),
    (b("4, 5"), r"4 \text{ or } 5", C, POLICY, "list-as-set"),
    (b("1000"), "10^3", C, POLICY, "exact-integers"),
    (b(r"1\,000\,000"), "10^6", C, PRIOR_ART, "thousands"),
    (b("2n+1"), "2n-1", W, POLICY, "sign"),
    (b("a_n = 2n-1"), "2n-1", C, QWEN_PARSER, "x-prefix"),
    (b(r"\frac{n(n+1)}{2}"), r"\binom{n+1}{2}", C, POLICY, "reordered-terms"),
]


def _rows(name: str) -> list[dict]:
    with open(BUNDLED / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _bundled_cases() -> list[tuple[str, str, str, str, str]]:
    """Cases written around the bundled gold answers: the AIME-style integer answers in the forms a
    model writes them, and MATH-500 golds against themselves, a rewritten form and a neighbour."""
    out: list[tuple[str, str, str, str, str]] = []
    for name in ("aime2024", "aime2025"):
        for i, r in enumerate(_rows(name)):
            gold, src = r["answer"], f"pdr/data/bundled/{name}.jsonl#{r['id']}"
            forms = [
                (f"<think>long reasoning</think>\nThus $\\boxed{{{gold}}}$.", C, "integer"),
                (f"<think>long reasoning</think>\nThus $\\boxed{{{int(gold):03d}}}$.", C, "integer-leading-zeros"),
                (f"Thus $\\boxed{{{(int(gold) + 1) % 1000}}}$.", W, "integer"),
                (f"The answer is {gold}.", C, "unboxed-commit"),
                (f"<think>the answer is \\boxed{{{gold}}}, wait, let me recheck", N, "box-in-unfinished-think"),
            ]
            resp, exp, rule = forms[i % len(forms)]
            out.append((resp, gold, exp, src, rule))
    m500 = _rows("math500")
    for i, r in enumerate(m500[:100]):
        gold, src = r["answer"], f"pdr/data/bundled/math500.jsonl#{r['id']}"
        if i % 2 == 0:
            out.append((f"Putting it together, the answer is $\\boxed{{{gold}}}$.", gold, C, src, "self"))
        else:
            other = m500[(i + 13) % len(m500)]["answer"]
            if _same_value(other, gold):
                continue
            out.append((f"Putting it together, the answer is $\\boxed{{{other}}}$.", gold, W, src, "neighbour"))
    for name in ("amc2023", "hmmt_feb2025"):
        for r in _rows(name):
            gold, src = r["answer"], f"pdr/data/bundled/{name}.jsonl#{r['id']}"
            out.append((f"So the final answer is $\\boxed{{{gold}}}$.", gold, C, src, "self"))
    return out


def _same_value(a: str, b: str) -> bool:
    return a.replace(" ", "") == b.replace(" ", "")


def main() -> None:
    cases = HAND + _bundled_cases()
    path = HERE / "cases.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for response, gold, expected, source, rule in cases:
            f.write(
                json.dumps(
                    {"response": response, "gold": gold, "expected": expected, "source": source, "rule": rule},
                    ensure_ascii=False,
                )
                + "\n"
            )
    print(f"{len(cases)} cases ({len(HAND)} hand-written) -> {path}")


if __name__ == "__main__":
    main()
