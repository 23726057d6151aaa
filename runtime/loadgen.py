"""Drive an engine with a workload: one request at a time, a fixed concurrency, or an
arrival rate (Poisson, open loop), and keep what came back."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from tinyllm.errors import ConfigError
from tinyllm.runtime.engine import Engine
from tinyllm.runtime.router import TaskOutput
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.runtime.workload import DEFAULT_NEW_TOKENS, WorkItem


@dataclass(frozen=True)
class Load:
    """How requests arrive: ``concurrency`` in flight (closed loop), or ``rate`` per
    second (Poisson arrivals, open loop; requests refused by a full queue fail)."""

    concurrency: int | None = None
    rate: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise ConfigError("give one of concurrency and rate")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate must be > 0 requests per second, got {self.rate}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")

    def describe(self) -> str:
        """``concurrency 4`` or ``rate 2.0/s``."""
        return f"concurrency {self.concurrency}" if self.rate is None else f"rate {self.rate}/s"


@dataclass
class Outcome:
    """What happened to one request (times in ``time.perf_counter`` seconds)."""

    item: WorkItem
    submitted: float
    done: float = 0.0
    output: TaskOutput | None = None
    error: str | None = None


def submit(engine: Engine, item: WorkItem, wait: bool) -> Future[TaskOutput]:
    """Queue one work item on the engine's decode loop."""
    if item.task is not None:
        return engine.submit(
            item.task, item.text or "", max_new_tokens=item.max_new_tokens, wait=wait
        )
    if item.ids is not None:
        config = GenerationConfig(max_new_tokens=item.max_new_tokens or 1, ignore_eos=True)
        return engine.submit_ids(item.ids, config, wait=wait)
    config = GenerationConfig(max_new_tokens=item.max_new_tokens or DEFAULT_NEW_TOKENS)
    return engine.submit_complete(item.text or "", config)


def drive(
    engine: Engine,
    items: list[WorkItem],
    load: Load,
    on_done: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], float]:
    """Send ``items`` as ``load`` says and wait for every one; returns the outcomes and
    the wall time from the first submission to the last result."""
    outcomes: list[Outcome] = []
    finished = threading.Semaphore(0)
    room = threading.Semaphore(load.concurrency or len(items) or 1)
    times = arrivals(load, len(items))
    start = time.perf_counter()

    def record(outcome: Outcome, future: Future[TaskOutput]) -> None:
        outcome.done = time.perf_counter()
        error = future.exception()
        if error is None:
            outcome.output = future.result()
        else:
            outcome.error = f"{type(error).__name__}: {error}"
        room.release()
        if on_done is not None:
            on_done(outcome)
        finished.release()

    for item, at in zip(items, times, strict=True):
        if load.rate is None:
            room.acquire()
        else:
            time.sleep(max(0.0, start + at - time.perf_counter()))
        outcome = Outcome(item, time.perf_counter())
        outcomes.append(outcome)
        try:
            future = submit(engine, item, wait=load.rate is None)
        except Exception as e:  # refused at once (full queue, unknown task): a failure
            outcome.done, outcome.error = time.perf_counter(), f"{type(e).__name__}: {e}"
            room.release()
            if on_done is not None:
                on_done(outcome)
            finished.release()
            continue
        future.add_done_callback(functools.partial(record, outcome))
    for _ in items:
        finished.acquire()
    end = max((o.done for o in outcomes), default=start)
    return outcomes, end - start


def arrivals(load: Load, n: int) -> list[float]:
    """Seconds from the start at which each request arrives (0 for a closed loop)."""
    if load.rate is None:
        return [0.0] * n
    gaps = np.random.default_rng(load.seed).exponential(1.0 / load.rate, size=n)
    return [float(t) for t in np.cumsum(gaps) - gaps[0]]
