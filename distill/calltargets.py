"""Distillation data with tool calls: the teacher's traces become the student's targets.

For a task with tools, each labelled example (input, teacher answer) is traced the way
the tool pipeline (:mod:`tinyllm.distill.pipeline`) calls tools: each of the task's tools,
in order, gets the arguments the request's text gives (:attr:`tinyllm.tools.Tool.from_text`)
and runs through :func:`tinyllm.tools.call_tool`. The first call whose result passes the
task's verifiers and equals the teacher's answer is the trace (tool, arguments, result,
answer); its target is :func:`tinyllm.toolcalling.call_target` (the call, then for
``tools.result: context`` the result and the answer). An example without such a call is
rejected, with the reason counted: the tool failed, its result failed the verifier, or the
teacher answered something else (it did not answer with this call).

SFT and KD train on these targets, on the positions the model writes: the call, and for
``context`` the answer, never the result, which the runtime inserts
(:func:`tinyllm.distill.sft.encode` masks it). On-policy KD samples the student's own
calls (:func:`sampled_calls`). GRPO samples calls too and rewards the executed result
(``tools.result: answer``, :func:`tinyllm.distill.grpo.call_reward`) or the answer the
student writes after it (``context``, our loop only: :func:`check_method`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tinyllm.distill.sft import Encoded
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec
from tinyllm.toolcalling import call_target, execute_call, trace
from tinyllm.tools import result_text
from tinyllm.torchkit import IGNORE_INDEX

__all__ = [
    "CallStats",
    "answer_after_result",
    "call_end",
    "check_method",
    "sampled_calls",
    "trace",
    "with_calls",
]


@dataclass
class CallStats:
    """How many examples of a task became call targets, and why the others did not."""

    task: str
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """One line for the log."""
        total = self.accepted + sum(self.rejected.values())
        why = ", ".join(f"{k}: {v}" for k, v in self.rejected.most_common())
        return f"{self.task}: {self.accepted}/{total} examples traced to a tool call" + (
            f" (rejected: {why})" if why else ""
        )


def with_calls(
    task: TaskSpec, examples: Sequence[Example], log: Callable[[str], None] | None = None
) -> list[Example]:
    """The examples whose teacher answer a tool call gives, with call targets as outputs
    (``meta``: the call and the teacher's answer)."""
    stats = CallStats(task.name)
    out = []
    for ex in examples:
        call, reason = trace(task, ex)
        if call is None:
            stats.rejected[reason] += 1
            continue
        stats.accepted += 1
        meta = {
            **ex.meta,
            "answer": ex.output,
            "tool_call": {"name": call.name, "arguments": call.arguments, "result": call.result},
        }
        out.append(Example(ex.input, call_target(task, call, ex.output), meta))
    if log is not None:
        log(stats.line())
    if not out:
        raise ConfigError(
            f"task {task.name!r}: no example could be traced to a tool call ({stats.line()}); "
            "check the task's tools against its data"
        )
    return out


def check_method(method: str, tasks: Sequence[TaskSpec], backend: str = "own") -> None:
    """Refuse a method that cannot train on call targets yet: SFT and KD can, on either
    backend; GRPO can for ``tools.result: answer`` (the reward is the executed call's), and
    for ``context`` on our loop only (the reward reads the answer written after the
    executed result, a rollout trl's GRPOTrainer does not make)."""
    context = [t.name for t in tasks if t.tools is not None and t.tools.result == "context"]
    if context and method == "grpo" and backend == "trl":
        raise ConfigError(
            f"method 'grpo' on tasks whose tool result goes in context ({', '.join(context)}) "
            "is built on our loop only (each sample is a call, its executed result and the "
            "answer after it; trl's GRPOTrainer samples one completion): use backend 'own'"
        )


def sampled_calls(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    prompts: Sequence[list[int]],
    temperature: float = 1.0,
    call_tokens: int | None = None,
) -> list[Encoded]:
    """On-policy sequences of a tool task (on-policy KD, GRPO): per prompt, the student's
    own call, sampled up to ``call_tokens`` (None: ``tools.max_call_tokens``); for
    ``tools.result: context`` the call is cut where its JSON ends and executed, and a call
    that runs is followed by its result (inserted as the runtime does, so masked) and the
    student's sampled answer (:func:`answer_after_result` finds it).

    The sampler is unconstrained (:func:`tinyllm.torchkit.sample_continuations`): the
    serving constraint on calls lives in the runtime, which distillation does not import.
    A call that fails is kept as written: the teacher's logits still say how to write it.
    """
    from tinyllm.torchkit import sample_continuations

    tools = task.tools
    if tools is None:
        raise ConfigError(f"task {task.name!r} has no tools to sample calls of")
    budget = call_tokens or tools.max_call_tokens
    calls = sample_continuations(model, tokenizer, prompts, budget, temperature)
    if tools.result == "answer":
        return [
            Encoded(p + c, [IGNORE_INDEX] * len(p) + c) for p, c in zip(prompts, calls, strict=True)
        ]
    calls = [c[: call_end(tokenizer, c)] for c in calls]
    executed = [execute_call(task, tokenizer.decode(c, skip_special_tokens=True)) for c in calls]
    ran = [i for i, e in enumerate(executed) if e.result is not None]
    inserted = {i: encode_text(tokenizer, result_text(executed[i].result or "")) for i in ran}
    heads = [prompts[i] + calls[i] + inserted[i] for i in ran]
    answers = (
        sample_continuations(model, tokenizer, heads, task.output.max_new_tokens, temperature)
        if heads
        else []
    )
    after = dict(zip(ran, answers, strict=True))
    items = []
    for i, (p, c) in enumerate(zip(prompts, calls, strict=True)):
        gap, answer = inserted.get(i, []), after.get(i, [])
        labels = [IGNORE_INDEX] * len(p) + c + [IGNORE_INDEX] * len(gap) + answer
        items.append(Encoded(p + c + gap + answer, labels))
    return items


def answer_after_result(labels: Sequence[int]) -> list[int] | None:
    """The answer tokens of a ``tools.result: context`` sequence's labels (those after the
    inserted result, which is masked); None when no result was inserted (the call failed)."""
    written = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    if not written:
        return None
    gaps = [i for i in range(written[0], len(labels)) if labels[i] == IGNORE_INDEX]
    return list(labels[gaps[-1] + 1 :]) if gaps else None


def call_end(tokenizer: Any, ids: Sequence[int]) -> int:
    """How many of ``ids`` (a sampled call) it takes to write one whole JSON object; all of
    them when none completes (the call is then invalid as written)."""
    decoder = json.JSONDecoder()
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n], skip_special_tokens=True).lstrip()
        if not text.startswith("{"):
            continue
        try:
            decoder.raw_decode(text)
        except ValueError:
            continue
        return n
    return len(ids)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` alone (no special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
