"""Tools a task may call: a name, a JSON Schema for the arguments, a registered function.

A task names its tools in its spec (``tools: {names: [...], result: answer|context}``);
the functions live in a registry keyed by name (:mod:`tinyllm.toolbox`), filled with the
built-ins (``calculator``, ``date_parser``, ``booking_extractor``) and with whatever users
register::

    from tinyllm.toolbox import register_tool
    from tinyllm.tools import Tool

    register_tool(Tool(
        "shout", "upper-cases a text",
        {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        lambda text: text.upper(),
    ))

:func:`call_tool` is the one way a tool runs (the runtime, the teacher pipeline and the
distillation data all use it): the arguments are checked against the schema
(:mod:`tinyllm.argschema`) first, the function runs in a worker thread with a time limit,
and any exception becomes a :class:`ToolError` with the reason. No model output is ever
evaluated as code.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyllm.argschema import check_schema, validation_error
from tinyllm.errors import ConfigError, TinyLLMError

DEFAULT_TIMEOUT_S = 5.0
MAX_RESULT_CHARS = 4096


class ToolError(TinyLLMError):
    """A tool call failed: bad arguments, an exception in the tool, or its time ran out."""


@dataclass(frozen=True)
class Tool:
    """A named function with a JSON Schema for its arguments.

    Args:
        name: how tasks and model outputs name it (letters, digits, ``_``).
        description: one line for people and for LLMs that choose tools.
        parameters: JSON Schema of the arguments (the subset :mod:`tinyllm.argschema`
            supports: a flat object of strings, integers, numbers, booleans).
        function: called with the arguments as keywords; returns the result text.
        from_text: the arguments a request's text gives (how the teacher pipeline, which
            passes the request itself, calls the tool); None: the pipeline cannot use it.
        timeout_s: the call's time limit in seconds.
        setup: run once, untimed, before the first call (imports, tables).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., str]
    from_text: Callable[[str], dict[str, Any]] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    setup: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        where = f"tool {self.name!r}"
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"{where}: the name must be letters, digits or '_'")
        check_schema(self.parameters, where)
        if not 0 < self.timeout_s <= 60:
            raise ConfigError(f"{where}: timeout_s must be in (0, 60], got {self.timeout_s}")

    def openai(self) -> dict[str, Any]:
        """The tool as an OpenAI ``tools`` entry (``{"type": "function", ...}``)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def call_tool(tool: Tool, arguments: Any) -> str:
    """Run ``tool`` on ``arguments`` safely: schema first, then the function with a time limit.

    Returns:
        The result text (at most :data:`MAX_RESULT_CHARS` characters).

    Raises:
        ToolError: the arguments break the schema, the tool raised, returned something
            other than text, or did not finish within ``tool.timeout_s`` (its thread is
            then abandoned: a tool must bound its own work, as the built-ins do).
    """
    error = validation_error(tool.parameters, arguments)
    if error:
        raise ToolError(f"tool {tool.name}: bad arguments: {error}")
    _set_up(tool)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = tool.function(**arguments)
        except BaseException as e:  # any failure of user code is the call's failure
            box["error"] = e

    thread = threading.Thread(target=work, name=f"tinyllm-tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(tool.timeout_s)
    if thread.is_alive():
        raise ToolError(f"tool {tool.name}: no result within {tool.timeout_s:g} s")
    if "error" in box:
        e = box["error"]
        reason = str(e) if isinstance(e, TinyLLMError) else f"{type(e).__name__}: {e}"
        raise ToolError(f"tool {tool.name}: {reason}"[:500]) from e
    result = box.get("result")
    if not isinstance(result, str):
        raise ToolError(f"tool {tool.name}: returned {type(result).__name__}, not text")
    if len(result) > MAX_RESULT_CHARS:
        raise ToolError(
            f"tool {tool.name}: the result has {len(result)} characters (max {MAX_RESULT_CHARS})"
        )
    return result


_READY: set[int] = set()


def _set_up(tool: Tool) -> None:
    if tool.setup is None or id(tool) in _READY:
        return
    try:
        tool.setup()
    except TinyLLMError as e:
        raise ToolError(f"tool {tool.name}: {e}") from e
    _READY.add(id(tool))


@dataclass(frozen=True)
class ToolCall:
    """One executed call: what the model asked for and what came of it.

    ``result`` is the tool's text, or None with the reason in ``error``; ``seconds`` is
    the call's own time (argument check and tool run).
    """

    name: str
    arguments: Any
    result: str | None
    error: str | None
    seconds: float


def result_text(result: str) -> str:
    """What follows a call in the model's context when it writes the answer after the
    result (``tools.result: context``): training targets and serving use this one text."""
    return f"\nResult: {result}\n"


def parse_call(text: str) -> tuple[str, Any]:
    """(tool name, arguments) of a call written as ``{"name": ..., "arguments": {...}}``."""
    try:
        call = json.loads(text)
    except ValueError as e:
        raise ToolError(f"the tool call is not valid JSON ({e})") from e
    if not isinstance(call, dict) or set(call) != {"name", "arguments"}:
        raise ToolError('a tool call is {"name": ..., "arguments": {...}}')
    if not isinstance(call["name"], str):
        raise ToolError("a tool call's name must be a string")
    return call["name"], call["arguments"]


def format_call(tool: Tool, arguments: dict[str, Any]) -> str:
    """A call as the model writes it: ``{"name": ..., "arguments": {...}}`` with the
    arguments in the schema's property order (the order constrained decoding writes)."""
    order = [k for k in tool.parameters["properties"] if k in arguments]
    ordered = {k: arguments[k] for k in order}
    return json.dumps({"name": tool.name, "arguments": ordered}, ensure_ascii=False)
