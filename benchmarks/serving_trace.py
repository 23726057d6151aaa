"""Workload traces and their statistics for the serving benchmarks (no model here).

A trace is requests over N tasks: task popularity Zipf-skewed, Poisson arrivals at a
rate, input lengths (words) and output caps (tokens) log-normal, all from one seed.
``drive`` replays a trace open-loop against any ``submit(request) -> Future``;
``summarize`` turns completions into throughput, latency and TTFT percentiles and SLO
attainment.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinyllm.runtime.workload import WORDS  # the text `tinyllm profile` draws from


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace."""

    id: int
    task: str
    text: str
    arrival_s: float
    max_new_tokens: int


@dataclass
class Completion:
    """What happened to one request (times in seconds from the trace start)."""

    id: int
    task: str
    arrival_s: float
    end_s: float = 0.0
    ttft_s: float = 0.0
    output_tokens: int = 0
    error: str | None = None


def make_trace(
    tasks: list[str],
    n: int,
    rate: float,
    seed: int = 0,
    mean_words: float = 24.0,
    mean_out: float = 32.0,
    max_out: int = 160,
    max_words: int = 400,
) -> list[TraceRequest]:
    """``n`` requests at ``rate`` requests/s (Poisson), Zipf task mix, log-normal lengths."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, len(tasks) + 1) ** 1.1
    choice = rng.choice(len(tasks), size=n, p=popularity / popularity.sum())
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n))
    sigma = 0.8  # log-normal spread: a long tail of long inputs and outputs
    words = np.clip(rng.lognormal(np.log(mean_words) - sigma**2 / 2, sigma, n), 2, max_words)
    outs = np.clip(rng.lognormal(np.log(mean_out) - sigma**2 / 2, sigma, n), 2, max_out)
    return [
        TraceRequest(
            id=i,
            task=tasks[int(choice[i])],
            text=" ".join(rng.choice(WORDS, size=int(words[i]))),
            arrival_s=float(arrivals[i] - arrivals[0]),
            max_new_tokens=int(outs[i]),
        )
        for i in range(n)
    ]


def drive(
    trace: list[TraceRequest],
    submit: Callable[[TraceRequest], Future[Any]],
    on_tick: Callable[[float], None] | None = None,
) -> list[Completion]:
    """Replay ``trace`` open-loop: submit each request at its arrival time, wait for all.

    ``submit`` returns a future of an object with ``output_tokens`` and ``ttft_s``
    (from submission), or raises (the request is refused: a failure, not lost).
    ``on_tick(t)`` is called before each submission (e.g. to add a task mid-trace).
    """
    done = [Completion(r.id, r.task, r.arrival_s) for r in trace]
    finished = threading.Semaphore(0)
    start = time.perf_counter()

    def record(c: Completion, future: Future[Any]) -> None:
        c.end_s = time.perf_counter() - start
        error = future.exception()
        if error is not None:
            c.error = f"{type(error).__name__}: {error}"
        else:
            out = future.result()
            c.output_tokens, c.ttft_s = out.output_tokens, out.ttft_s
        finished.release()

    for request, c in zip(trace, done, strict=True):
        time.sleep(max(0.0, start + request.arrival_s - time.perf_counter()))
        if on_tick is not None:
            on_tick(time.perf_counter() - start)
        try:
            future = submit(request)
        except Exception as e:
            c.end_s, c.error = time.perf_counter() - start, f"{type(e).__name__}: {e}"
            finished.release()
            continue
        future.add_done_callback(lambda f, c=c: record(c, f))
    for _ in done:
        finished.acquire()
    return done


def slo_seconds(c: Completion, ttft_s: float, tpot_s: float, scale: float) -> float:
    """A request's latency objective: ``scale`` times its unloaded single-stream latency."""
    return scale * (ttft_s + max(c.output_tokens - 1, 0) * tpot_s)


def summarize(done: list[Completion], slo: Callable[[Completion], float]) -> dict[str, Any]:
    """Throughput, latency and TTFT percentiles, SLO attainment, failures of one run."""
    ok = [c for c in done if c.error is None]
    latency = np.array([c.end_s - c.arrival_s for c in ok]) if ok else np.zeros(1)
    ttft = np.array([c.ttft_s for c in ok]) if ok else np.zeros(1)
    span = max(c.end_s for c in done) - min(c.arrival_s for c in done)
    tokens = sum(c.output_tokens for c in ok)
    met = sum(1 for c in ok if c.end_s - c.arrival_s <= slo(c))
    return {
        "requests": len(done),
        "failed": len(done) - len(ok),
        "output_tokens": tokens,
        "throughput_tok_s": tokens / span if span > 0 else 0.0,
        "throughput_req_s": len(ok) / span if span > 0 else 0.0,
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p95_s": float(np.percentile(latency, 95)),
        "latency_p99_s": float(np.percentile(latency, 99)),
        "ttft_p50_s": float(np.percentile(ttft, 50)),
        "ttft_p99_s": float(np.percentile(ttft, 99)),
        "slo_attainment": met / len(done),
        "errors": sorted({c.error for c in done if c.error})[:3],
    }


def windows(done: list[Completion], edges: list[float]) -> list[float]:
    """Output tokens/s completed in each window ``[edges[i], edges[i+1])`` (seconds)."""
    rates = []
    for lo, hi in itertools.pairwise(edges):
        tokens = sum(c.output_tokens for c in done if c.error is None and lo <= c.end_s < hi)
        rates.append(tokens / (hi - lo))
    return rates


def to_json(done: list[Completion]) -> list[dict[str, Any]]:
    """Completions as plain dicts."""
    return [asdict(c) for c in done]
