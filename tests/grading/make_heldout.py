"""Writes tests/grading/heldout.jsonl: held-out grading cases labelled from the README labelling policy only
(written before reading pdr/evaluation or cases.jsonl). Run from the repo root: python tests/grading/make_heldout.py"""
import json
import math
from collections import Counter

M5 = "pdr/data/bundled/math500.jsonl"
HM = "pdr/data/bundled/hmmt_feb2025.jsonl"
A25 = "pdr/data/bundled/aime2025.jsonl"
A24 = "pdr/data/bundled/aime2024.jsonl"
AMC = "pdr/data/bundled/amc2023.jsonl"
POL = "tests/grading/README.md#labelling-policy"
U = {
 "mv57": "https://github.com/huggingface/Math-Verify/issues/57",
 "mv48": "https://github.com/huggingface/Math-Verify/issues/48",
 "qw50": "https://github.com/QwenLM/Qwen2.5-Math/issues/50",
 "lm3643": "https://github.com/EleutherAI/lm-evaluation-harness/issues/3643",
 "lm3652": "https://github.com/EleutherAI/lm-evaluation-harness/issues/3652",
 "marin": "https://github.com/marin-community/marin/pull/9163",
 "verif": "https://github.com/PrimeIntellect-ai/verifiers/pull/1028",
 "tinker": "https://github.com/thinking-machines-lab/tinker-cookbook/pull/903",
 "gym": "https://github.com/NVIDIA-NeMo/Gym/pull/1844",
 "sieval": "https://github.com/scitix/sieval/issues/26",
 "ruler": "https://github.com/hiyouga/MathRuler/issues/2",
 "roll": "https://github.com/alibaba/ROLL/issues/281",
 "oc": "https://github.com/open-compass/opencompass/pull/2593",
}
cases = []
def add(response, gold, expected, source, rule):
    assert expected in ("correct", "wrong", "no_answer")
    cases.append(dict(response=response, gold=gold, expected=expected, source=source, rule=rule))

def T(body, final, closed=True, open_tag=True):
    s = ("<think>\n" if open_tag else "") + body
    if closed:
        s += "\n</think>\n\n" + final
    return s

W1 = ("Okay, let me set up the problem carefully. Let the unknown be $x$. From the first condition we get "
      "$3x + 2 = 17$, wait, no, that's the wrong reading of the statement. Let me re-read it.\n\n"
      "Hmm, so the condition is really about the ratio. Trying small cases: $n=1$ gives $2$, $n=2$ gives $6$, "
      "$n=3$ gives $12$. So the pattern is $n(n+1)$. Let me double check with $n=4$: $20$. Yes.\n\n"
      "Now I plug the data from the problem in and simplify.")
W2 = ("First, I'll compute the discriminant: $b^2-4ac = 49 - 24 = 25$, so the roots are rational. "
      "Then by Vieta the sum is $7$ and the product is $6$. Alternatively let me verify by direct substitution. "
      "That all checks out, so now I can finish the computation.")
W3 = ("Let me think about the geometry. Place the triangle with $A=(0,0)$, $B=(c,0)$. Then the altitude from $C$ "
      "has length $h$ and the area is $\\tfrac12 ch$. Using the given lengths, $c=14$, and the height is $12$, "
      "so the area is $84$. Now relate this to the quantity asked.")

def final_box(v, lead="Therefore, the answer is"):
    return f"{lead} $\\boxed{{{v}}}$."

