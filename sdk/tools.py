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
(:mod:`tinyllm.argschema`) first, the function runs with a time limit, in a thread
(cancelled when its time runs out) or a worker process (killed), and any exception becomes
a :class:`ToolError` with the reason. No model output is ever evaluated as code.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
        isolation: where the function runs. ``thread``: a thread of this process; past
            its time limit an exception is raised in it, which stops Python code, but a
            call blocked in C code runs on until that returns (and the tool takes no
            calls meanwhile). ``process``: a worker process, killed past the time limit,
            so nothing outlives the call; the function must be picklable (defined at a
            module's top level), and a call costs a round trip (about a millisecond).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., str]
    from_text: Callable[[str], dict[str, Any]] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    setup: Callable[[], Any] | None = None
    isolation: Literal["thread", "process"] = "thread"

    def __post_init__(self) -> None:
        where = f"tool {self.name!r}"
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"{where}: the name must be letters, digits or '_'")
        check_schema(self.parameters, where)
        if not 0 < self.timeout_s <= 60:
            raise ConfigError(f"{where}: timeout_s must be in (0, 60], got {self.timeout_s}")
        if self.isolation not in ("thread", "process"):
            raise ConfigError(f"{where}: isolation must be 'thread' or 'process'")
        if self.isolation == "process":
            try:
                pickle.dumps(self.function)
            except Exception as e:
                raise ConfigError(
                    f"{where}: isolation='process' needs a function a worker process can "
                    f"import (defined at a module's top level, not a lambda or closure): {e}"
                ) from e

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


def call_tool(tool: Tool, arguments: Any, timeout_s: float | None = None) -> str:
    """Run ``tool`` on ``arguments`` safely: schema first, then the function with a time limit.

    Args:
        tool: the tool.
        arguments: the call's arguments (checked against ``tool.parameters``).
        timeout_s: a shorter time limit than the tool's own (a request's deadline).

    Returns:
        The result text (at most :data:`MAX_RESULT_CHARS` characters).

    Raises:
        ToolError: the arguments break the schema, the tool raised, returned something
            other than text, or did not finish in time (it is then cancelled; see
            :attr:`Tool.isolation`), or an earlier call of this tool is still stuck.
    """
    error = validation_error(tool.parameters, arguments)
    if error:
        raise ToolError(f"tool {tool.name}: bad arguments: {error}")
    _set_up(tool)
    limit = tool.timeout_s if timeout_s is None else max(0.0, min(timeout_s, tool.timeout_s))
    if tool.isolation == "process":
        outcome = _WORKERS.run(tool, arguments, limit)
    else:
        outcome = _run_in_thread(tool, arguments, limit)
    if "error" in outcome:
        raise ToolError(f"tool {tool.name}: {outcome['error']}"[:500])
    result = outcome.get("result")
    if not isinstance(result, str):
        raise ToolError(f"tool {tool.name}: returned {type(result).__name__}, not text")
    if len(result) > MAX_RESULT_CHARS:
        raise ToolError(
            f"tool {tool.name}: the result has {len(result)} characters (max {MAX_RESULT_CHARS})"
        )
    return result


class ToolCancelledError(BaseException):
    """Raised inside a tool's thread when its call ran out of time (not for callers)."""


# Threads of calls that ran out of time and did not stop when cancelled, by tool name.
_STUCK: dict[str, list[threading.Thread]] = {}
_STUCK_LOCK = threading.Lock()
CANCEL_GRACE_S = 1.0


def stuck_calls() -> dict[str, int]:
    """Tools with calls still running past their time limit, and how many (at most one
    each: a tool with a stuck call refuses new calls until it ends)."""
    with _STUCK_LOCK:
        for name in list(_STUCK):
            _STUCK[name] = [t for t in _STUCK[name] if t.is_alive()]
            if not _STUCK[name]:
                del _STUCK[name]
        return {name: len(threads) for name, threads in _STUCK.items()}


