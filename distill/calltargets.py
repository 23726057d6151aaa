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

SFT trains on these targets; GRPO samples calls from them and rewards the executed
result (:func:`tinyllm.distill.grpo.call_reward`, ``tools.result: answer`` only). KD on
calls is not built yet: :func:`check_method` says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec
from tinyllm.toolcalling import call_target, trace

__all__ = ["CallStats", "check_method", "trace", "with_calls"]


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


def check_method(method: str, tasks: Sequence[TaskSpec]) -> None:
    """Refuse a method that cannot train on call targets yet: SFT can; GRPO can for
    ``tools.result: answer`` (the reward is the executed call's); KD cannot."""
    with_tools = [t for t in tasks if t.tools]
    names = ", ".join(t.name for t in with_tools)
    if with_tools and method == "kd":
        raise ConfigError(
            f"method 'kd' on tasks with tools ({names}) is not built yet: distil them with "
            "method 'sft' or 'grpo' (the call targets), the others separately"
        )
    context = [t.name for t in with_tools if t.tools and t.tools.result == "context"]
    if context and method == "grpo":
        raise ConfigError(
            f"method 'grpo' on tasks whose tool result goes in context ({', '.join(context)}) "
            "is not built yet: distil them with method 'sft'"
        )
