"""Task requests through libtinyllm (``tinyllm_run_tasks``): the C++ runtime serving a
bundle's tasks from its engine's task table, for tests and tools that compare it with
the Python runtime (:mod:`tinyllm.runtime.native` holds the engine binding). Tasks with
tools call C callbacks: :meth:`NativeTasks.register_tool` registers a Python
:class:`~tinyllm.tools.Tool`'s function as one (through ctypes)."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tinyllm.errors import TinyLLMError
from tinyllm.runtime.native import FINISH_REASONS, NativeEngine, check
from tinyllm.tools import Tool, ToolCall

_P = ctypes.c_void_p


class _TaskOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("max_new_tokens", ctypes.c_int32),
        ("temperature", ctypes.c_double),
        ("has_seed", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("constrain", ctypes.c_int32),
        ("deadline_s", ctypes.c_double),
        ("raw_tool_calls", ctypes.c_int32),
    ]


class _TaskRequest(ctypes.Structure):
    _fields_ = [("task", ctypes.c_char_p), ("text", ctypes.c_char_p), ("text_len", ctypes.c_size_t)]


class _TaskResult(ctypes.Structure):
    _fields_ = [
        ("text", ctypes.POINTER(ctypes.c_char)),
        ("text_len", ctypes.c_size_t),
        ("value", ctypes.POINTER(ctypes.c_char)),
        ("value_len", ctypes.c_size_t),
        ("valid", ctypes.c_int32),
        ("reason", ctypes.c_char_p),
        ("token_ids", ctypes.POINTER(ctypes.c_int32)),
        ("n_tokens", ctypes.c_size_t),
        ("prompt_tokens", ctypes.c_size_t),
        ("finish_reason", ctypes.c_int),
    ]


class _ToolCall(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.POINTER(ctypes.c_char)),
        ("name_len", ctypes.c_size_t),
        ("arguments", ctypes.POINTER(ctypes.c_char)),
        ("arguments_len", ctypes.c_size_t),
        ("ok", ctypes.c_int32),
        ("result", ctypes.POINTER(ctypes.c_char)),
        ("result_len", ctypes.c_size_t),
        ("error", ctypes.POINTER(ctypes.c_char)),
        ("error_len", ctypes.c_size_t),
        ("seconds", ctypes.c_double),
    ]


_SPECULATION = ("label_forwarded", "forced_steps", "forced_drafted", "forced_accepted")


class _SpeculationStats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t)] + [(k, ctypes.c_uint64) for k in _SPECULATION]


# int (*)(void* user, const char* arguments, size_t len, tinyllm_tool_reply* reply)
TOOL_FN = ctypes.CFUNCTYPE(ctypes.c_int, _P, ctypes.c_void_p, ctypes.c_size_t, _P)

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "tinyllm_engine_task_count": (ctypes.c_size_t, [_P]),
    "tinyllm_engine_task_name": (ctypes.c_char_p, [_P, ctypes.c_size_t]),
    "tinyllm_engine_task_kind": (ctypes.c_char_p, [_P, ctypes.c_char_p]),
    "tinyllm_task_prompt": (
        ctypes.c_int,
        [
            _P,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(_P),
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ],
    ),
    "tinyllm_task_options_init": (None, [ctypes.POINTER(_TaskOptions)]),
    "tinyllm_run_tasks": (
        ctypes.c_int,
        [_P, ctypes.POINTER(_TaskRequest), ctypes.c_size_t, ctypes.POINTER(_TaskOptions), _P],
    ),
    "tinyllm_task_results_count": (ctypes.c_size_t, [_P]),
    "tinyllm_task_results_get": (
        ctypes.c_int,
        [_P, ctypes.c_size_t, ctypes.POINTER(_TaskResult)],
    ),
    "tinyllm_task_results_free": (None, [_P]),
    "tinyllm_task_results_get_tool_call": (
        ctypes.c_int,
        [_P, ctypes.c_size_t, ctypes.POINTER(_ToolCall)],
    ),
    "tinyllm_request_get_tool_call": (ctypes.c_int, [_P, ctypes.POINTER(_ToolCall)]),
    "tinyllm_tool_reply_set": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_size_t]),
    "tinyllm_engine_register_tool": (ctypes.c_int, [_P, ctypes.c_char_p, TOOL_FN, _P]),
    "tinyllm_speculation_stats_init": (None, [ctypes.POINTER(_SpeculationStats)]),
    "tinyllm_engine_get_speculation_stats": (
        ctypes.c_int,
        [_P, ctypes.POINTER(_SpeculationStats)],
    ),
}
NOT_FOUND = 10  # TINYLLM_NOT_FOUND: a result of a task without tools has no call


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the task functions' signatures on ``lib`` (idempotent)."""
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


