"""Task requests through libtinyllm (``tinyllm_run_tasks``): the C++ runtime serving a
bundle's tasks from its engine's task table, for tests and tools that compare it with
the Python runtime (:mod:`tinyllm.runtime.native` holds the engine binding)."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tinyllm.runtime.native import FINISH_REASONS, NativeEngine, check

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
}


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


class NativeTasks:
    """The tasks a native engine serves."""

    def __init__(self, engine: NativeEngine) -> None:
        self.engine = engine
        self.lib = bind(engine.lib)

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
    ) -> list[NativeTaskOutput]:
        """Answer (task, text) requests together (batched as the engine batches)."""
        raw = (_TaskRequest * len(requests))()
        keep = []
        for i, (task, text) in enumerate(requests):
            data = text.encode("utf-8")
            keep.append(data)
            raw[i].task, raw[i].text, raw[i].text_len = task.encode(), data, len(data)
        options = _TaskOptions()
        self.lib.tinyllm_task_options_init(ctypes.byref(options))
        options.max_new_tokens, options.constrain = max_new_tokens, int(constrain)
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
            return [self._output(results, i, kinds[i] == b"json") for i in range(len(requests))]
        finally:
            self.lib.tinyllm_task_results_free(results)

    def _output(self, results: Any, i: int, is_json: bool) -> NativeTaskOutput:
        r = _TaskResult()
        check(self.lib, self.lib.tinyllm_task_results_get(results, i, ctypes.byref(r)))
        return self.output_of(r, is_json)

    def output_of(self, r: _TaskResult, is_json: bool) -> NativeTaskOutput:
        """The Python view of a filled tinyllm_task_result."""
        value: Any = ctypes.string_at(r.value, r.value_len).decode("utf-8")
        if r.valid and is_json:
            value = json.loads(value)
        return NativeTaskOutput(
            text=ctypes.string_at(r.text, r.text_len).decode("utf-8"),
            value=value if r.valid else None,
            valid=bool(r.valid),
            error=None if r.valid else r.reason.decode("utf-8", "replace"),
            token_ids=tuple(r.token_ids[: r.n_tokens]),
            prompt_tokens=int(r.prompt_tokens),
            finish_reason=FINISH_REASONS[r.finish_reason],
        )
