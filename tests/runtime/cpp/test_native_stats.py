"""libtinyllm's own timers through ctypes: the engine's stats (graph runs and their time
inside ONNX Runtime) agree with its run trace, and a server's loop stats count its steps
and decode rows and hold its runs; bad calls are errors, not crashes."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from tinyllm.runtime.native import NativeEngine, NativeError
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetrace import RunTracer, _LoopStats, loop_stats
from tinyllm.runtime.sampling import GenerationConfig


def test_engine_stats_count_the_runs_the_trace_sees(lib: ctypes.CDLL, served: Path) -> None:
    engine = NativeEngine(lib, served, max_batch=2, threads=1)
    tracer = RunTracer(engine)
    before = engine.stats()
    assert before.runs == 0 and before.ort_seconds == 0
    tracer.start()
    engine.generate([[5, 6, 7], [8, 9], [10]], GenerationConfig(max_new_tokens=4, ignore_eos=True))
    runs, dropped = tracer.take()
    tracer.stop()
    s = engine.stats().since(before)
    engine.close()
    # Two chunks (2 rows, then 1): a prefill each and 3 decode steps each.
    assert (s.prefill_calls, s.decode_steps, s.prompt_tokens) == (2, 6, 6)
    assert s.generated_tokens == 12 and s.runs == len(runs) == 8 and dropped == 0
    traced = sum(r.seconds for r in runs)
    assert 0 < s.ort_seconds <= traced <= s.ort_seconds * 1.01 + 1e-4
    prefill = sum(r.seconds for r in runs if r.kind == "prefill")
    assert s.prefill_seconds == pytest.approx(prefill, rel=0.05, abs=1e-4)
    # generate_seconds holds the runs and the work around them.
    assert s.generate_seconds > s.ort_seconds


def test_loop_stats_count_the_servers_steps(lib: ctypes.CDLL, served: Path) -> None:
    engine = NativeEngine(lib, served, max_batch=2, threads=1)
    server = NativeServer(engine)
    try:
        assert loop_stats(server).steps == 0
        before_engine = engine.stats()
        requests = [server.submit("rewrite", t, max_new_tokens=5) for t in ("a b", "c", "d e f")]
        tokens = sum(len(r.wait().token_ids) for r in requests)
        loop, ran = loop_stats(server), engine.stats().since(before_engine)
        # Every step ran the engine here (nothing waited without a row to take): at most
        # one decode run a step, and a prefill for each request.
        assert ran.prefill_calls >= 2 and ran.decode_steps == loop.decode_steps
        assert ran.decode_steps <= loop.steps <= ran.runs and tokens > 0
        assert 0 < ran.ort_seconds < loop.busy_seconds
        # Each decode run computed at least the one row that took a token.
        assert loop.decode_rows - loop.decode_placeholder_rows >= loop.decode_steps > 0
        refused = r"INVALID_ARGUMENT: stats\.struct_size is 8; this library.s tinyllm_loop_stats"
        with pytest.raises(NativeError, match=refused):
            loop_stats(server, struct_size=8)
        # A caller built with the trace.h before the decode rows gets the fields it has,
        # and nothing is written past its struct.
        earlier = loop_stats(server, struct_size=_LoopStats.decode_rows.offset)
        assert (earlier.steps, earlier.decode_steps) == (loop.steps, loop.decode_steps)
        assert earlier.decode_rows == 0 < loop.decode_rows
    finally:
        server.close()
        engine.close()
    raw = ctypes.CDLL(lib._name)  # undeclared calls, to pass NULL handles
    raw.tinyllm_last_error.restype = ctypes.c_char_p
    for call in ("tinyllm_server_get_loop_stats", "tinyllm_engine_get_stats"):
        assert getattr(raw, call)(None, None) != 0
        assert b"is NULL" in raw.tinyllm_last_error(), call
