"""The "prototype" teacher: an LLM decides which tool to call, the tool computes.

Per input, a small loop with a step limit:

1. the LLM picks one option among the tools' names and ``none`` — constrained to those
   names by scoring each option's log-likelihood after a routing prompt that lists the
   tools with their descriptions, calibrated against a content-free request (works even
   for a 135M model that cannot write reliable JSON calls);
2. the chosen tool is called with the request (``{"text": input}``, checked against the
   tool's JSON schema) and computes the answer;
3. if the tool fails (:class:`~tinyllm.distill.tools.ToolError`) or its answer does not pass
   the task's verifiers, the LLM picks again among the tools not yet tried;
4. ``none``, or no step left: the LLM answers the task itself (k samples).

Every decision is recorded in :attr:`ToolPipelineTeacher.trace` (which tool, did it work),
so how often the LLM picked the right tool can be measured.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllm.distill.teachers import LocalTeacher, check_k
from tinyllm.distill.tools import BUILTIN_TOOLS, Tool, ToolError
from tinyllm.errors import ConfigError
from tinyllm.tasks import Suite, TaskSpec
from tinyllm.verifiers import verify

NONE = "none"
# Routing demonstrations: written by hand, unrelated to the suite's data.
ROUTING_SHOTS = (
    ("Compute the result.", "How much is 17 times 23?", "calculator"),
    ("Classify the sentiment.", "The soup was cold and the waiter rude.", NONE),
    (
        "Give the absolute date.",
        "Reference time: 2024-03-01 10:00 (Friday). Expression: the day after tomorrow",
        "date_parser",
    ),
    (
        "Return the reservation as JSON.",
        "Table for three in Lyon on 2 May 2025",
        "booking_extractor",
    ),
    ("Rewrite the query as a sentence.", "cheap pizza near me open now", NONE),
)


@dataclass
class Step:
    """One decision of the loop: the option the LLM chose and what came of it."""

    option: str
    ok: bool = False
    error: str = ""


@dataclass
class Trace:
    """The decisions for one input and who gave the answer (a tool's name or ``llm``)."""

    task: str
    input: str
    steps: list[Step] = field(default_factory=list)
    answered_by: str = "llm"


class ToolPipelineTeacher:
    """An LLM that routes each input to a tool (or answers itself); tools compute."""

    def __init__(
        self,
        llm: LocalTeacher,
        tools: Sequence[Tool],
        *,
        max_steps: int = 2,
        name: str = "pipeline",
    ) -> None:
        """Wire an LLM to tools.

        Args:
            llm: the local model that routes, and answers when no tool fits.
            tools: tools it may call (unique names, not ``none``).
            max_steps: tool calls tried per input before the LLM answers itself.
            name: how the teacher is recorded in provenance.
        """
        names = [t.name for t in tools]
        if len(set(names)) != len(names) or NONE in names:
            raise ConfigError(f"tool names must be unique and not {NONE!r}: {names}")
        if max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {max_steps}")
        self.llm, self.tools, self.max_steps = llm, {t.name: t for t in tools}, max_steps
        self.name = name
        self.trace: list[Trace] = []
        self._priors: dict[tuple[str, ...], dict[str, float]] = {}

    def routing_prompt(self, task: TaskSpec, text: str) -> list[dict[str, str]]:
        """The chat messages that ask the LLM which tool to use for one input."""
        menu = "\n".join(f"- {t.name}: {t.description}" for t in self.tools.values())
        system = (
            f"You route requests to tools. Tools:\n{menu}\n- {NONE}: no tool fits; "
            "answer directly.\nReply with the name of one tool only."
        )
        messages = [{"role": "system", "content": system}]
        for instruction, request, option in ROUTING_SHOTS:
            if option == NONE or option in self.tools:
                messages.append({"role": "user", "content": f"Task: {instruction}\n{request}"})
                messages.append({"role": "assistant", "content": option})
        messages.append(
            {"role": "user", "content": f"Task: {task.instruction}\n{task.prompt(text)}"}
        )
        return messages

    def choose(
        self, task: TaskSpec, inputs: Sequence[str], allowed: Sequence[set[str]]
    ) -> list[str]:
        """The LLM's pick per input among its allowed options.

        Scores are calibrated (Zhao et al. 2021, "Calibrate before use"): each option's
        log-likelihood minus its log-likelihood for a content-free request ("N/A"), so a
        small model's prior for a short answer such as ``none`` does not decide alone.
        """
        options = sorted({o for a in allowed for o in a})
        scores = self._score(task, inputs, options)  # [n_inputs][n_options]
        prior = self._prior(task, options)
        picks = []
        for row, ok in zip(scores, allowed, strict=True):
            calibrated = {o: s - prior[o] for s, o in zip(row, options, strict=True) if o in ok}
            picks.append(max(sorted(calibrated), key=calibrated.__getitem__))
        return picks

    def _prior(self, task: TaskSpec, options: list[str]) -> dict[str, float]:
        key = tuple(options)
        if key not in self._priors:
            blank = dataclasses.replace(task, instruction="N/A", template="{input}")
            self._priors[key] = dict(
                zip(options, self._score(blank, ["N/A"], options)[0], strict=True)
            )
        return self._priors[key]

    def _score(
        self, task: TaskSpec, inputs: Sequence[str], options: list[str]
    ) -> list[list[float]]:
        """Log-likelihood of each option after each input's routing prompt: [inputs][options].

        When the options start with distinct tokens (the built-in tools do), the first
        token's log-probability decides exactly as decoding constrained to the option
        names would, in one batched forward pass; otherwise all tokens are summed.
        """
        tok = self.llm.tokenizer
        option_ids = [tok(o, add_special_tokens=False)["input_ids"] for o in options]
        prompts = [
            str(
                tok.apply_chat_template(
                    self.routing_prompt(task, t), tokenize=False, add_generation_prompt=True
                )
            )
            for t in inputs
        ]
        if len({ids[0] for ids in option_ids}) < len(options):
            return [self._sequence_scores(p, option_ids) for p in prompts]
        firsts = [ids[0] for ids in option_ids]
        result: list[list[float]] = []
        for start in range(0, len(prompts), self.llm.batch_size):
            logp = self._next_token_logprobs(prompts[start : start + self.llm.batch_size])
            result.extend(logp[:, firsts].tolist())
        return result

    def _next_token_logprobs(self, prompts: list[str]) -> Any:
        """[B, V] log-probabilities of the token after each (left-padded) prompt."""
        import torch

        batch = self.llm.tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.inference_mode():
            logits = self.llm.model(**batch).logits[:, -1]  # [B, V]
        return logits.float().log_softmax(-1)

    def _sequence_scores(self, prompt: str, option_ids: list[list[int]]) -> list[float]:
        """Summed log-probability of every token of each option after one prompt."""
        import torch

        tok, model = self.llm.tokenizer, self.llm.model
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        width = len(prompt_ids) + max(len(o) for o in option_ids)
        ids = torch.full((len(option_ids), width), tok.pad_token_id)  # [O, T]
        mask = torch.zeros((len(option_ids), width), dtype=torch.long)
        for i, o in enumerate(option_ids):
            ids[i, : len(prompt_ids) + len(o)] = torch.tensor(prompt_ids + o)
            mask[i, : len(prompt_ids) + len(o)] = 1
        with torch.inference_mode():
            logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        start = len(prompt_ids)
        return [
            sum(float(logp[i, start + j - 1, t]) for j, t in enumerate(o))
            for i, o in enumerate(option_ids)
        ]

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        """One tool answer per input where a tool works, else ``k`` answers of the LLM."""
        check_k(k, temperature)
        traces = [Trace(task.name, text) for text in inputs]
        answers: list[list[str] | None] = [None] * len(inputs)
        tried: list[set[str]] = [set() for _ in inputs]
        for _ in range(self.max_steps):
            pending = [
                i
                for i, a in enumerate(answers)
                if a is None and not any(s.option == NONE for s in traces[i].steps)
            ]
            if not pending:
                break
            allowed = [set(self.tools) - tried[i] | {NONE} for i in pending]
            for i, option in zip(
                pending, self.choose(task, [inputs[i] for i in pending], allowed), strict=True
            ):
                traces[i].steps.append(self._call(task, inputs[i], option, answers, i))
                tried[i].add(option)
                if answers[i] is not None:
                    traces[i].answered_by = option
        rest = [i for i, a in enumerate(answers) if a is None]
        if rest:
            llm_answers = self.llm.label(task, [inputs[i] for i in rest], k, temperature)
            for i, candidates in zip(rest, llm_answers, strict=True):
                answers[i] = candidates
        self.trace.extend(traces)
        return [a or [] for a in answers]

    def _call(self, task: TaskSpec, text: str, option: str, answers: list[Any], i: int) -> Step:
        if option == NONE:
            return Step(NONE, ok=True)
        try:
            answer = self.tools[option]({"text": text})
        except ToolError as e:
            return Step(option, error=str(e))
        verdict = verify(task, answer)
        if not verdict.ok:
            return Step(option, error=f"answer rejected: {verdict.reason}")
        answers[i] = [answer]
        return Step(option, ok=True)


def builtin_pipeline(
    llm: str | os.PathLike[str] | None = None, suite: Suite | None = None, few_shot: int = 3
) -> ToolPipelineTeacher:
    """The shipped pipeline: SmolLM2-135M-Instruct routing to calculator, dates and booking tools.

    Args:
        llm: the bundle of the routing LLM (default ``out/smollm2.tllm``, as imported by
            ``tinyllm import smollm2-135m -o out/smollm2.tllm``).
        suite: where the LLM's few-shot examples come from (default: the built-in suite).
        few_shot: worked examples before each input when the LLM answers itself.
    """
    path = Path(llm) if llm is not None else Path("out/smollm2.tllm")
    if not path.is_dir():
        raise ConfigError(
            f"the built-in tool pipeline needs its LLM bundle at {path}; create it with "
            f"`tinyllm import smollm2-135m -o {path}`"
        )
    if suite is None:
        from tinyllm.suite import load_tasks

        suite = load_tasks("builtin")
    teacher = LocalTeacher.from_bundle(path, suite=suite, few_shot=few_shot)
    return ToolPipelineTeacher(teacher, BUILTIN_TOOLS, name=f"pipeline:builtin({path.name})")