# ---------- A. golds from math500/hmmt: correct variants, near-miss wrongs, no-answers ----------
G = [
 # (file, gold, correct variants, wrong near misses, rule)
 (M5, r"\left( 3, \frac{\pi}{2} \right)", [r"(3, \pi/2)", r"\left(3,\dfrac{\pi}{2}\right)"], [r"(3, \pi)", r"\left(3, -\frac{\pi}{2}\right)"], "value not spelling: tuple"),
 (M5, r"p - q", [r"-q + p"], [r"q - p"], "value not spelling: reordered terms"),
 (M5, r"\frac{14}{3}", [r"\dfrac{14}{3}", r"14/3", r"4\frac{2}{3}"], [r"4.67", r"\frac{13}{3}"], "value/decimal approx"),
 (M5, r"\text{Evelyn}", [r"\text{evelyn}", r"Evelyn"], [r"\text{Emily}"], "word answer case"),
 (M5, r"90^\circ", [r"90", r"90°", r"90^{\circ}"], [r"180^\circ"], "degrees"),
 (M5, r"3\sqrt{13}", [r"\sqrt{117}", r"3√13"], [r"3\sqrt{15}", r"10.8167"], "equivalent radical / approx"),
 (M5, r"6 - 5i", [r"-5i + 6"], [r"6 + 5i"], "constants: i sign"),
 (M5, r"x=5", [r"5"], [r"x=-5"], "x= prefix"),
 (M5, r"1,-2", [r"-2, 1"], [r"1,-3", r"1"], "lists are sets"),
 (M5, r"52_8", [r"52_{8}"], [r"42"], "base-n"),
 (M5, r"11\sqrt2", [r"11\sqrt{2}", r"\sqrt{242}"], [r"15.556"], "radical / approx"),
 (M5, r"3, 5, 7", [r"7, 3, 5", r"3,5,7"], [r"3, 5, 7, 9", r"3, 5"], "lists are sets"),
 (M5, r"1.25", [r"\frac{5}{4}", r"1.250"], [r"1.2"], "decimal value"),
 (M5, r"x^5 - x^4 + x^3 - x^2 + x - 1", [r"-1 + x - x^2 + x^3 - x^4 + x^5"], [r"x^5 - x^4 + x^3 - x^2 + x + 1"], "reordered terms"),
 (M5, r"-\frac{\pi}{6}", [r"-\pi/6"], [r"\frac{\pi}{6}", r"-0.5236"], "constants sign / approx"),
 (M5, r"(6,31,-1)", [r"(6, 31, -1)"], [r"(6,31,1)"], "tuple"),
 (M5, r"2516_8", [r"2516_{8}"], [r"1358"], "base-n in base 10 is wrong"),
 (M5, r"\frac{3\sqrt{3}}{4}", [r"\frac{3}{4}\sqrt{3}", r"\frac{9}{4\sqrt{3}}"], [r"1.299", r"\frac{3\sqrt{3}}{2}"], "radicals / approx"),
 (M5, r"\cot x", [r"\frac{\cos x}{\sin x}"], [r"\tan x"], "equivalent expression"),
 (M5, r"1 \pm \sqrt{19}", [r"1+\sqrt{19}, 1-\sqrt{19}", r"1 - \sqrt{19}, 1 + \sqrt{19}"], [r"1+\sqrt{19}"], "pm gold is a list"),
 (M5, r"\text{east}", [r"\text{East}", r"East"], [r"\text{west}"], "word answer case"),
 (M5, r"(3,4]", [r"3 < x \le 4", r"(3, 4]"], [r"[3,4]", r"(3,4)"], "inequality = interval"),
 (M5, r"4210_{5}", [r"4210_5"], [r"555"], "base-n"),
 (M5, r"\frac{1}{3}", [r"0.\overline{3}", r"0.333\ldots"], [r"0.333333", r"0.33"], "repeating decimal vs approximation"),
 (M5, r"\frac{\sqrt{3}}{3}", [r"\frac{1}{\sqrt{3}}", r"\sqrt{3}/3"], [r"0.57735"], "radical / approx"),
 (M5, r"\frac{270}7\text{ degrees}", [r"\frac{270}{7}^\circ", r"\frac{270}{7}"], [r"38.57^\circ"], "units / approx"),
 (M5, r".0000672", [r"6.72 \times 10^{-5}", r"0.0000672"], [r"0.000672"], "decimal value"),
 (M5, r"(2,\infty)", [r"x > 2", r"(2, ∞)"], [r"[2,\infty)", r"x \geq 2"], "interval/inequality/unicode"),
 (M5, r"10,\!080", [r"10080", r"10{,}080"], [r"10,800"], "thousands separators"),
 (M5, r"\$32,\!348", [r"32348", r"\$32,348"], [r"\$32,384"], "units/separators"),
 (M5, r"\text{(C)}", [r"C", r"\textbf{(C)}", r"(C)"], [r"(D)"], "choice letter"),
 (M5, r"288 \pi", [r"288\pi \approx 904.78", r"288π"], [r"904.78"], "approximation with exact value"),
 (M5, r"1\frac{4}{5}", [r"\frac{9}{5}", r"1.8"], [r"\frac{4}{5}"], "mixed number"),
 (M5, r"3 \pm 2 \sqrt{2}", [r"3+2\sqrt{2}, 3-2\sqrt{2}", r"3 \pm \sqrt{8}"], [r"3+2\sqrt{2}"], "pm gold is a list"),
 (M5, r"\left(\frac{3}{5},\frac{8}{3}\right]", [r"(0.6, 8/3]"], [r"[3/5, 8/3]"], "interval endpoints"),
 (M5, r"(-\infty, 0]", [r"x \le 0", r"(−∞, 0]"], [r"(-\infty, 0)"], "interval/unicode"),
 (M5, r"\frac{11+9a}{20}", [r"\frac{9a+11}{20}", r"\frac{11}{20}+\frac{9a}{20}"], [r"\frac{11+9a}{2}"], "equivalent expression"),
 (M5, r"(0,9) \cup (9,36)", [r"(9,36) \cup (0,9)"], [r"(0,36)"], "union of intervals"),
 (M5, r"x \in [-2,7]", [r"[-2,7]", r"-2 \le x \le 7", r"-2 ≤ x ≤ 7"], [r"(-2,7)"], "inequality = interval / unicode"),
 (M5, r"12\pi", [r"12\pi \approx 37.70", r"12π"], [r"37.70"], "approximation with exact value"),
 (M5, r"6r^2-4r-24", [r"6r² − 4r − 24"], [r"6r^2-4r+24"], "unicode superscripts/minus"),
 (M5, r"-\sqrt{3}", [r"−√3"], [r"\sqrt{3}", r"-1.7320508"], "unicode / approx"),
 (M5, r"864 \mbox{ inches}^2", [r"864 \text{ in}^2", r"864"], [r"846"], "units"),
 (M5, r"5.4 \text{ cents}", [r"5.4", r"5.4\text{ cents}"], [r"54"], "units"),
 (M5, r"\frac{1}{2}", [r"½", r"0.5"], [r"\frac{1}{4}"], "unicode fraction"),
 (M5, r"58,500", [r"58500", r"58\,500"], [r"5850"], "thousands separators"),
 (HM, r"\frac{9 \sqrt{23}}{23}", [r"\frac{9}{\sqrt{23}}"], [r"1.8766"], "radical / approx"),
 (HM, r"1-\frac{2}{\pi}", [r"\frac{\pi-2}{\pi}"], [r"\frac{2}{\pi}-1", r"0.3634"], "constants sign / approx"),
 (HM, r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}", [r"\frac{-1\pm\sqrt{17}}{2}"], [r"\frac{-1+\sqrt{17}}{2}"], "list / pm"),
 (HM, r"2^{25} \cdot 26!", [r"26! \cdot 2^{25}", r"2²⁵ × 26!", str(2**25 * math.factorial(26))], [r"2^{26} \cdot 25!"], "exact big value / unicode"),
 (HM, r"\sqrt{23}-2 \sqrt{3}", [r"-2\sqrt{3}+\sqrt{23}"], [r"\sqrt{23}+2\sqrt{3}", r"1.3317"], "radicals / approx"),
 (HM, r"14+4\sqrt{37}", [r"4\sqrt{37}+14", r"2(7+2\sqrt{37})"], [r"14+2\sqrt{37}"], "radicals"),
 (HM, r"\sqrt{\frac{95}{24}}", [r"\frac{\sqrt{570}}{12}", r"\frac{\sqrt{95}}{2\sqrt{6}}"], [r"1.9896"], "radicals / approx"),
 (HM, r"\frac{1311}{2017}", [r"\dfrac{1311}{2017}"], [r"\frac{1311}{2016}"], "fraction"),
]
walks = [W1, W2, W3]
def first(w):
    return w.split(". ")[0] + "."
