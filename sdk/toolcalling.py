"""A task's tool calls outside the engine: execute a written call, build training targets.

The engine runs calls in its decode loop (``tinyllm.runtime.toolrunner``); evaluation
with transformers and distillation data use these functions, so a call means the same
thing everywhere: ``{"name": ..., "arguments": {...}}`` (:func:`tinyllm.tools.format_call`),
then, for ``tools.result: context``, :func:`tinyllm.tools.result_text` and the answer.
Few-shot prompts of a tool task show calls too (:func:`call_shots`), never plain answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec
from tinyllm.toolbox import get_tool
from tinyllm.tools import ToolCall, ToolError, call_tool, format_call, parse_call, result_text
from tinyllm.verifiers import answer_text, verify


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
    texts = [calls[i] + result_text(executed[i].result or "") for i in ok]
    more = continue_texts(ok, texts) if ok else []  # no call ran: nothing to continue
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


def target_spans(task: TaskSpec, text: str, result: str | None = None) -> list[tuple[str, bool]]:
    """A call target cut into what the model writes and what the runtime inserts:
    ``[(text, written)]``. For ``tools.result: context``: the call (written), the result
    text the runtime puts after it (:func:`tinyllm.tools.result_text`, not written, so no
    loss is taken on it) and the answer (written); any other target is one written span.

    Args:
        task: the target's task.
        text: the target (:func:`call_target`).
        result: the traced call's result, when known (it may hold newlines); else the
            result ends at the first newline after ``Result: ``.
    """
    if task.tools is None or task.tools.result != "context":
        return [(text, True)]
    call, sep, rest = text.partition(result_text("")[:-1])  # a call is one line of JSON
    if result is not None and rest.startswith(result + "\n"):
        end = len(result) + 1
    else:
        end = rest.find("\n") + 1
    if not sep or "\n" in call or end == 0:
        raise ConfigError(
            f"task {task.name!r} puts its tool's result in context, so a training target is "
            f"the call, {result_text('RESULT')!r} and the answer; got {text[:80]!r}"
        )
    return [(call, True), (sep + rest[:end], False), (rest[end:], True)]


def trace(task: TaskSpec, example: Example) -> tuple[ToolCall | None, str]:
    """The call that gives the teacher's answer for one example, or None and the reason."""
    if task.tools is None:
        raise ConfigError(f"task {task.name!r} has no tools to trace")
    reason = "no tool can take the request's text"
    want = answer_text(task, example.output)
    for name in task.tools.names:
        tool = get_tool(name)
        if tool.from_text is None:
            continue
        try:
            arguments = tool.from_text(example.input)
            result = call_tool(tool, arguments)
        except ToolError:
            reason = "tool failed"
            continue
        if not verify(task, result).ok:
            reason = "result failed the verifier"
            continue
        if answer_text(task, result) != want:
            reason = "teacher answered otherwise"
            continue
        return ToolCall(name, arguments, result, None, 0.0), ""
    return None, reason


def call_shots(task: TaskSpec, examples: Sequence[Example], k: int | None = None) -> list[Example]:
    """Worked examples for a tool task's few-shot prompt: each output is the call target
    (what the model is to write), traced as distillation traces its data.

    Args:
        task: a task with tools (a task without tools gets ``examples`` back unchanged).
        examples: candidate shots; one whose output is already a call of the task's tools
            is kept as it is.
        k: how many shots (the first ``k`` that trace, skipping the others); None: every
            example must trace, else a :class:`ConfigError` names the one that does not.
    """
    if task.tools is None:
        return list(examples)[:k]
    shots: list[Example] = []
    for i, ex in enumerate(examples):
        if k is not None and len(shots) == k:
            break
        if _is_call(task, ex.output):
            shots.append(ex)
            continue
        call, reason = trace(task, ex)
        if call is not None:
            shots.append(Example(ex.input, call_target(task, call, ex.output), ex.meta))
        elif k is None:
            raise ConfigError(
                f"task {task.name!r} calls tools, so its worked examples show calls; "
                f"example {i} ({ex.input[:40]!r}) cannot be traced to one ({reason}): "
                "give it as a call, or drop it"
            )
    return shots


def _is_call(task: TaskSpec, text: str) -> bool:
    head = text.split("\nResult:", 1)[0]  # a context task's shot: the call comes first
    try:
        name, _ = parse_call(head.strip())
    except ToolError:
        return False
    return name in uses(task)
