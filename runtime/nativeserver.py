"""The libtinyllm server through ctypes (``tinyllm_server_*``): thread-safe task requests
on one native engine, answered by its scheduler thread, for tests and tools that compare
it with the Python runtime's serving loop."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinyllm.runtime.native import NativeEngine, NativeError, check
from tinyllm.runtime.nativetasks import (
    NativeTaskOutput,
    NativeTasks,
    _TaskOptions,
    _TaskRequest,
    _ToolCall,
)
from tinyllm.runtime.nativetasks import _TaskResult as TaskResult

_P = ctypes.c_void_p


class _ServerOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("queue_size", ctypes.c_int32),
        ("prefix_cache_mb", ctypes.c_double),
        ("max_tasks_per_step", ctypes.c_int32),
        ("chunk_size", ctypes.c_int32),
        ("prefill_tokens", ctypes.c_int32),
        ("length_ratio", ctypes.c_double),
        ("aging", ctypes.c_double),
        ("prompt_weight", ctypes.c_double),
        ("fifo", ctypes.c_int32),
    ]


# int (*)(void* user, const char* piece, size_t len): 0 goes on, nonzero cancels.
_TEXT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


_STATS = [
    "submitted",
    "completed",
    "cancelled",
    "failed",
    "rejected",
    "invalid",
    "queue_depth",
    "running",
    "kv_cache_bytes",
    "prefix_entries",
    "prefix_bytes",
    "prefix_max_bytes",
    "prefix_hits",
    "prefix_misses",
    "prefix_tokens_saved",
]


class _ServerStats(ctypes.Structure):
    _fields_ = (
        [(name, ctypes.c_uint64) for name in _STATS[:6]]
        + [(name, ctypes.c_size_t) for name in _STATS[6:12]]
        + [(name, ctypes.c_uint64) for name in _STATS[12:]]
    )


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "tinyllm_server_options_init": (None, [ctypes.POINTER(_ServerOptions)]),
    "tinyllm_server_start": (
        ctypes.c_int,
        [_P, ctypes.POINTER(_ServerOptions), ctypes.POINTER(_P)],
    ),
    "tinyllm_server_submit": (
        ctypes.c_int,
        [_P, ctypes.POINTER(_TaskRequest), ctypes.POINTER(_TaskOptions), ctypes.POINTER(_P)],
    ),
    "tinyllm_server_submit_stream": (
        ctypes.c_int,
        [
            _P,
            ctypes.POINTER(_TaskRequest),
            ctypes.POINTER(_TaskOptions),
            _TEXT_FN,
            _P,
            ctypes.POINTER(_P),
        ],
    ),
    "tinyllm_request_wait": (ctypes.c_int, [_P, ctypes.POINTER(TaskResult)]),
    "tinyllm_request_done": (ctypes.c_int, [_P]),
    "tinyllm_request_admitted": (ctypes.c_double, [_P]),
    "tinyllm_request_cancel": (None, [_P]),
    "tinyllm_request_free": (None, [_P]),
    "tinyllm_server_close": (ctypes.c_int, [_P, ctypes.c_int]),
    "tinyllm_server_free": (None, [_P]),
    "tinyllm_server_get_stats": (ctypes.c_int, [_P, ctypes.POINTER(_ServerStats)]),
}


@dataclass
class NativeRequest:
    """A submitted request: ``wait()`` gives its answer or raises its NativeError."""

    server: NativeServer
    handle: Any
    is_json: bool
    on_text: Any = None  # the ctypes callback, kept alive as long as the request
    raw_call: bool = False  # submitted with execute_tools False

    def wait(self) -> NativeTaskOutput:
        """Block until answered (the GIL is released while waiting)."""
        r = TaskResult()
        lib = self.server.lib
        check(lib, lib.tinyllm_request_wait(self.handle, ctypes.byref(r)))
        raw = _ToolCall()
        call = self.server.tasks.tool_call(
            lib.tinyllm_request_get_tool_call(self.handle, ctypes.byref(raw)), raw
        )
        return self.server.tasks.output_of(r, self.is_json, call, self.raw_call)

    def done(self) -> bool:
        """Whether the request is answered."""
        return bool(self.server.lib.tinyllm_request_done(self.handle))

    def admitted(self) -> float | None:
        """When its first prefill run started (trace-clock seconds, see
        :mod:`tinyllm.runtime.nativetrace`); None while it waits for a KV row."""
        at = float(self.server.lib.tinyllm_request_admitted(self.handle))
        return at if at >= 0 else None

    def cancel(self) -> None:
        """Ask the server to drop the request."""
        self.server.lib.tinyllm_request_cancel(self.handle)

    def __del__(self) -> None:
        if self.handle:
            self.server.lib.tinyllm_request_free(self.handle)
            self.handle = None


class NativeServer:
    """A libtinyllm server on a native engine (close it before the engine)."""

    def __init__(
        self,
        engine: NativeEngine,
        queue_size: int = 64,
        prefix_cache_mb: float = 64.0,
        **scheduler: Any,
    ):
        """``scheduler``: the tinyllm_server_options scheduler fields (max_tasks_per_step,
        chunk_size, prefill_tokens, length_ratio, aging, prompt_weight, fifo)."""
        self.engine = engine
        self.tasks = NativeTasks(engine)
        self.lib = engine.lib
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        options = _ServerOptions()
        self.lib.tinyllm_server_options_init(ctypes.byref(options))
        options.queue_size, options.prefix_cache_mb = queue_size, prefix_cache_mb
        for name, value in scheduler.items():
            if name not in {f[0] for f in _ServerOptions._fields_[3:]}:
                raise TypeError(f"unknown scheduler option {name!r}")
            setattr(options, name, value)
        raw = _P()
        check(self.lib, self.lib.tinyllm_server_start(engine.handle, ctypes.byref(options), raw))
        self.handle: Any = raw

    def submit(
        self,
        task: str,
        text: str,
        max_new_tokens: int = 0,
        deadline_s: float = 0.0,
        on_text: Callable[[str], bool] | None = None,
        execute_tools: bool = True,
    ) -> NativeRequest:
        """Queue one request (a bad one raises NativeError at once). ``on_text`` gets each
        new piece of the answer on the server's thread; returning False cancels.
        ``execute_tools`` False: a task with tools answers with its call, not run."""
        data = text.encode("utf-8")
        request = _TaskRequest(task.encode(), data, len(data))
        options = _TaskOptions()
        self.lib.tinyllm_task_options_init(ctypes.byref(options))
        options.max_new_tokens, options.deadline_s = max_new_tokens, deadline_s
        options.raw_tool_calls = int(not execute_tools)
        raw = _P()
        callback = None
        if on_text is None:
            status = self.lib.tinyllm_server_submit(
                self.handle, ctypes.byref(request), ctypes.byref(options), raw
            )
        else:
            sink = on_text

            def forward(_user: Any, piece: int, n: int) -> int:
                return 0 if sink(ctypes.string_at(piece, n).decode("utf-8")) else 1

            callback = _TEXT_FN(forward)
            status = self.lib.tinyllm_server_submit_stream(
                self.handle, ctypes.byref(request), ctypes.byref(options), callback, None, raw
            )
        check(self.lib, status)
        kind = self.lib.tinyllm_engine_task_kind(self.engine.handle, task.encode())
        return NativeRequest(self, raw, kind == b"json", callback, not execute_tools)

    def stats(self) -> dict[str, int]:
        """Request counts, rows running, KV and prefix cache memory (plain data)."""
        s = _ServerStats()
        check(self.lib, self.lib.tinyllm_server_get_stats(self.handle, ctypes.byref(s)))
        return {name: int(getattr(s, name)) for name in _STATS}

    def shutdown(self, drain: bool = True) -> None:
        """Stop accepting requests; finish (``drain``) or fail those in flight; wait."""
        check(self.lib, self.lib.tinyllm_server_close(self.handle, int(drain)))

    def close(self, drain: bool = True) -> None:
        """Shut down, then free the server."""
        if self.handle:
            self.shutdown(drain)
            self.lib.tinyllm_server_free(self.handle)
        self.handle = None


__all__ = ["NativeError", "NativeRequest", "NativeServer"]