leads = ["Therefore, the answer is", "So the final answer is", "Thus"]
for k, (src, gold, goods, bads, rule) in enumerate(G):
    w = walks[k % 3]
    for j, g in enumerate(goods):
        if j % 2 == 0:
            add(T(w, f"**Solution.** {first(w)}\n\n{final_box(g, leads[k % 3])}"), gold, "correct", src, rule)
        else:
            add(f"We solve step by step.\n\n{w}\n\nPutting everything together,\n\n**Final Answer**\n\\[\n\\boxed{{{g}}}\n\\]", gold, "correct", src, rule)
    for b in bads:
        add(T(w, f"{first(w)}\n\n{final_box(b, leads[(k + 1) % 3])}"), gold, "wrong", src, rule + " (near miss)")

# no-answer variants on some golds
NA = [
 (M5, r"\frac{14}{3}", T(W1 + " So far I have $x = \\frac{14}{3}$ but I need to check the second condition, which gives", "", closed=False), "cut mid-think (value only in working)"),
 (M5, r"3\sqrt{13}", T(W3, "The distance is $\\sqrt{(6-0)^2 + (9-0)^2}$, which simplifies to $\\boxed{"), "cut inside \\boxed{"),
 (M5, r"1,-2", T(W2 + " So the candidates are $\\boxed{1,-2}$, hmm, but wait, I should double-check $n=-2$ since", "", closed=False), "box only inside unfinished think"),
 (HM, r"\frac{1311}{2017}", T(W1 + " The probability then is \\boxed{\\frac{1311}{2017}}. Let me re-verify the count of", "", closed=False), "box only inside unfinished think"),
 (HM, r"2^{25} \cdot 26!", T(W2, "The answer is $\\boxed{\\ }$."), "blank box"),
 (HM, r"8\sqrt{10}", T(W3, "Hence the required length is $\\boxed{\\quad}$."), "blank box"),
 (M5, r"(3,4]", "We need to find all $x$ such that $\\frac{x-3}{4-x} \\ge 0$ and the expression is defined. In other words, we want the domain of the given function, expressed in interval notation.", "restatement"),
 (M5, r"\text{Evelyn}", "I'm sorry, but I can't determine who has the greatest average speed from the information given without the graph.", "refusal"),
 (M5, r"52_8", T(W1, "Converting to base $8$: $42 = 5\\cdot 8 + 2$, so the base-8 digits are"), "cut mid-sentence"),
 (HM, r"\frac{4}{9}", T(W2, "Therefore the probability equals $\\boxed{4\x01/9}$."), "control character in answer"),
 (M5, r"11\sqrt2", T(W3, "The perimeter is $\\boxed{}$."), "empty box"),
 (M5, r"(2,\infty)", T(W2, "We computed that $x - 2 > 0$ whenever the log is defined, and $x>2$ also makes the denominator nonzero. Next we need to consider whether the function is defined at the"), "cut mid-sentence"),
]
for src, gold, resp, rule in NA:
    add(resp, gold, "no_answer", src, rule)

