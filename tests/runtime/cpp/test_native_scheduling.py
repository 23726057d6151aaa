"""The libtinyllm server's scheduling (runtime/cpp/src/scheduler.cpp, the Python
runtime's policy): chunked and batched prefill and the fifo policy change no answer,
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
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetasks import NativeTasks, _TaskOptions, _TaskRequest

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
    options.struct_size -= 8  # a caller built with an older tinyllm.h
    request = _TaskRequest(b"sentiment", b"fine", 4)
    out = ctypes.c_void_p()
    status = lib.tinyllm_run_tasks(
        engine.handle, ctypes.byref(request), 1, ctypes.byref(options), ctypes.byref(out)
    )
    with pytest.raises(NativeError) as e:
        check(lib, status)
    assert e.value.status == "TINYLLM_INVALID_ARGUMENT"
    assert f"struct_size is {ctypes.sizeof(_TaskOptions) - 8}" in str(e.value)
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
