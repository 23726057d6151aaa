"""The libtinyllm server: concurrent mixed task requests answer as the Python runtime
does, the prefix cache changes no answer and stays within its memory, and every failure
(unknown task, long prompt, full queue, cancel, close) is a status with a message."""

from __future__ import annotations

import ctypes
import random
import threading
from pathlib import Path

import pytest

from tinyllm.runtime import Engine
from tinyllm.runtime.native import NativeEngine, NativeError
from tinyllm.runtime.nativeserver import NativeServer

TEXTS = [
    "The room was spotless and the staff were lovely",
    "Book a table for four in Lisbon on 2024-05-03",
    "cheap flights rome",
    "I hated every minute of it",
    "Two guests, Paris, next Friday",
    "weather tomorrow",
    "meh",
    "Absolutely wonderful service!",
]
TASKS = ("sentiment", "booking", "rewrite")


@pytest.fixture(scope="module")
def requests() -> list[tuple[str, str]]:
    rng = random.Random(0)
    return [(rng.choice(TASKS), rng.choice(TEXTS) + f" #{i}") for i in range(32)]


@pytest.fixture(scope="module")
def python_answers(served: Path, requests: list[tuple[str, str]]) -> list:
    engine = Engine.load(served, max_batch=1)  # one at a time: the sequential reference
    answers = [engine.run(t, x) for t, x in requests]
    engine.close()
    return answers


def same(native: list, python: list) -> None:
    assert [o.token_ids for o in native] == [tuple(o.token_ids) for o in python]
    assert [o.text for o in native] == [o.text for o in python]
    assert [(o.valid, o.value) for o in native] == [(o.valid, o.value) for o in python]
    assert [o.finish_reason for o in native] == [o.finish_reason for o in python]


@pytest.mark.parametrize("prefix_cache_mb", [64.0, 0.0])
def test_eight_threads_answer_as_sequential_python_runs(
    lib: ctypes.CDLL,
    served: Path,
    requests: list[tuple[str, str]],
    python_answers: list,
    prefix_cache_mb: float,
) -> None:
    engine = NativeEngine(lib, served, max_batch=4)
    server = NativeServer(engine, prefix_cache_mb=prefix_cache_mb)
    answers: list = [None] * len(requests)

    def worker(k: int) -> None:
        for i in range(k, len(requests), 8):
            answers[i] = server.submit(*requests[i]).wait()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same(answers, python_answers)
    stats = server.stats()
    assert stats["submitted"] == stats["completed"] == len(requests)
    assert stats["queue_depth"] == stats["running"] == 0
    if prefix_cache_mb:
        # A task misses only in the prefill group that stores its prefix: the requests of
        # that task that arrived before it was stored, up to max_batch = 4 rows. How many
        # arrived by then is up to the threads (often 1, at times 2 for one task), so the
        # bound is the worst case, 3 tasks x 4 rows.
        assert stats["prefix_entries"] == 3 and stats["prefix_hits"] >= len(requests) - 3 * 4
        assert stats["prefix_hits"] + stats["prefix_misses"] == len(requests)
        assert 0 < stats["prefix_bytes"] <= stats["prefix_max_bytes"] == 64 * 2**20
        assert stats["prefix_tokens_saved"] > 0
    else:
        assert stats["prefix_entries"] == stats["prefix_hits"] == 0
    server.close()
    engine.close()


def test_prefix_cache_memory_is_bounded(
    lib: ctypes.CDLL,
    served: Path,
    requests: list[tuple[str, str]],
    python_answers: list,
) -> None:
    """A cache too small for two tasks' prefixes holds one at a time, answers unchanged."""
    engine = NativeEngine(lib, served, max_batch=4)
    probe = NativeServer(engine)
    probe.submit("sentiment", "x").wait()
    one = probe.stats()["prefix_bytes"]
    probe.close()
    server = NativeServer(engine, prefix_cache_mb=1.5 * one / 2**20)
    same([server.submit(t, x).wait() for t, x in requests], python_answers)
    stats = server.stats()
    assert stats["prefix_entries"] == 1 and stats["prefix_bytes"] <= stats["prefix_max_bytes"]
    server.close()
    engine.close()


def test_errors_are_statuses(lib: ctypes.CDLL, served: Path) -> None:
    engine = NativeEngine(lib, served, max_batch=2)
    server = NativeServer(engine)
    with pytest.raises(NativeError) as e:
        server.submit("nope", "x")
    assert e.value.status == "TINYLLM_NOT_FOUND" and "serves: booking, rewrite, sentiment" in str(
        e.value
    )
    with pytest.raises(NativeError) as e:
        server.submit("sentiment", "word " * 300)
    assert e.value.status == "TINYLLM_CONTEXT_ERROR" and "context is 256 tokens" in str(e.value)
    server.shutdown()
    with pytest.raises(NativeError) as e:
        server.submit("sentiment", "x")
    assert e.value.status == "TINYLLM_CLOSED" and "server is closed" in str(e.value)
    server.close()
    full = NativeServer(engine, queue_size=0)
    with pytest.raises(NativeError) as e:
        full.submit("sentiment", "x")
    assert e.value.status == "TINYLLM_QUEUE_FULL" and "queue is full" in str(e.value)
    assert full.stats()["rejected"] == 1
    full.close()
    engine.close()


def test_cancel_and_close_with_requests_in_flight(lib: ctypes.CDLL, served: Path) -> None:
    engine = NativeEngine(lib, served, max_batch=1)
    server = NativeServer(engine)
    pending = [server.submit("rewrite", f"{TEXTS[i % 8]} {i}") for i in range(12)]
    pending[-1].cancel()  # still queued behind 11 requests on one row
    with pytest.raises(NativeError) as e:
        pending[-1].wait()
    assert e.value.status == "TINYLLM_CANCELLED"
    pending[0].wait()  # the first runs to its end
    server.shutdown(drain=False)  # the rest fail, none is left waiting
    statuses = set()
    for request in pending[1:-1]:
        try:
            request.wait()
            statuses.add("TINYLLM_OK")
        except NativeError as err:
            statuses.add(err.status)
    assert "TINYLLM_CLOSED" in statuses and statuses <= {"TINYLLM_OK", "TINYLLM_CLOSED"}
    stats = server.stats()
    assert stats["cancelled"] == 1 and stats["failed"] >= 1
    assert stats["submitted"] == stats["completed"] + stats["cancelled"] + stats["failed"] == 12
    server.close()
    engine.close()
