"""Operator rollouts for online RL: run a pdr strategy graph against a trainer's inference server.

    from pdr.rollout import rollout
    episodes = rollout(
        [{"id": "p1", "problem": "What is 1+1?", "answer": "2"}],
        strategy="pdr",
        engine={"name": "sglang", "url": "http://127.0.0.1:30000", "chat_template": "qwen3"},
        overrides=["strategy.widths=[4]", "sampling.max_tokens=16384"],
        n_samples=8,
    )
    episodes[0].final_call.token_ids, episodes[0].final_call.logprobs, episodes[0].reward

What it is: the graph a ``python -m pdr.run`` job would run (the same Hydra composition through
``pdr.config.search_path.compose``, the same ``compile_graph`` and ``Executor``: nothing of the
graph is re-implemented here), pointed at an engine the caller names, with
``engine.return_logprobs`` on, recording every model call with what the server said about its
tokens. Each ``Episode`` holds every call (kind, step, round, branch, the prompt messages, the
rendered prompt text on SGLang's native API, thinking and answer, token ids and logprobs, finish
reason and token counts), the final answer and its reward (``pdr.evaluation.reward``: 1.0 / 0.0;
None without a gold answer). Drafts and refines carry their own answer and reward too.

What it is not: a run. Nothing is written (no run directory, no MLflow, no call cache: a rollout
wants fresh samples each time), and an engine error fails only its problem-sample (the Episode's
``status`` is "error" with the reason), as in a run.

Token ids and logprobs are the server's, never estimated: None where it sends none (see
docs/rl-online.md for which servers send what). They cover the whole generation of a call,
thinking included. The simulated engine has neither (and is not a model: use it for tests only).

``arollout`` is the same as a coroutine (for callers inside an event loop, e.g. verl's agent
loop); ``rollout`` runs it with ``asyncio.run``. ``trl_rollout_func`` shapes episodes for TRL
1.16's ``GRPOTrainer(rollout_func=...)`` (experimental there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pdr.data import Problem
from pdr.engines.base import Completion, EngineWrapper, GenRequest
from pdr.errors import ConfigError

__all__ = ["Call", "Episode", "arollout", "rollout", "trl_rollout_func"]

log = logging.getLogger(__name__)

_FORCED = ["tracking=off", "progress=false", "cache.mode=off"]


@dataclass
class Call:
    """One model completion of an episode (a fork of n is n Calls, one per branch).

    round: the generate round the call belongs to (1 = the first drafts; a distill after round r
    is in round r; 0 before any generate). answer/reward: only for generate calls (drafts,
    refines and the final one); reward is None without a gold answer. ``final``: the completion
    the episode's answer comes from (for a vote, the winning draft).
    """

    step: int
    kind: str
    round: int
    branch: int
    n: int
    messages: list[dict[str, str]]
    prompt_text: str | None  # the prompt as the model saw it, when pdr rendered it (SGLang native)
    text: str  # the visible answer
    reasoning: str | None  # the thinking
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    prompt_token_ids: list[int] | None = None
    answer: str | None = None
    reward: float | None = None
    final: bool = False

    @property
    def completion(self) -> str:
        """Thinking and answer as one text, the thinking in ``<think>`` tags (pdr's own layout;
        the server's exact whitespace around the tags is in the token ids, not here)."""
        return (
            f"<think>\n{self.reasoning}\n</think>\n{self.text}" if self.reasoning is not None else self.text
        )


@dataclass
class Episode:
    """One (problem, sample) run of the strategy graph. status: the final answer's reward status
    ("correct", "wrong", "no_answer", "timeout", "invalid_input", "error"), "no_gold" when the
    problem has no gold answer, or "error" when the graph failed (``error`` says why)."""

    problem_id: str
    sample: int
    problem: str
    gold: str | None
    strategy: str
    calls: list[Call]
    answer: str | None
    reward: float | None
    status: str
    error: str | None = None
    seed: int = 0

    @property
    def final_call(self) -> Call | None:
        return next((c for c in self.calls if c.final), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def build_config(
    strategy: str = "pdr",
    engine: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    return_logprobs: bool = True,
) -> Any:
    """The validated Config of a rollout: ``python -m pdr.run strategy=STRATEGY engine=NAME
    OVERRIDES`` composed (tracking, progress and the call cache off), then ``engine``'s keys
    applied to the engine schema (checked by it: unknown keys and bad values are ConfigErrors),
    with ``return_logprobs`` where the engine has that setting."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from pdr.config.search_path import compose

    settings = dict(engine or {})
    name = str(settings.pop("name", "sim"))
    try:
        cfg = OmegaConf.to_object(compose([f"strategy={strategy}", f"engine={name}", *overrides, *_FORCED]))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(
            f"rollout strategy={strategy} engine={name} overrides={list(overrides)}: {exc}"
        ) from None
    fields = {f.name for f in dataclasses.fields(cfg.engine)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        from pdr.errors import did_you_mean

        raise ConfigError(
            f"rollout engine={{...}}: unknown key(s) {unknown} for engine {name!r}"
            + "".join(did_you_mean(k, sorted(fields)) for k in unknown)
        )
    if "return_logprobs" in fields:
        settings.setdefault("return_logprobs", return_logprobs)
    elif return_logprobs:
        log.warning("rollout: engine %r has no logprobs or token ids; they are recorded as None", name)
    values = {f.name: getattr(cfg.engine, f.name) for f in dataclasses.fields(cfg.engine)} | settings
    cfg.engine = type(cfg.engine)(**values)  # the schema's own checks run again
    return cfg


def as_problems(problems: Sequence[Any]) -> list[Problem]:
    """Problems from pdr ``Problem``s, mappings with ``problem`` (and ``id``, ``answer``), or
    plain strings (no gold answer: reward None). Ids default to the position."""
    out = []
    for i, p in enumerate(problems):
        if isinstance(p, Problem):
            out.append(p)
        elif isinstance(p, str):
            out.append(Problem(str(i), p, "", "rollout"))
        elif isinstance(p, Mapping) and isinstance(p.get("problem"), str):
            gold = p.get("answer")
            out.append(
                Problem(str(p.get("id", i)), p["problem"], "" if gold is None else str(gold), "rollout")
            )
        else:
            raise ConfigError(
                f"rollout problems[{i}]: expected a pdr Problem, a string, or a mapping with 'problem' "
                f"(and 'id', 'answer'), got {type(p).__name__}"
            )
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        raise ConfigError("rollout problems: ids must be unique (leave 'id' out to number them)")
    return out


# --------------------------------------------------------------------------------------------------
# Recording every call
# --------------------------------------------------------------------------------------------------


class _Recorder(EngineWrapper):
    """The engine, seen by the executor, with each (request, completions) kept per problem-sample."""

    def __init__(self, engine: Any):
        super().__init__(engine)
        self.log: dict[tuple[str, int], list[tuple[GenRequest, list[Completion], str | None]]] = {}

    @property
    def calls(self) -> int:
        return self.engine.calls

    async def generate(self, request: GenRequest) -> list[Completion]:
        out = await self.engine.generate(request)
        rendered = None
        if getattr(self.engine, "template", None) is not None:  # SGLang native: pdr renders the chat
            rendered = self.engine.render(request.messages)
        tag = request.tag
        key = (tag.problem_id, tag.sample) if tag is not None else ("", 0)
        self.log.setdefault(key, []).append((request, out, rendered))
        return out


# --------------------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------------------


async def arollout(
    problems: Sequence[Any],
    strategy: str = "pdr",
    engine: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    n_samples: int = 1,
    return_logprobs: bool = True,
    seed: int | None = None,
) -> list[Episode]:
    """Run the strategy graph on every problem ``n_samples`` times, concurrently (bounded by the
    engine's ``max_concurrency``); Episodes in (problem, sample) order. ``seed`` None draws a
    fresh one (a trainer calling again wants new samples; the simulated engine is deterministic
    in it). Starts the engine and closes it before returning. Raises ConfigError for a bad
    configuration and the engine's error when it cannot start; a failing problem-sample is an
    Episode with status "error"."""
    if n_samples < 1:
        raise ConfigError(f"rollout n_samples={n_samples}: must be >= 1")
    from pdr.engines import make_engine
    from pdr.evaluation.extract import extract_answer
    from pdr.executor import Executor, Outcome
    from pdr.strategies.graph import compile_graph
    from pdr.strategies.plan import check_context

    cfg = build_config(strategy, engine, overrides, return_logprobs)
    items = as_problems(problems)
    graph = compile_graph(cfg.strategy)
    check_context(
        graph, cfg.prompts, cfg.sampling.max_tokens, cfg.engine.context_length, [p.problem for p in items]
    )
    seed = random.randrange(2**31) if seed is None else int(seed)
    recorder = _Recorder(make_engine(cfg.engine, items))
    executor = Executor(recorder, graph, cfg.prompts, cfg.sampling, seed, extract=extract_answer)

    async def one(problem: Problem, sample: int) -> Any:
        try:
            return await executor.run_one(problem, sample)
        except Exception as exc:  # noqa: BLE001 - per-problem isolation, as in a run
            log.exception("rollout: problem %s sample %d failed", problem.id, sample)
            return Outcome.failed(problem.id, sample, exc, simulated=recorder.simulated)

    await recorder.start()
    try:
        outcomes = await asyncio.gather(*(one(p, s) for p in items for s in range(n_samples)))
    finally:
        await recorder.close()
    pairs = [(p, s) for p in items for s in range(n_samples)]
    episodes = [
        _episode(p, o, recorder.log.get((p.id, s), []), graph, cfg.strategy.name, seed)
        for (p, s), o in zip(pairs, outcomes, strict=True)
    ]
    await asyncio.to_thread(_grade, episodes)
    return episodes


def rollout(
    problems: Sequence[Any],
    strategy: str = "pdr",
    engine: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    n_samples: int = 1,
    return_logprobs: bool = True,
    seed: int | None = None,
) -> list[Episode]:
    """``arollout`` from synchronous code (its own event loop: not from inside a running one)."""
    return asyncio.run(arollout(problems, strategy, engine, overrides, n_samples, return_logprobs, seed))


def _episode(
    problem: Problem,
    outcome: Any,
    log_: list[tuple[GenRequest, list[Completion], str | None]],
    graph: Any,
    strategy: str,
    seed: int,
) -> Episode:
    from pdr.strategies.generate import Generate

    final = outcome.state.final.completion if outcome.state is not None and outcome.state.final else None
    round_of: list[int] = []
    current = 0
    for op in graph.ops:
        if isinstance(op, Generate):
            current = op.round
        round_of.append(current)
    calls: list[Call] = []
    for request, out, rendered in log_:
        tag = request.tag
        assert tag is not None  # the executor tags every request
        for i, c in enumerate(out):
            generates = tag.step < len(graph.ops) and isinstance(graph.ops[tag.step], Generate)
            calls.append(
                Call(
                    step=tag.step,
                    kind=tag.kind,
                    round=round_of[tag.step] if tag.step < len(round_of) else 0,
                    branch=tag.branch + i,
                    n=request.n,
                    messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    prompt_text=rendered,
                    text=c.text,
                    reasoning=c.reasoning,
                    finish_reason=c.finish_reason,
                    prompt_tokens=c.prompt_tokens,
                    completion_tokens=c.completion_tokens,
                    token_ids=c.meta.get("token_ids"),
                    logprobs=c.meta.get("logprobs"),
                    prompt_token_ids=c.meta.get("prompt_token_ids"),
                    answer=_answer(c) if generates else None,
                    final=c is final,
                )
            )
    calls.sort(key=lambda c: (c.step, c.branch))  # forks of one step finish in any order
    status = "error" if outcome.error else ("no_gold" if not problem.answer else "pending")
    return Episode(
        problem.id, outcome.sample, problem.problem, problem.answer or None, strategy, calls,
        outcome.final_answer, None, status, outcome.error, seed,
    )  # fmt: skip


def _answer(c: Completion) -> str | None:
    from pdr.evaluation.extract import extract_answer

    return None if c.finish_reason == "length" and not c.text else extract_answer(c.text)


def _grade(episodes: list[Episode]) -> None:
    """Rewards of every final answer and every draft/refine answer (one batch; never raises)."""
    from pdr.evaluation.reward import evaluate_many

    targets: list[tuple[Any, str | None, str]] = []  # (Episode or Call, answer, gold)
    for ep in episodes:
        if ep.gold is None:
            continue
        if ep.status != "error":
            targets.append((ep, ep.answer, ep.gold))
        targets += [(c, c.answer, ep.gold) for c in ep.calls if c.answer is not None or c.final]
    verdicts = evaluate_many([("" if a is None else f"\\boxed{{{a}}}", g) for _, a, g in targets])
    for (obj, answer, _), v in zip(targets, verdicts, strict=True):
        obj.reward = v.score
        if isinstance(obj, Episode):
            obj.status = v.status if answer is not None else "no_answer"
    for ep in episodes:
        if ep.status == "error" and ep.gold is not None:
            ep.reward = 0.0
        for c in ep.calls:
            if c.reward is None and ep.gold is not None and (c.answer is not None or c.final):
                c.reward = 0.0


# --------------------------------------------------------------------------------------------------
# TRL 1.16: GRPOTrainer(rollout_func=...)
# --------------------------------------------------------------------------------------------------


def trl_rollout_func(
    strategy: str = "pdr",
    engine: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    *,
    standard_fraction: float = 0.0,
    standard_strategy: str = "long_cot",
    standard_overrides: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> Callable[[list[Any], Any], dict[str, list[Any]]]:
    """A ``rollout_func(prompts, trainer) -> dict`` for TRL 1.16's GRPOTrainer (experimental there).

    TRL passes this process's prompts with each prompt repeated ``num_generations`` times in a
    row (its sampler's groups); each entry becomes one episode, and the trainer learns from the
    episode's **final call**: ``prompt_ids`` are that call's prompt (with the workspace: the
    operator-consistent part), ``completion_ids`` and ``logprobs`` its sampled tokens as the
    server reported them. ``standard_fraction`` of the groups (evenly spread) run
    ``standard_strategy`` instead (plain long-CoT rollouts: the paper mixes 50/50), with
    ``standard_overrides`` (default: ``overrides`` without the ``strategy.*`` ones). The prompt's
    last user message is the problem text (pdr applies its own prompt templates).

    Prompt ids come from the server (vLLM ``return_token_ids``), else the trainer's tokenizer
    (``tokenizer`` or ``trainer.processing_class``) on the prompt text pdr rendered (SGLang native)
    or on the chat messages with its chat template. A final call without token ids or logprobs
    is an error naming the engine setting: training on estimated tokens would be wrong silently.
    Extra fields forwarded to the reward functions: ``pdr_answer``, ``pdr_strategy``.
    """
    if not 0.0 <= standard_fraction <= 1.0:
        raise ConfigError(f"trl_rollout_func standard_fraction={standard_fraction}: must be in [0, 1]")
    if standard_overrides is None:
        standard_overrides = [o for o in overrides if not o.lstrip("+~").startswith("strategy")]
    runs = {strategy: list(overrides), standard_strategy: list(standard_overrides)}
    if standard_fraction > 0 and standard_strategy == strategy:
        raise ConfigError(
            f"trl_rollout_func: standard_strategy={standard_strategy!r} is the operator strategy"
        )
    build_config(strategy, engine, overrides)  # fail now, not at the first training step
    if standard_fraction > 0:
        build_config(standard_strategy, engine, standard_overrides)
    counter = [0]

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        texts = [_problem_text(p) for p in prompts]
        groups: list[list[int]] = []
        for i, t in enumerate(texts):
            if groups and texts[groups[-1][0]] == t:
                groups[-1].append(i)
            else:
                groups.append([i])
        by_strategy: dict[str, list[int]] = {}
        for g, members in enumerate(groups):
            standard = math.floor((g + 1) * standard_fraction) > math.floor(g * standard_fraction)
            by_strategy.setdefault(standard_strategy if standard else strategy, []).extend(members)
        episodes: list[Episode | None] = [None] * len(prompts)
        for name, rows in by_strategy.items():
            counter[0] += 1
            problems = [{"id": f"trl{counter[0]}-{i}", "problem": texts[i]} for i in rows]
            for i, ep in zip(rows, rollout(problems, name, engine, runs[name]), strict=True):
                episodes[i] = ep
        tok = tokenizer if tokenizer is not None else getattr(trainer, "processing_class", None)
        out: dict[str, list[Any]] = {k: [] for k in ("prompt_ids", "completion_ids", "logprobs")}
        out["pdr_answer"], out["pdr_strategy"] = [], []
        for ep in episodes:
            assert ep is not None
            final = ep.final_call
            if final is None or final.token_ids is None or final.logprobs is None:
                raise ConfigError(
                    f"pdr rollout: the final call of problem {ep.problem_id} has no "
                    + ("completion (" + str(ep.error) + ")" if final is None else "token ids or logprobs")
                    + " from the server; use engine.return_logprobs with a server that returns them "
                    "(SGLang native /generate; vLLM with extra_body return_token_ids): docs/rl-online.md"
                )
            out["prompt_ids"].append(_prompt_ids(final, tok))
            out["completion_ids"].append(list(final.token_ids))
            out["logprobs"].append(list(final.logprobs))
            out["pdr_answer"].append(ep.answer)
            out["pdr_strategy"].append(ep.strategy)
        return out

    return rollout_func


def _problem_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            content = users[-1].get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content)
    raise ConfigError(f"pdr rollout: cannot read a problem from the prompt {str(prompt)[:100]!r}")


def _prompt_ids(call: Call, tokenizer: Any) -> list[int]:
    if call.prompt_token_ids is not None:
        return list(call.prompt_token_ids)
    if tokenizer is None:
        raise ConfigError(
            "pdr rollout: no prompt token ids from the server and no tokenizer (pass tokenizer=)"
        )
    if call.prompt_text is not None:
        return list(tokenizer(call.prompt_text, add_special_tokens=False)["input_ids"])
    ids = tokenizer.apply_chat_template(call.messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, Mapping):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)