def _failure(e: BaseException) -> str:
    return str(e) if isinstance(e, TinyLLMError) else f"{type(e).__name__}: {e}"


def _run_in_thread(tool: Tool, arguments: dict[str, Any], limit: float) -> dict[str, Any]:
    """The call in a thread; past ``limit`` it is cancelled (an exception raised in it)."""
    if tool.name in stuck_calls():
        return {
            "error": "an earlier call ran out of time and is still running (stuck outside "
            "Python code, where it cannot be cancelled); the tool takes no calls until it "
            "ends: bound its work, or make it with isolation='process'"
        }
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = tool.function(**arguments)
        except ToolCancelledError:
            box["error"] = "cancelled"
        except BaseException as e:  # any failure of user code is the call's failure
            box["error"] = _failure(e)

    thread = threading.Thread(target=work, name=f"tinyllm-tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(limit)
    if not thread.is_alive():
        return box
    # Python cannot kill a thread, but it can raise in it at its next bytecode: a tool
    # busy in Python code stops; one blocked in C code stops when the C call returns.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident or 0), ctypes.py_object(ToolCancelledError)
    )
    thread.join(CANCEL_GRACE_S)
    if thread.is_alive():
        with _STUCK_LOCK:
            _STUCK.setdefault(tool.name, []).append(thread)
    return {"error": f"no result within {limit:g} s (cancelled)"}


class _Workers:
    """Worker processes of ``isolation='process'`` tools: one call at a time each, idle
    ones reused, one that runs out of time killed (with everything it started)."""

    def __init__(self) -> None:
        self.idle: dict[str, list[tuple[Any, Any]]] = {}
        self.lock = threading.Lock()

    def run(self, tool: Tool, arguments: dict[str, Any], limit: float) -> dict[str, Any]:
        proc, conn = self._take(tool)
        conn.send(arguments)
        if conn.poll(limit):
            try:
                kind, value = conn.recv()
            except (EOFError, OSError):
                kind, value = "error", f"its worker process died (exit code {proc.exitcode})"
            if proc.is_alive():
                with self.lock:
                    self.idle.setdefault(tool.name, []).append((proc, conn))
            return {kind: value}
        proc.kill()
        proc.join()
        conn.close()
        return {"error": f"no result within {limit:g} s (its worker process was killed)"}

    def _take(self, tool: Tool) -> tuple[Any, Any]:
        with self.lock:
            pool = self.idle.get(tool.name, [])
            while pool:
                proc, conn = pool.pop()
                if proc.is_alive():
                    return proc, conn
        import multiprocessing

        # spawn, not fork: forking a process that runs threads (the decode loop, the
        # tool runner) can copy a held lock into the child
        context = multiprocessing.get_context("spawn")
        conn, child = context.Pipe()
        proc = context.Process(
            target=_serve, args=(child, tool.function), name=f"tinyllm-tool-{tool.name}"
        )
        proc.daemon = True
        proc.start()
        child.close()
        if not conn.poll(60.0):  # the start-up (imports) is untimed, like Tool.setup
            proc.kill()
            raise ToolError(f"tool {tool.name}: its worker process did not start in 60 s")
        conn.recv()
        return proc, conn

    def close(self) -> None:
        """Stop every idle worker process."""
        with self.lock:
            pools, self.idle = self.idle, {}
        for pool in pools.values():
            for proc, conn in pool:
                proc.kill()
                proc.join()
                conn.close()


def _serve(conn: Any, function: Callable[..., str]) -> None:
    """A worker process's loop: run ``function`` on each arguments sent, send back."""
    conn.send("ready")
    while True:
        try:
            arguments = conn.recv()
        except EOFError:
            return
        try:
            reply = ("result", function(**arguments))
        except BaseException as e:
            reply = ("error", _failure(e))
        try:
            conn.send(reply)
        except Exception as e:  # an unpicklable result
            conn.send(("error", f"its result cannot be sent back: {e}"))


_WORKERS = _Workers()
atexit.register(_WORKERS.close)


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