@dataclass(frozen=True)
class NativeTaskOutput:
    """One task request's answer from libtinyllm (as the Python router's TaskOutput):
    ``value`` is the label, the parsed JSON or the answer line when ``valid``, else None."""

    text: str
    value: Any
    valid: bool
    error: str | None
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str
    tool_call: ToolCall | None = None


class NativeTasks:
    """The tasks a native engine serves."""

    def __init__(self, engine: NativeEngine) -> None:
        self.engine = engine
        self.lib = bind(engine.lib)

    def register_tool(self, tool: Tool) -> None:
        """Register ``tool``'s function as the engine's C callback of that name: called
        with the arguments as keywords; an exception or a non-text result fails the call
        with its reason (as :func:`tinyllm.tools.call_tool` words it)."""
        self.register_callback(tool.name, _as_callback(tool.function))

    def register_callback(self, name: str, fn: Callable[[str], tuple[bool, str]]) -> None:
        """Register ``fn`` (arguments JSON text -> (ok, result or reason)) as tool ``name``."""

        def call(_user: Any, arguments: int, n: int, reply: int) -> int:
            try:
                ok, text = fn(ctypes.string_at(arguments, n).decode("utf-8"))
            except BaseException as e:  # nothing may unwind into C
                ok, text = False, f"{type(e).__name__}: {e}"
            data = text.encode("utf-8", "replace")
            self.lib.tinyllm_tool_reply_set(reply, data, len(data))
            return 0 if ok else 1

        callback = TOOL_FN(call)
        check(
            self.lib,
            self.lib.tinyllm_engine_register_tool(
                self.engine.handle, name.encode(), callback, None
            ),
        )
        self.engine.keep[name] = callback  # alive as long as the engine that calls it

    def tool_call(self, status: int, raw: _ToolCall) -> ToolCall | None:
        """The Python view of a filled tinyllm_tool_call (None: the task has no tools)."""
        if status == NOT_FOUND:
            return None
        check(self.lib, status)

        def text(field: str) -> str:
            return ctypes.string_at(getattr(raw, field), getattr(raw, field + "_len")).decode()

        arguments = text("arguments")
        return ToolCall(
            text("name"),
            json.loads(arguments) if arguments else None,
            text("result") if raw.ok else None,
            None if raw.ok else text("error"),
            float(raw.seconds),
        )

    def speculation(self, struct_size: int | None = None) -> dict[str, int]:
        """The engine's tokens written without a model run of their own, named as the
        Python engine's ``stats()["speculation"]`` (``struct_size`` overrides the size the
        struct says it has: tests of a caller built against another tinyllm.h)."""
        raw = _SpeculationStats()
        self.lib.tinyllm_speculation_stats_init(ctypes.byref(raw))
        if struct_size is not None:
            raw.struct_size = struct_size
        status = self.lib.tinyllm_engine_get_speculation_stats(
            self.engine.handle, ctypes.byref(raw)
        )
        check(self.lib, status)
        return {k: int(getattr(raw, k)) for k in _SPECULATION}

    def names(self) -> list[str]:
        """The tasks of the engine's task table, by name."""
        count = self.lib.tinyllm_engine_task_count(self.engine.handle)
        return [
            self.lib.tinyllm_engine_task_name(self.engine.handle, i).decode() for i in range(count)
        ]

    def prompt(self, task: str, text: str) -> tuple[list[int], int]:
        """(prompt token ids, length of the task's fixed prefix in them) of one input."""
        data = text.encode("utf-8")
        ids, n, prefix = _P(), ctypes.c_size_t(), ctypes.c_size_t()
        status = self.lib.tinyllm_task_prompt(
            self.engine.handle, task.encode(), data, len(data), ids, n, prefix
        )
        check(self.lib, status)
        try:
            return list(ctypes.cast(ids, ctypes.POINTER(ctypes.c_int32))[: n.value]), prefix.value
        finally:
            self.lib.tinyllm_free(ids)

    def run(
        self,
        requests: Sequence[tuple[str, str]],
        max_new_tokens: int = 0,
        constrain: bool = True,
        execute_tools: bool = True,
    ) -> list[NativeTaskOutput]:
        """Answer (task, text) requests together (batched as the engine batches);
        ``execute_tools`` False: a task with tools answers with its call, not run
        (``value`` ``{"name", "arguments"}``, as the Python engine's)."""
        raw = (_TaskRequest * len(requests))()
        keep = []
        for i, (task, text) in enumerate(requests):
            data = text.encode("utf-8")
            keep.append(data)
            raw[i].task, raw[i].text, raw[i].text_len = task.encode(), data, len(data)
        options = _TaskOptions()
        self.lib.tinyllm_task_options_init(ctypes.byref(options))
        options.max_new_tokens, options.constrain = max_new_tokens, int(constrain)
        options.raw_tool_calls = int(not execute_tools)
        results = _P()
        status = self.lib.tinyllm_run_tasks(
            self.engine.handle, raw, len(requests), ctypes.byref(options), ctypes.byref(results)
        )
        check(self.lib, status)
        try:
            kinds = [
                self.lib.tinyllm_engine_task_kind(self.engine.handle, t.encode())
                for t, _ in requests
            ]
            return [
                self._output(results, i, kinds[i] == b"json", not execute_tools)
                for i in range(len(requests))
            ]
        finally:
            self.lib.tinyllm_task_results_free(results)

    def _output(self, results: Any, i: int, is_json: bool, raw_call: bool) -> NativeTaskOutput:
        r = _TaskResult()
        check(self.lib, self.lib.tinyllm_task_results_get(results, i, ctypes.byref(r)))
        raw = _ToolCall()
        status = self.lib.tinyllm_task_results_get_tool_call(results, i, ctypes.byref(raw))
        return self.output_of(r, is_json, self.tool_call(status, raw), raw_call)

    def output_of(
        self,
        r: _TaskResult,
        is_json: bool,
        tool_call: ToolCall | None = None,
        raw_call: bool = False,
    ) -> NativeTaskOutput:
        """The Python view of a filled tinyllm_task_result (``raw_call``: the request
        asked for tool calls unexecuted, whose value is the call as JSON)."""
        value: Any = ctypes.string_at(r.value, r.value_len).decode("utf-8")
        if r.valid and (is_json or (raw_call and tool_call is not None)):
            value = json.loads(value)
        return NativeTaskOutput(
            text=ctypes.string_at(r.text, r.text_len).decode("utf-8"),
            value=value if r.valid else None,
            valid=bool(r.valid),
            error=None if r.valid else r.reason.decode("utf-8", "replace"),
            token_ids=tuple(r.token_ids[: r.n_tokens]),
            prompt_tokens=int(r.prompt_tokens),
            finish_reason=FINISH_REASONS[r.finish_reason],
            tool_call=tool_call,
        )


def _as_callback(function: Callable[..., Any]) -> Callable[[str], tuple[bool, str]]:
    """A tool function as a callback over the arguments' JSON text."""

    def call(arguments: str) -> tuple[bool, str]:
        try:
            result = function(**json.loads(arguments))
        except TinyLLMError as e:
            return False, str(e)
        except Exception as e:
            return False, f"{type(e).__name__}: {e}"
        if not isinstance(result, str):
            return False, f"returned {type(result).__name__}, not text"
        return True, result

    return call
