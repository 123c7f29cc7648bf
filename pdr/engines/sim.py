"""`engine=sim`: an embedded, deterministic, *simulated* reasoning model.

It exists so that the whole pipeline (prompts, fork/join, parsing, grading, budgets, tracking) can
run with no GPU, server or network: for the quickstart, the tests and dry runs that estimate a
sweep's token cost. Its accuracy numbers are properties of this simulator, never of a model;
every run it makes is tagged `simulated=true`.

The model (all randomness from the per-call seed, so results do not depend on scheduling order):
- It knows the answer key (the problems it was built with) and each problem's difficulty d in
  [0, 1]. A plain draft is correct with probability sigmoid(sharpness * (skill - d)); otherwise it
  gives one of a few plausible wrong answers per problem, with Zipf-like weights, so that
  majority votes can converge on a wrong answer.
- Anchoring: when its prompt holds earlier candidates (a workspace, a previous solution, a
  summary), it reads their \\boxed{} answers. With probability `anchoring` it picks one of them,
  weighting correct ones by (1 + verification), and adopts it, unless the pick is wrong and it
  notices (probability v / (1 + v)); otherwise it solves afresh. So correct candidates in the
  workspace raise refine accuracy, and a workspace of only wrong candidates lowers it.
- Text has a thinking model's shape: `<think> ... </think>` then a short solution ending in
  \\boxed{answer}. Tokens are whitespace-separated words. Thinking length grows with difficulty
  (log-normal noise); a generation longer than max_tokens is cut there: no answer.
- Summary, selection and critique calls produce text of the right form (answers with support
  counts, a boxed list of candidate numbers, a verdict).
- Optional latency: latency_base_ms + latency_per_token_ms per generated token (asyncio sleep).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pdr.config.engines import SimEngineConfig
from pdr.engines.base import BaseEngine, Completion, GenRequest
from pdr.engines.registry import register_engine
from pdr.evaluation.extract import normalize_answer
from pdr.seeding import stable_hash

_VOCAB = (
    "so we need to check whether the condition holds for each case then consider the sum "
    "of the terms and simplify using the identity note that this gives a bound wait let me "
    "recompute the product carefully hence the value must satisfy the equation modulo the "
    "remainder also the factor appears twice which means the count doubles substituting back "
    "we get the expression and comparing coefficients yields the result"
).split()
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}")
_SUPPORT = re.compile(r"\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}: supported by (\d+)")
_VERDICT_WRONG = "Verdict: the final answer is likely wrong."
_VERDICT_RIGHT = "Verdict: the final answer looks correct."


class _Words:
    """A fixed pseudo-random word stream; text of n words is a slice of it (fast, deterministic)."""

    def __init__(self, size: int = 8192):
        rng = random.Random(12345)
        self.words = [rng.choice(_VOCAB) for _ in range(size)]

    def take(self, n: int, offset: int) -> str:
        size = len(self.words)
        offset %= size
        if n <= size - offset:
            return " ".join(self.words[offset : offset + n])
        parts = []
        while n > 0:
            chunk = self.words[offset : offset + n]
            parts.append(" ".join(chunk))
            n -= len(chunk)
            offset = 0
        return " ".join(parts)


_WORDS = _Words()


def count_words(text: str) -> int:
    return len(text.split())


@register_engine("sim", SimEngineConfig)
class SimEngine(BaseEngine):
    name = "sim"
    simulated = True

    def __init__(self, cfg: SimEngineConfig, problems: Sequence[Any] = (), *, run_dir: Any = None):
        # `problems` is the answer key; `run_dir` is unused (the registry's constructor signature).
        super().__init__(cfg.max_concurrency)
        self.cfg = cfg
        self._problems = {p.id: p for p in problems}

    def identity(self) -> str:
        c = self.cfg
        return (
            f"sim:{c.model}:skill={c.skill}:sharp={c.sharpness}:anchor={c.anchoring}:verif={c.verification}"
            f":think={c.think_tokens}:ans={c.answer_tokens}"
        )

    def info(self) -> dict[str, Any]:
        return {"engine": "sim", "model": self.cfg.model, "simulated": True}

    def count_tokens(self, text: str) -> int:
        return count_words(text)

    # ---- the model -------------------------------------------------------------------------

    def _difficulty(self, problem: Any) -> float:
        d = getattr(problem, "difficulty", None)
        if d is None:  # no hint: a stable pseudo-random difficulty per problem
            d = 0.2 + 0.6 * (stable_hash("difficulty", problem.id) % 1000) / 999
        return min(max(float(d), 0.0), 1.0)

    def _wrong_answers(self, problem: Any) -> list[str]:
        gold = str(problem.answer).strip()
        seed = stable_hash("wrong", problem.id)
        rng = random.Random(seed)
        if re.fullmatch(r"-?\d+", gold):
            g = int(gold)
            pool = [g + 1, g - 1, 2 * g, g // 2 if g > 1 else g + 7, rng.randint(0, 999)]
            out = []
            for v in pool:
                if str(v) != gold and str(v) not in out:
                    out.append(str(v))
            return out[:4]
        return [f"{gold}+{i}" for i in (1, 2, 3)]

    async def _generate(self, request: GenRequest) -> list[Completion]:
        prompt = "\n".join(m.content for m in request.messages)
        prompt_tokens = count_words(prompt) + 4 * len(request.messages)
        out = []
        total_latency = 0.0
        for i in range(request.n):
            rng = random.Random(request.seed + i)
            raw = self._respond(request, prompt, rng)
            cached = prompt_tokens - 1 if i else 0
            if request.sampling.thinking_tokens is not None:
                c = self._finish_forced(raw, request, prompt_tokens, cached, rng)
            else:
                c = self._finish(raw, request.sampling.max_tokens, prompt_tokens, cached=cached)
            c.latency_s = (self.cfg.latency_base_ms + self.cfg.latency_per_token_ms * c.completion_tokens) / 1000
            total_latency = max(total_latency, c.latency_s)
            out.append(c)
        if total_latency > 0:  # branches run concurrently: the fork takes as long as its slowest
            await asyncio.sleep(total_latency)
        return out

    def _respond(self, request: GenRequest, prompt: str, rng: random.Random) -> tuple[int, str]:
        """Return (thinking word count, visible text) for one branch."""
        tag = request.tag
        problem = self._problems.get(tag.problem_id) if tag is not None else None
        kind = tag.kind if tag is not None else "draft"
        if problem is None:
            think = max(1, int(self.cfg.think_tokens * rng.lognormvariate(0, 0.3)))
            return think, self._solution(rng, "0")
        d = self._difficulty(problem)
        tail = prompt.split(problem.problem, 1)[1] if problem.problem in prompt else ""
        scale = 0.5 + 1.5 * d
        if kind == "summary":
            return self._think_len(rng, 0.3 * scale), self._summary(tail, rng)
        if kind == "select":
            return self._think_len(rng, 0.2 * scale), self._select(tail, problem, rng, request)
        if kind == "critique":
            return self._think_len(rng, 0.3 * scale), self._critique(tail, problem, rng)
        answer = self._answer(problem, d, tail, rng)
        factor = scale * (0.8 if tail.strip() else 1.0)  # refining a workspace is a bit shorter
        return self._think_len(rng, factor), self._solution(rng, answer)

    def _think_len(self, rng: random.Random, factor: float) -> int:
        return max(1, int(self.cfg.think_tokens * factor * rng.lognormvariate(-0.08, 0.4)))

    def _answer(self, problem: Any, d: float, tail: str, rng: random.Random) -> str:
        gold = str(problem.answer).strip()
        p_solve = 1.0 / (1.0 + math.exp(-self.cfg.sharpness * (self.cfg.skill - d)))
        seen = self._workspace_answers(tail)
        if seen and rng.random() < self._anchoring(tail):
            # Anchor on a workspace answer, correct ones weighted up by verification; a wrong
            # pick is caught (and the problem solved afresh) with probability v / (1 + v).
            weights = []
            for ans, w in seen.items():
                weights.append(w * (1.0 + self.cfg.verification) if normalize_answer(ans) == normalize_answer(gold) else w)
            pick = rng.choices(list(seen), weights=weights)[0]
            if normalize_answer(pick) == normalize_answer(gold) or rng.random() < 1.0 / (1.0 + self.cfg.verification):
                return pick
        if rng.random() < p_solve:
            return gold
        wrong = self._wrong_answers(problem)
        return rng.choices(wrong, weights=[0.5, 0.25, 0.15, 0.1][: len(wrong)])[0]

    def _anchoring(self, tail: str) -> float:
        # A critique that calls the previous answer wrong loosens the anchor.
        return self.cfg.anchoring * (0.3 if _VERDICT_WRONG in tail else 1.0)

    @staticmethod
    def _workspace_answers(tail: str) -> Counter[str]:
        seen: Counter[str] = Counter()
        for ans, count in _SUPPORT.findall(tail):
            seen[ans.strip()] += int(count)
        if not seen:
            for ans in _BOXED.findall(tail):
                if ans.strip():
                    seen[ans.strip()] += 1
        return seen

    def _solution(self, rng: random.Random, answer: str) -> str:
        n = max(4, int(self.cfg.answer_tokens * rng.lognormvariate(-0.05, 0.3)))
        body = _WORDS.take(n, rng.randrange(1 << 30))
        return f"{body}.\n\nTherefore, the final answer is $\\boxed{{{answer}}}$."

    def _summary(self, tail: str, rng: random.Random) -> str:
        seen: Counter[str] = Counter(a.strip() for a in _BOXED.findall(tail) if a.strip())
        lines = ["Summary of the candidate solutions."]
        if seen:
            lines.append("Proposed final answers:")
            for ans, cnt in seen.most_common():
                lines.append(f"- \\boxed{{{ans}}}: supported by {cnt} solution{'s' if cnt != 1 else ''}")
        else:
            lines.append("No candidate reached a final answer.")
        lines.append("Agreements and open points: " + _WORDS.take(max(8, self.cfg.answer_tokens // 2), rng.randrange(1 << 30)))
        return "\n".join(lines)

    def _select(self, tail: str, problem: Any, rng: random.Random, request: GenRequest) -> str:
        parts = re.split(r"### Candidate (\d+)", tail)
        cands: list[tuple[int, str | None]] = []
        for j in range(1, len(parts) - 1, 2):
            found = _BOXED.findall(parts[j + 1])
            cands.append((int(parts[j]), found[-1].strip() if found else None))
        k_match = re.search(r"Judge which (\d+) candidates", tail) or re.search(r"which (\d+) candidates", request.messages[-1].content)
        k = int(k_match.group(1)) if k_match else 2
        gold = normalize_answer(str(problem.answer))
        counts = Counter(a for _, a in cands if a)

        def score(c: tuple[int, str | None]) -> float:
            idx, ans = c
            if ans is None:
                return -1.0 + rng.random() * 0.1
            verified = 1.0 if normalize_answer(ans) == gold and rng.random() < self.cfg.verification / (1 + self.cfg.verification) else 0.0
            return verified + counts[ans] / max(1, len(cands)) + rng.random() * 0.3

        ranked = sorted(cands, key=score, reverse=True)[:k]
        return "The most reliable candidates are \\boxed{" + ", ".join(str(i) for i, _ in ranked) + "}"

    def _critique(self, tail: str, problem: Any, rng: random.Random) -> str:
        found = _BOXED.findall(tail)
        ans = found[-1].strip() if found else None
        correct = ans is not None and normalize_answer(ans) == normalize_answer(str(problem.answer))
        accurate = rng.random() < 0.5 + 0.4 * math.tanh(self.cfg.verification)
        says_correct = correct if accurate else not correct
        body = _WORDS.take(max(8, self.cfg.answer_tokens // 2), rng.randrange(1 << 30))
        return f"{body}.\n{_VERDICT_RIGHT if says_correct else _VERDICT_WRONG}"

    def _finish_forced(
        self, raw: tuple[int, str], request: GenRequest, prompt_tokens: int, cached: int, rng: random.Random
    ) -> Completion:
        """A thinking cap T plus an answer buffer A, as budget forcing runs it on a server
        (pdr/engines/thinking.py, `continue`): phase 1 is capped at T; a branch cut there gets a
        second phase that extends the same sequence (its prefix all cached) with "</think>" if the
        think block is still open, capped at A. A forced answer rests on unfinished thinking: it
        is kept with probability T / (the thinking it wanted), else it is a plausible wrong one."""
        think_n, visible = raw
        T = request.sampling.thinking_tokens or 0
        A = request.sampling.max_tokens - T
        V = count_words(visible)
        if think_n + V + 2 <= T:  # done within the thinking cap: one phase
            c = self._finish(raw, T, prompt_tokens, cached)
            c.meta["phases"] = [_phase(T, prompt_tokens, c.completion_tokens, cached, "stop")]
            return c
        forced = think_n + 2 > T  # still thinking at the cap ("<think>" and "</think>" are a token each)
        if forced:
            problem = self._problems.get(request.tag.problem_id) if request.tag is not None else None
            if problem is not None and rng.random() > T / think_n:
                visible = self._solution(rng, rng.choice(self._wrong_answers(problem)))
                V = count_words(visible)
            think_n = T - 1
            shown, injected, left = 0, 1, V  # phase 2 reads the forced close, writes the whole answer
        else:
            shown = T - think_n - 2  # answer words phase 1 already wrote
            injected, left = 0, V - shown
        out2 = min(left, A)
        finish = "stop" if left <= A else "length"
        words = visible.split()
        text = visible if finish == "stop" else " ".join(words[: shown + out2]).split("\\boxed")[0]
        return Completion(
            text=text,
            reasoning=_WORDS.take(think_n, think_n * 7919),
            prompt_tokens=prompt_tokens,
            completion_tokens=T + injected + out2,
            cached_tokens=cached,
            reasoning_tokens=think_n,
            finish_reason=finish,
            meta={
                "budget_forced": forced,
                "phases": [
                    _phase(T, prompt_tokens, T, cached, "length"),
                    _phase(A, prompt_tokens + T + injected, out2, prompt_tokens + T, finish),
                ],
            },
        )

    @staticmethod
    def _finish(raw: tuple[int, str], max_tokens: int, prompt_tokens: int, cached: int) -> Completion:
        think_n, visible = raw
        visible_n = count_words(visible)
        # "<think>" and "</think>" are one token each.
        total = think_n + visible_n + 2
        if total <= max_tokens:
            thinking = _WORDS.take(think_n, think_n * 7919)
            text = visible
            finish = "stop"
            completion = total
        else:
            finish = "length"
            completion = max_tokens
            if think_n + 1 >= max_tokens:  # cut inside the thinking: never left it, no answer
                thinking = _WORDS.take(max(0, max_tokens - 1), think_n * 7919)
                text = ""
            else:
                thinking = _WORDS.take(think_n, think_n * 7919)
                keep = max_tokens - think_n - 2
                # The cut always removes the last word, which closes the box: no answer survives.
                text = " ".join(visible.split()[:keep]).split("\\boxed")[0]
        return Completion(
            text=text,
            reasoning=thinking,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            cached_tokens=cached,
            reasoning_tokens=think_n if finish == "stop" else min(think_n, completion),
            finish_reason=finish,
        )


def _phase(cap: int, prompt: int, completion: int, cached: int, finish: str) -> dict[str, Any]:
    return {"max_tokens": cap, "prompt_tokens": prompt, "completion_tokens": completion,
            "cached_tokens": cached, "finish_reason": finish}  # fmt: skip


__all__ = ["SimEngine", "count_words"]