# ---------- B. which answer counts (AIME/AMC integer golds) ----------
add(T(W1, "First attempt gives $\\boxed{5}$. That is wrong because I double counted; correcting, the answer is $\\boxed{7}$."), "7", "correct", U["tinker"], "last box counts")
add(T(W1, "First attempt gives $\\boxed{5}$. That is wrong because I double counted; correcting, the answer is $\\boxed{7}$."), "5", "wrong", U["tinker"], "last box counts")
add(T(W2, "The length is $\\boxed{35 \\text{ cm}}$ for the first part.\n\nFor the second part we count the configurations and obtain $\\boxed{4}$."), "4", "correct", U["mv57"], "last box counts")
add(T(W2, "The length is $\\boxed{35 \\text{ cm}}$ for the first part.\n\nFor the second part we count the configurations and obtain $\\boxed{4}$."), "35", "wrong", U["mv57"], "last box counts")
add(T(W2 + " so the answer is \\boxed{12}.", "Wait, I mis-added in the thinking. Recomputing: $9 + 6 = 15$.\n\nThe answer is $\\boxed{15}$."), "15", "correct", A24, "text after </think> overrides thinking")
add(T(W2 + " so the answer is \\boxed{12}.", "Wait, I mis-added in the thinking. Recomputing: $9 + 6 = 15$.\n\nThe answer is $\\boxed{15}$."), "12", "wrong", A24, "text after </think> overrides thinking")
add(T(W2 + " so the answer is \\boxed{204}.", "Rechecking the case count, two configurations were counted twice, so the total is $206$.\n\nThe answer is 206."), "204", "wrong", A24, "text after </think> overrides thinking (closing commitment)")
add(T(W2 + " so the answer is \\boxed{204}.", "Rechecking the case count, two configurations were counted twice, so the total is $206$.\n\nThe answer is 206."), "206", "correct", POL, "text after </think> overrides thinking (closing commitment)")
add(T(W1, "The answer is 70."), "70", "correct", A25, "closing commitment")
add(T(W1, "So the answer is $588$."), "588", "correct", A25, "closing commitment")
add(T(W1, "Hence $y = 3$."), "3", "correct", POL, "closing commitment")
add(T(W3, "Putting it together, the number of valid colorings is\n\n**117**"), "117", "correct", A25, "closing bold")
add(T(W3, "Putting it together, the number of valid colorings is\n\n**116**"), "117", "wrong", A25, "closing bold near miss")
add(T(W2, "Checking each option, only (D) satisfies all constraints. The answer is (D)."), r"\text{(D)}", "correct", POL, "closing choice")
add(T(W2, "Checking each option, only (D) satisfies all constraints. The answer is (D)."), r"\text{(E)}", "wrong", M5, "closing choice")
add("The positive square root of 64 is $\\sqrt{64}=8$ and the cube root is $\\sqrt[3]{64}=4$. The difference between them is $8-4$.\n\n**Answer:** 4.", "4", "correct", U["lm3643"], "closing commitment (bold Answer:)")
add(T(W1, "We have $3+4=7$, and multiplying by $6$ gives $42$. Now we need to consider the case where $n$ is odd, which changes the parity argument."), "42", "no_answer", U["verif"], "value only in working")
add("Let's compute: $279 = 9 \\cdot 31$. Also $x = 279$ when the digits are arranged in increasing order, but we still need the count of such numbers, not a particular number. Let's set up a recursion on the number of digits.", "279", "no_answer", U["verif"], "value only in working")
add(T(W1, "Earlier, in a sub-case, I found $\\boxed{5}$. Combining both cases, the final answer is $\\boxed{"), "5", "no_answer", U["marin"], "cut inside \\boxed{ after an earlier box")
add(T(W1, "Thus the total is $\\boxed{17}$.\n\nNote: I boxed 17 because it is $8 + 9$, the sum of the two counts, not 18."), "17", "correct", POL, "sentence mentioning boxed after the box is not an answer")
add(T(W1, "Thus the total is $\\boxed{17}$.\n\nNote: I boxed 17 because it is $8 + 9$, the sum of the two counts, not 18."), "18", "wrong", POL, "sentence mentioning boxed after the box is not an answer")
add(T(W2, "The solutions are $\\boxed{3}$, $\\boxed{5}$, and $\\boxed{7}$."), "3, 5, 7", "correct", M5, "several boxes on one line = one answer")
add(T(W2, "The solutions are $\\boxed{3}$, $\\boxed{5}$, and $\\boxed{7}$."), "7", "wrong", M5, "several boxes on one line = one answer (extra elements)")
add(T(W2, "So $n = \\boxed{1}$ or $n = \\boxed{-2}$."), "1,-2", "correct", M5, "several boxes on one line = one answer")
add(T(W2, "So $n = \\boxed{1}$ or $n = \\boxed{-3}$."), "1,-2", "wrong", U["qw50"], "list near miss")
add(T(W3, "The answer is $\\fbox{504}$."), "504", "correct", A25, "fbox")
add(T(W3, "The answer is $\\fbox{540}$."), "504", "wrong", A25, "fbox near miss")
add("Okay, so I need to count the ordered pairs. " + W1 + "\n</think>\n\nThe number of pairs is $\\boxed{821}$.", "821", "correct", U["roll"], "missing opening <think> tag")
add("Okay, so I need to count the ordered pairs. " + W1 + " so \\boxed{820}\n</think>\n\nThe number of pairs is $\\boxed{821}$.", "820", "wrong", U["roll"], "missing opening <think>: after </think> overrides")
add(T(W2, "The answer is $n = 3k$ for any positive integer $k$, so the set of valid $n$ is $\\boxed{n = 3k}$."), "3", "wrong", U["sieval"], "expression vs integer")
add(T(W1, "Therefore $\\boxed{204.0}$."), "204", "correct", A24, "terminating decimal of integer")
add(T(W1, "Therefore $\\boxed{33.3}$."), "33", "wrong", A24, "decimal near miss")
add(T(W1, "The remainder is $\\boxed{025}$."), "25", "correct", A24, "AIME leading zeros (value)")
add(T(W1, "The remainder is $\\boxed{250}$."), "25", "wrong", A24, "AIME near miss")
add(T(W3, "Therefore, $m+n = 809 + 1 = \\boxed{810}$."), "809", "wrong", A24, "box contains sum, gold is part")
add(T(W3, "Therefore, $m+n = 108 + 1 = \\boxed{109}$."), "110", "wrong", A24, "off by one")
add(T(W3, "Therefore, $m+n = \\boxed{110}$."), "110", "correct", A24, "equation then box")
add(T(W2, "The final answer is $\\boxed{\\text{(B)}}$"), r"\text{(B)}", "correct", M5, "choice")
add(T(W2, "The final answer is $\\boxed{\\text{E}}$"), r"\text{(E)}", "correct", U["gym"], "choice in text")
add(T(W2, "The final answer is $\\boxed{\\textbf{(E)}}$"), r"\text{(B)}", "wrong", M5, "choice near miss")
add(T(W1, "So the sum of all such $n$ is $\\boxed{-1}$."), "-1", "correct", AMC, "negative integer")
add(T(W1, "So the sum of all such $n$ is $\\boxed{1}$."), "-1", "wrong", AMC, "sign error")
add(T(W1, "So the sum of all such $n$ is $\\boxed{−1}$."), "-1", "correct", AMC, "unicode minus")
add(T(W1, "The count is $\\boxed{3,159}$."), "3159", "correct", AMC, "thousands separator")
add(T(W1, "The count is $\\boxed{3,195}$."), "3159", "wrong", AMC, "digit swap")
add(T(W1, "The count is $\\boxed{1625 \\text{ ways}}$."), "1625", "correct", AMC, "units text")
add("I cannot solve this problem with certainty; I would need more information about the configuration.", "36", "no_answer", POL, "refusal")
add(T(W2, "The answer is \\boxed{4\x00 5}."), "45", "no_answer", POL, "control character")
add(T(W2, "**Final Answer**\n\\[\n\\boxed{\\ }\n\\]"), "29", "no_answer", POL, "blank box")
add("<think>\n" + W1 + "\nSo the answer should be \\boxed{96}. Hmm wait, maybe I should recount the case where the two lines are parallel, since", "96", "no_answer", POL, "box only inside unfinished think")
add(T(W1, "We want to find the number of integers $n$ between $1$ and $1000$ for which the expression is a real number."), "901", "no_answer", POL, "restatement")

