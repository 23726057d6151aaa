"""The libtinyllm server's scheduling (runtime/cpp/src/scheduler.cpp, the Python
runtime's policy): chunked and batched prefill and the fifo policy change no answer,
staggered prefills compute the Python loop's decode runs (no placeholder rows),
deadlines end requests with DEADLINE_EXCEEDED, streamed pieces add up to the answer and
a callback can cancel, and bad options (a short struct_size, a bad scheduler knob, a
negative deadline) are INVALID_ARGUMENT with a message."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest

from tinyllm.runtime import Engine
from tinyllm.runtime.native import NativeEngine, NativeError, check
from tinyllm.runtime.nativeserver import NativeRequest, NativeServer
from tinyllm.runtime.nativetasks import NativeTasks, _TaskOptions, _TaskRequest
from tinyllm.runtime.nativetrace import RunTracer, loop_stats

REQUESTS = [
    ("sentiment", "The room was spotless and the staff were lovely"),
    ("booking", "Book a table for four in Lisbon on 2024-05-03"),
    ("rewrite", "cheap flights rome"),
    ("sentiment", "I hated every minute of it"),
    ("booking", "Two guests, Paris, next Friday"),
    ("rewrite", "Absolutely wonderful service!"),
]


@pytest.fixture(scope="module")
def python_answers(served: Path) -> list[Any]:
    engine = Engine.load(served, max_batch=1)
    answers = [engine.run(t, x) for t, x in REQUESTS]
    engine.close()
    return answers


@pytest.fixture(scope="module")
def engine(lib: ctypes.CDLL, served: Path) -> Any:
    native = NativeEngine(lib, served, max_batch=4)
    yield native
    native.close()


def same(native: list[Any], python: list[Any]) -> None:
    assert [o.token_ids for o in native] == [tuple(o.token_ids) for o in python]
    assert [(o.text, o.valid, o.value) for o in native] == [
        (o.text, o.valid, o.value) for o in python
    ]


@pytest.mark.parametrize(
    "options",
    [
        # every prompt (about 40-90 tokens) prefilled in chunks of 8, two chunks a step
        {"chunk_size": 8, "prefill_tokens": 16},
        {"chunk_size": 8, "prefill_tokens": 16, "prefix_cache_mb": 0.0},
        # one task per step, prompts of any length prefilled together
        {"max_tasks_per_step": 1, "length_ratio": 100.0},
        {"fifo": 1},
    ],
    ids=["chunked", "chunked-nocache", "beta1", "fifo"],
)
def test_policies_answer_as_python(
    engine: NativeEngine, python_answers: list[Any], options: dict[str, Any]
) -> None:
    server = NativeServer(engine, **options)
    pending = [server.submit(t, x) for t, x in REQUESTS]  # all queued at once
    same([p.wait() for p in pending], python_answers)
    stats = server.stats()
    assert stats["completed"] == len(REQUESTS) and stats["running"] == 0
    server.close()


# Eight rewrite prompts of 60-61 tokens; a prefill budget of 256 tokens fits four of
# them, so their prefills end in two steps.
STAGGERED = [f"cheap flights rome {d}" for d in "12345678"]
PREFILL_TOKENS = 256
DECODE = ("decode_runs", "decode_rows", "decode_placeholder_rows")


def python_staggered(served: Path) -> tuple[list[Any], list[tuple[int, int]], dict[str, Any]]:
    """The Python engine's answers, decode runs (first row, rows) and stats."""
    engine = Engine.load(
        served,
        max_batch=8,
        chunk_size=PREFILL_TOKENS,
        prefill_tokens=PREFILL_TOKENS,
        prefix_cache_mb=0,
    )
    runs: list[tuple[int, int]] = []
    decode = engine.session.decode

    def spy(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        runs.append((kwargs.get("start", 0), len(tokens)))
        return decode(tokens, *args, **kwargs)

    engine.session.decode = spy  # type: ignore[method-assign]
    server = engine._serving()
    with server.cond:  # all eight arrive before the loop plans its first step
        futures = [engine.submit("rewrite", t, max_new_tokens=6) for t in STAGGERED]
    answers = [f.result() for f in futures]
    stats = engine.stats()
    engine.close()
    return answers, runs, stats


def test_staggered_prefills_decode_as_python_without_placeholder_rows(
    lib: ctypes.CDLL, served: Path
) -> None:
    """Eight prompts whose prefills end in two steps: each decode run computes only the
    rows that take a token (rows 4-7 decode in the step of their prefill, the last run
    covers rows 4-7 alone), and the runs, tokens and decode counts are the Python loop's.
    The C++ loop used to run rows 0-7 from the second step on: 48 rows for 40 tokens."""
    python, python_runs, python_stats = python_staggered(served)
    engine = NativeEngine(lib, served, max_batch=8)
    server = NativeServer(
        engine, prefix_cache_mb=0.0, chunk_size=PREFILL_TOKENS, prefill_tokens=PREFILL_TOKENS
    )
    tracer = RunTracer(engine)
    pending: list[NativeRequest] = []

    def release(piece: str) -> bool:  # on the loop thread, inside the opener's step
        if not pending:
            pending.extend(server.submit("rewrite", t, max_new_tokens=6) for t in STAGGERED)
        return True

    tracer.start()
    # Submitted while the loop runs the opener's step, all eight wait for the next step
    # (Python's are held back by its loop's lock): the same first plan in both.
    server.submit("rewrite", "go", max_new_tokens=1, on_text=release).wait()
    assert len(pending) == len(STAGGERED), "the opener streamed no text to submit from"
    native = [p.wait() for p in pending]
    runs, dropped = tracer.take()
    tracer.stop()
    loop = loop_stats(server)
    server.close()
    engine.close()
    # The premise: four prompts fit the budget, five do not; every answer runs to
    # max_new_tokens.
    lengths = [o.prompt_tokens for o in python]
    assert 4 * max(lengths) <= PREFILL_TOKENS < 5 * min(lengths), lengths
    assert [len(o.token_ids) for o in python] == [6] * 8
    assert python_runs == [(0, 4), (0, 8), (0, 8), (0, 8), (0, 8), (4, 4)]
    assert [(r.first_row, r.rows) for r in runs if r.kind == "decode"] == python_runs
    assert dropped == 0
    same(native, python)
    counts = [loop.decode_steps, loop.decode_rows, loop.decode_placeholder_rows]
    assert counts == [python_stats[k] for k in DECODE] == [6, 40, 0]  # 5 tokens a row


def test_deadline_exceeded(engine: NativeEngine, python_answers: list[Any]) -> None:
    server = NativeServer(engine)
    late = server.submit("rewrite", "cheap flights rome", deadline_s=1e-6)
    timely = server.submit("rewrite", "cheap flights rome", deadline_s=600.0)
    with pytest.raises(NativeError) as e:
        late.wait()
    assert e.value.status == "TINYLLM_DEADLINE_EXCEEDED" and "passed its deadline" in str(e.value)
    assert timely.wait().text == python_answers[2].text  # a far deadline changes nothing
    assert server.stats()["failed"] == 1
    server.close()


def test_streamed_pieces_add_up_and_a_callback_cancels(
    engine: NativeEngine, python_answers: list[Any]
) -> None:
    server = NativeServer(engine)
    pieces: list[str] = []

    def keep(piece: str) -> bool:
        pieces.append(piece)
        return True

    def stop(piece: str) -> bool:
        seen.append(piece)
        return False

    out = server.submit("rewrite", "cheap flights rome", on_text=keep).wait()
    assert out.text == python_answers[2].text and "".join(pieces) == out.text
    assert len(pieces) > 1  # streamed as generated, not once at the end
    seen: list[str] = []
    stopped = server.submit("rewrite", "cheap flights rome", on_text=stop)
    with pytest.raises(NativeError) as e:
        stopped.wait()
    assert e.value.status == "TINYLLM_CANCELLED" and "streaming callback" in str(e.value)
    assert len(seen) == 1
    assert server.stats()["cancelled"] == 1
    server.close()


def test_bad_options_are_invalid_argument(lib: ctypes.CDLL, engine: NativeEngine) -> None:
    NativeTasks(engine)  # declares the task entry points
    options = _TaskOptions()
    lib.tinyllm_task_options_init(ctypes.byref(options))
    assert options.struct_size == ctypes.sizeof(_TaskOptions)
    # a caller built with a tinyllm.h this library does not read (the one before
    # raw_tool_calls, 8 bytes shorter, is read: test_native_tools.py)
    options.struct_size -= 16
    request = _TaskRequest(b"sentiment", b"fine", 4)
    out = ctypes.c_void_p()
    status = lib.tinyllm_run_tasks(
        engine.handle, ctypes.byref(request), 1, ctypes.byref(options), ctypes.byref(out)
    )
    with pytest.raises(NativeError) as e:
        check(lib, status)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT"
    assert f"struct_size is {ctypes.sizeof(_TaskOptions) - 16}" in str(e.value)
    assert "tinyllm_task_options_init" in str(e.value) and not out.value
    server = NativeServer(engine)
    raw = ctypes.c_void_p()
    status = lib.tinyllm_server_submit(
        server.handle, ctypes.byref(request), ctypes.byref(options), ctypes.byref(raw)
    )
    with pytest.raises(NativeError) as e:
        check(lib, status)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT" and "struct_size" in str(e.value)
    with pytest.raises(NativeError) as e:
        server.submit("sentiment", "fine", deadline_s=-1.0)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT" and "deadline_s" in str(e.value)
    assert server.stats()["submitted"] == 0
    server.close()
    with pytest.raises(NativeError) as e:
        NativeServer(engine, chunk_size=64, prefill_tokens=32)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT" and "must be >= chunk_size" in str(e.value)
    with pytest.raises(NativeError) as e:
        NativeServer(engine, max_tasks_per_step=0)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT" and "max_tasks_per_step" in str(e.value)
