"""libtinyllm's run trace through ctypes (``tinyllm/trace.h``): when each ONNX Runtime
run of a native engine started and ended, how many rows and tokens it computed; and a
server loop's own step timer (:func:`loop_stats`). The C++ runtime's profiler
(:mod:`tinyllm.runtime.nativepass`, :mod:`tinyllm.runtime.profilenative`) build
its figures from them."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from tinyllm.runtime.native import NativeEngine, check
from tinyllm.runtime.nativeserver import NativeServer

_P = ctypes.c_void_p


class _RunRecord(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int32),
        ("first_row", ctypes.c_int32),
        ("rows", ctypes.c_int32),
        ("tokens", ctypes.c_int32),
        ("past", ctypes.c_int64),
        ("start", ctypes.c_double),
        ("end", ctypes.c_double),
    ]


class _LoopStats(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("steps", ctypes.c_uint64),
        ("decode_steps", ctypes.c_uint64),
        ("busy_seconds", ctypes.c_double),
        ("decode_rows", ctypes.c_uint64),
        ("decode_placeholder_rows", ctypes.c_uint64),
    ]


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "tinyllm_loop_stats_init": (None, [ctypes.POINTER(_LoopStats)]),
    "tinyllm_server_get_loop_stats": (ctypes.c_int, [_P, ctypes.POINTER(_LoopStats)]),
    "tinyllm_trace_clock": (ctypes.c_double, []),
    "tinyllm_engine_trace": (ctypes.c_int, [_P, ctypes.c_int]),
    "tinyllm_engine_trace_take": (
        ctypes.c_int,
        [
            _P,
            ctypes.POINTER(ctypes.POINTER(_RunRecord)),
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_size_t),
        ],
    ),
}
KINDS = ("prefill", "decode")


@dataclass(frozen=True)
class Run:
    """One ONNX Runtime run of the engine (seconds on the trace clock).

    ``tokens`` is the prompt tokens fed (prefill) or the rows (decode); ``past`` the
    tokens the first row already held before a prefill (a cached prefix).
    """

    kind: str
    first_row: int
    rows: int
    tokens: int
    past: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """The run's wall time."""
        return self.end - self.start


@dataclass(frozen=True)
class LoopStats:
    """A native server loop's step timer (``tinyllm_loop_stats``): steps since the server
    started, those that ran a decode run, and the steps' wall time (ONNX Runtime's runs
    included, the loop's waits for work not); the rows the decode runs computed and those
    of them that took no token (placeholders inside a run)."""

    steps: int
    decode_steps: int
    busy_seconds: float
    decode_rows: int = 0
    decode_placeholder_rows: int = 0

    def since(self, before: LoopStats) -> LoopStats:
        """The steps, time and rows from ``before`` (an earlier reading) to this one."""
        return LoopStats(
            self.steps - before.steps,
            self.decode_steps - before.decode_steps,
            self.busy_seconds - before.busy_seconds,
            self.decode_rows - before.decode_rows,
            self.decode_placeholder_rows - before.decode_placeholder_rows,
        )


def loop_stats(server: NativeServer, struct_size: int | None = None) -> LoopStats:
    """The server loop's counters. ``struct_size`` overrides the size the struct says it
    has (tests: a caller built against another trace.h is refused, or given the fields
    of an earlier one)."""
    lib = server.lib
    _declare(lib)
    raw = _LoopStats()
    lib.tinyllm_loop_stats_init(ctypes.byref(raw))
    if struct_size is not None:
        raw.struct_size = struct_size
    check(lib, lib.tinyllm_server_get_loop_stats(server.handle, ctypes.byref(raw)))
    return LoopStats(
        int(raw.steps),
        int(raw.decode_steps),
        float(raw.busy_seconds),
        int(raw.decode_rows),
        int(raw.decode_placeholder_rows),
    )


def _declare(lib: ctypes.CDLL) -> None:
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


class RunTracer:
    """The run trace of one native engine: ``start``, drive it, ``take`` the runs."""

    def __init__(self, engine: NativeEngine) -> None:
        self.engine = engine
        self.lib = engine.lib
        _declare(self.lib)

    def clock(self) -> float:
        """Now, on the trace's clock (seconds)."""
        return float(self.lib.tinyllm_trace_clock())

    def start(self) -> None:
        """Start tracing (runs kept so far are dropped)."""
        check(self.lib, self.lib.tinyllm_engine_trace(self.engine.handle, 1))

    def stop(self) -> None:
        """Stop tracing (runs kept so far can still be taken)."""
        check(self.lib, self.lib.tinyllm_engine_trace(self.engine.handle, 0))

    def take(self) -> tuple[list[Run], int]:
        """The runs kept so far, in run order, and how many were dropped (over the cap)."""
        records = ctypes.POINTER(_RunRecord)()
        n, dropped = ctypes.c_size_t(), ctypes.c_size_t()
        status = self.lib.tinyllm_engine_trace_take(
            self.engine.handle, ctypes.byref(records), ctypes.byref(n), ctypes.byref(dropped)
        )
        check(self.lib, status)
        try:
            runs = [
                Run(KINDS[r.kind], r.first_row, r.rows, r.tokens, r.past, r.start, r.end)
                for r in records[: n.value]
            ]
        finally:
            self.lib.tinyllm_free(records)
        return runs, int(dropped.value)