# ---------- C. value/format, constants, unicode (policy-based made-up golds) ----------
add(T(W1, "Hence the answer is $\\boxed{\\frac{4}{11}}$."), r"0.\overline{36}", "correct", POL, "repeating decimal gold")
add(T(W1, "Hence the answer is $\\boxed{0.36}$."), r"0.\overline{36}", "wrong", POL, "repeating decimal truncated")
add(T(W1, "Hence the answer is $\\boxed{0.1\\overline{6}}$."), r"\frac{1}{6}", "correct", POL, "repeating decimal response")
add(T(W1, "Hence the answer is $\\boxed{0.17}$."), r"\frac{1}{6}", "wrong", POL, "decimal approximation")
add(T(W1, "Hence the answer is $\\boxed{0.666\\ldots}$."), r"\frac{2}{3}", "correct", POL, "repeating decimal with ldots")
add(T(W1, "Hence the answer is $\\boxed{0.666667}$."), r"\frac{2}{3}", "wrong", POL, "decimal approximation")
add(T(W2, "The answer is $\\boxed{4.123105625617661}$."), r"\sqrt{17}", "wrong", U["mv48"], "decimal approximation of exact")
add(T(W2, "The answer is $\\boxed{\\sqrt{17} \\approx 4.123}$."), r"\sqrt{17}", "correct", U["mv48"], "exact with approximation")
add(T(W2, "The answer is $\\boxed{\\pi \\div 8 + 1 \\div 2}$."), r"\frac{1}{2}+\frac{\pi}{8}", "correct", U["ruler"], "value not spelling")
add(T(W2, "The answer is $\\boxed{\\frac{\\pi}{8} - \\frac{1}{2}}$."), r"\frac{1}{2}+\frac{\pi}{8}", "wrong", U["ruler"], "sign near miss")
add(T(W2, "The answer is $\\boxed{\\mathrm{e}^{-1}}$."), r"\frac{1}{e}", "correct", POL, "constant e")
add(T(W2, "The answer is $\\boxed{-\\frac{1}{e}}$."), r"\frac{1}{e}", "wrong", POL, "constant e sign")
add(T(W2, "The answer is $\\boxed{e^{2}-1}$."), r"e^2+1", "wrong", POL, "constant e sign")
add(T(W2, "The answer is $\\boxed{-i}$."), r"i", "wrong", POL, "constant i sign")
add(T(W2, "The answer is $\\boxed{\\frac{\\sqrt{2}}{\\sqrt{k}}}$."), r"\sqrt{\frac{2}{k}}", "correct", POL, "positive symbols")
add(T(W2, "The answer is $\\boxed{\\frac{\\sqrt{2}}{k}}$."), r"\sqrt{\frac{2}{k}}", "wrong", POL, "positive symbols near miss")
add(T(W2, "The answer is $\\boxed{2(k+1)}$."), r"2k+2", "correct", M5, "equivalent expression")
add(T(W2, "The answer is $\\boxed{2k+1}$."), r"2k+2", "wrong", M5, "near miss expression")
add(T(W2, "The answer is $\\boxed{274i+1}$."), r"1+274i", "correct", M5, "complex reordered")
add(T(W2, "The answer is $\\boxed{1-274i}$."), r"1+274i", "wrong", M5, "complex sign")
add(T(W2, "The answer is $\\boxed{(b+2)(a+5)}$."), r"(a+5)(b+2)", "correct", M5, "reordered factors")
add(T(W2, "The answer is $\\boxed{(a+2)(b+5)}$."), r"(a+5)(b+2)", "wrong", M5, "swapped factors")
add(T(W2, "The answer is $\\boxed{x³ + 3x − 6}$."), r"x^3+3x-6", "correct", M5, "unicode superscripts")
add(T(W2, "The answer is $\\boxed{x^3+3x+6}$."), r"x^3+3x-6", "wrong", M5, "sign near miss")
add(T(W2, "The answer is $\\boxed{7π}$."), r"7\pi", "correct", M5, "unicode pi")
add(T(W2, "The answer is $\\boxed{21.99}$."), r"7\pi", "wrong", M5, "decimal approx of pi")
add(T(W2, "The answer is $\\boxed{18 + 2π}$."), r"18+2\pi", "correct", M5, "unicode pi")
add(T(W2, "The answer is $\\boxed{\\frac{20000}{\\pi}}$ square meters."), r"\frac{20000}{\pi}", "correct", M5, "units after box")
add(T(W2, "The answer is $\\boxed{6366.2}$."), r"\frac{20000}{\pi}", "wrong", M5, "decimal approx")
add(T(W2, "The answer is $\\boxed{2, 4, 8, 16, \\dots}$."), r"2, 4, 8, 16, \ldots", "correct", POL, "sequence with ldots")
add(T(W2, "The answer is $\\boxed{2, 4, 6, 8, \\ldots}$."), r"2, 4, 8, 16, \ldots", "wrong", POL, "sequence with ldots element mismatch")
add(T(W2, "The answer is $\\boxed{\\frac{3}{2}}$, i.e. $150\\%$ of the original."), r"\frac{3}{2}", "correct", M5, "trailing text after box")
add(T(W2, "The answer is $\\boxed{30\\%}$."), r"30", "correct", POL, "percent sign")
add(T(W2, "The answer is $\\boxed{\\text{even}}$."), r"\text{even}", "correct", M5, "word answer")
add(T(W2, "The answer is $\\boxed{\\text{odd}}$."), r"\text{even}", "wrong", M5, "word answer near miss")
add(T(W2, "The answer is $\\boxed{\\text{Ellipse}}$."), r"\text{ellipse}", "correct", M5, "word answer case")
add(T(W2, "The answer is $\\boxed{\\text{(A)}}$."), r"\text{(A)}", "correct", M5, "choice")

with open("tests/grading/heldout.jsonl", "w", encoding="utf-8") as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
print(len(cases), Counter(c["expected"] for c in cases))
