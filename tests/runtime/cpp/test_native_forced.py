"""Forced text in one step in libtinyllm: a greedy tool call writes the text its
constraint forces in one verify run, as the Python engine does (runtime/speculative.py
Forcing): the calls are token for token those of one step a token, the forced drafts and
the runs are the Python engine's, and int4 engines keep it off."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from tinyllm.runtime import Engine
from tinyllm.runtime.native import NativeEngine, NativeError
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetasks import NativeTasks

INPUTS = ["What is 2 plus 3?", "hello", "Solve 2*x = 4 for x."]
TASKS = ("calc", "two", "free", "picky", "clock")  # enums, a name choice, a free string,
# two keys, a pattern (its ":" and closing quote forced)
REQUESTS = [(t, x) for t in TASKS for x in INPUTS]
FORCED = ("forced_steps", "forced_drafted", "forced_accepted")


def python_calls(bundle: Path, fast_forward: bool) -> tuple[list[tuple[int, ...]], dict]:
    """Python's raw calls, one request at a time, and its stats."""
    engine = Engine.load(bundle, max_batch=1, fast_forward=fast_forward)
    calls = [tuple(engine.run(t, x, execute_tools=False).token_ids) for t, x in REQUESTS]
    stats = engine.stats()
    engine.close()
    return calls, stats


def native_calls(lib: ctypes.CDLL, bundle: Path, **options: bool | None) -> tuple[list, dict, int]:
    """libtinyllm's raw calls (tinyllm_run_tasks, one at a time), its speculation stats
    and its graph runs."""
    native = NativeEngine(lib, bundle, max_batch=1, **options)  # type: ignore[arg-type]
    tasks = NativeTasks(native)
    calls = [tasks.run([r], execute_tools=False)[0].token_ids for r in REQUESTS]
    stats, runs = tasks.speculation(), native.stats().runs
    native.close()
    return calls, stats, runs


def test_forced_text_goes_in_one_run_with_the_calls_of_single_steps(
    lib: ctypes.CDLL, tool_bundle: Path
) -> None:
    reference, _ = python_calls(tool_bundle, fast_forward=False)
    fast, py_stats = python_calls(tool_bundle, fast_forward=True)
    assert fast == reference
    spec = py_stats["speculation"]
    assert spec["forced_steps"] > 0 and 0 < spec["forced_accepted"] <= spec["forced_drafted"]

    calls, stats, runs = native_calls(lib, tool_bundle)  # on by default: an fp32 engine
    assert calls == reference
    assert {k: stats[k] for k in FORCED} == {k: spec[k] for k in FORCED}  # the same drafts
    assert runs == py_stats["engine_runs"]  # prefills, decode and verify runs

    off, off_stats, off_runs = native_calls(lib, tool_bundle, fast_forward=False)
    assert off == reference and off_stats["forced_steps"] == 0
    # a verify run emits the tokens it kept and the pick after them (none when the call
    # ends on a kept one), each of which one step a token makes a run of its own
    saved = off_runs - runs
    assert stats["forced_accepted"] - stats["forced_steps"] <= saved <= stats["forced_accepted"]
    assert saved > 0


def test_forced_text_through_the_server_and_in_a_batch(lib: ctypes.CDLL, tool_bundle: Path) -> None:
    reference, _ = python_calls(tool_bundle, fast_forward=False)
    native = NativeEngine(lib, tool_bundle, max_batch=4)
    tasks = NativeTasks(native)
    server = NativeServer(native)
    try:
        served = [server.submit(t, x, execute_tools=False).wait() for t, x in REQUESTS]
    finally:
        server.close()
    assert [o.token_ids for o in served] == reference
    assert tasks.speculation()["forced_steps"] > 0
    # a batch: rows decode together, and the last one left drafts its forced text
    batched = tasks.run(REQUESTS, execute_tools=False)
    assert [o.token_ids for o in batched] == reference
    native.close()


def test_int4_engines_keep_it_off(lib: ctypes.CDLL, qwen2_engines: Path) -> None:
    with pytest.raises(NativeError) as e:
        NativeEngine(lib, qwen2_engines, engine="onnx-cpu-int4", fast_forward=True)
    assert e.value.status == "TINYLLM_UNSUPPORTED" and "fast_forward" in str(e.value)


def test_load_options_from_an_earlier_header_and_bad_values(
    lib: ctypes.CDLL, tool_bundle: Path
) -> None:
    """A struct_size ending before fast_forward loads (with its default); a size that is
    neither is refused, and so is a fast_forward out of range."""
    from tinyllm.runtime.native import _LoadOptions

    for size, value, status in (
        (_LoadOptions.fast_forward.offset, 7, "TINYLLM_OK"),  # 7 lies past the old struct
        (8, 0, "TINYLLM_INVALID_ARGUMENT"),
        (ctypes.sizeof(_LoadOptions), 2, "TINYLLM_INVALID_ARGUMENT"),
    ):
        options = _LoadOptions()
        lib.tinyllm_load_options_init(ctypes.byref(options))
        options.struct_size, options.fast_forward, options.max_batch = size, value, 1
        raw = ctypes.c_void_p()
        rc = lib.tinyllm_engine_load(str(tool_bundle).encode(), ctypes.byref(options), raw)
        assert lib.tinyllm_status_name(rc).decode() == status, lib.tinyllm_last_error()
        lib.tinyllm_engine_free(raw)
