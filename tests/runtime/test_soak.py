"""A bounded soak of the in-process server: mixed tasks, cancels, deadlines, bad requests.

For ``TINYLLM_SOAK_S`` seconds (default 20) client threads send the served tasks and
free completions, cancel some while queued or streaming, give some a deadline too short
to meet, and send bad requests (an unknown task, a NaN temperature). Afterwards every
request is accounted for, and nothing leaked: no KV row or adapter slot held, no extra
thread, no extra file descriptor, RSS flat between the first third and the end.
docs/reliability.md gives the long run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from tinyllm.errors import (
    ConfigError,
    DeadlineExceededError,
    RequestCancelledError,
    UnknownTaskError,
)
from tinyllm.runtime import Engine, GenerationConfig

SOAK_S = float(os.environ.get("TINYLLM_SOAK_S", "20"))
TASKS = ("sentiment", "booking", "rewrite")
WORDS = [
    "the",
    "film",
    "was",
    "great",
    "awful",
    "fine",
    "my",
    "booking",
    "for",
    "two",
    "at",
    "noon",
    "please",
    "rewrite",
]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _client(engine: Engine, seed: int, until: float, outcomes: dict[str, int]) -> None:
    rng = random.Random(seed)
    lock = threading.Lock()

    def count(name: str) -> None:
        with lock:
            outcomes[name] = outcomes.get(name, 0) + 1

    while time.monotonic() < until:
        text = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
        kind = rng.random()
        try:
            if kind < 0.45:
                engine.run(rng.choice(TASKS), text)
                count("ok")
            elif kind < 0.6:
                future = engine.submit(rng.choice(TASKS), text)
                if future.cancel():
                    count("cancelled")
                else:
                    future.result()
                    count("ok")
            elif kind < 0.72:
                stream = engine.stream_complete(text, GenerationConfig(max_new_tokens=24))
                next(stream, None)
                stream.close()  # the reader went away
                count("closed")
            elif kind < 0.82:
                engine.complete(text, GenerationConfig(max_new_tokens=48), deadline_s=0.001)
                count("ok")
            elif kind < 0.91:
                engine.run("no-such-task", text)
                count("accepted-bad")
            else:
                engine.complete(text, GenerationConfig(max_new_tokens=8, temperature=float("nan")))
                count("accepted-bad")
        except DeadlineExceededError:
            count("deadline")
        except (RequestCancelledError, CancelledError):
            count("cancelled")
        except (UnknownTaskError, ConfigError):
            count("refused")


@pytest.mark.timeout(300)
def test_soak_mixed_load_leaks_nothing(served: Path) -> None:
    engine = Engine.load(served, max_batch=4, queue_size=64)
    engine.run("sentiment", "warm up")  # the loop thread and sessions exist from here
    threads, fds = threading.active_count(), _fds()
    slots_free = engine.stats()["adapter_slots_free"]
    outcomes: dict[str, int] = {}
    until = time.monotonic() + SOAK_S
    clients = [
        threading.Thread(target=_client, args=(engine, seed, until, outcomes)) for seed in range(6)
    ]
    for c in clients:
        c.start()
    time.sleep(SOAK_S / 3)  # the measurement point, not a wait for state
    rss_early = _rss_mib()
    for c in clients:
        c.join(timeout=SOAK_S + 120)
    assert not any(c.is_alive() for c in clients), "a client hung"
    rss_end = _rss_mib()
    stats = engine.stats()
    server = engine._serving()
    assert (stats["running"], stats["queue_depth"]) == (0, 0)
    assert all(server.scheduler.free_rows), "a KV row is still held"
    assert stats["adapter_slots_free"] == slots_free
    assert threading.active_count() == threads
    assert _fds() <= fds + 2  # a lazily opened file (a cache) may stay open
    assert outcomes.get("ok", 0) > 10 and outcomes.get("refused", 0) > 0
    assert "accepted-bad" not in outcomes
    assert stats["failed"] == outcomes.get("deadline", 0)  # no failure but the deadlines
    assert rss_end - rss_early < 64, f"RSS grew {rss_end - rss_early:.1f} MiB"
    engine.close()
    print(f"soak {SOAK_S:.0f}s: {outcomes}; RSS {rss_early:.0f} -> {rss_end:.0f} MiB")
