"""A task's tool calls outside the engine: execute a written call, build training targets.

The engine runs calls in its decode loop (``tinyllm.runtime.toolrunner``); evaluation
with transformers and distillation data use these functions, so a call means the same
thing everywhere: ``{"name": ..., "arguments": {...}}`` (:func:`tinyllm.tools.format_call`),
then, for ``tools.result: context``, :func:`tinyllm.tools.result_text` and the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec
from tinyllm.toolbox import get_tool
from tinyllm.tools import ToolCall, ToolError, call_tool, format_call, parse_call, result_text


def uses(task: TaskSpec) -> list[str]:
    """The names of the task's tools (an error for a task without tools)."""
    if task.tools is None:
        raise ConfigError(f"task {task.name!r} has no tools")
    return list(task.tools.names)


def execute_call(task: TaskSpec, text: str) -> ToolCall:
    """Run the call ``text`` (as the model wrote it) with the task's tools; never raises."""
    start = time.perf_counter()
    name, arguments = "", None
    try:
        name, arguments = parse_call(text.strip())
        if name not in uses(task):
            raise ToolError(f"the call names {name[:40]!r}, not one of {uses(task)}")
        result = call_tool(get_tool(name), arguments)
        return ToolCall(name, arguments, result, None, time.perf_counter() - start)
    except ToolError as e:
        return ToolCall(name, arguments, None, str(e), time.perf_counter() - start)


def answers_after_calls(
    task: TaskSpec,
    calls: list[str],
    continue_texts: Callable[[list[int], list[str]], list[str]],
) -> list[str]:
    """The answers to written calls: the results (``tools.result: answer``), or what
    ``continue_texts(indices, texts)`` writes after the calls ``indices`` when each
    prompt is followed by ``texts`` (the call and its result; ``context``). A failed call
    answers the empty text (invalid)."""
    executed = [execute_call(task, c) for c in calls]
    if task.tools is None or task.tools.result == "answer":
        return [c.result or "" for c in executed]
    ok = [i for i, c in enumerate(executed) if c.result is not None]
    more = continue_texts(ok, [calls[i] + result_text(executed[i].result or "") for i in ok])
    answers = [""] * len(calls)
    for i, text in zip(ok, more, strict=True):
        answers[i] = text
    return answers


def call_target(task: TaskSpec, call: ToolCall, answer: str) -> str:
    """The text a student learns to write for one traced call: the call, and for
    ``tools.result: context`` the result and the answer after it."""
    text = format_call(get_tool(call.name), call.arguments)
    if task.tools is not None and task.tools.result == "context":
        text += result_text(call.result or "") + answer
    return text
