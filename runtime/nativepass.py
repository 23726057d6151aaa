"""One pass of ``tinyllm profile --runtime cpp``: a workload sent to libtinyllm's server
from client threads, and the times of its requests, checked against the server's timers.

The client sees submit, first streamed text and answer; the server records when each
request got its first prefill run (``tinyllm_request_admitted``); the engine's run trace
(:mod:`tinyllm.runtime.nativetrace`) times every ONNX Runtime run. :func:`client_timing`
and :func:`timer_problems` check these against each other and report what does not line
up instead of guessing. :mod:`tinyllm.runtime.profilenative` builds the profile from the
passes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyllm.runtime.loadgen import Load, arrivals
from tinyllm.runtime.native import NativeStats
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetrace import LoopStats, Run, RunTracer, loop_stats
from tinyllm.runtime.steprecorder import RequestRecord
from tinyllm.runtime.workload import WorkItem

MAX_CLIENTS = 256  # client threads; an arrival rate keeps at most this many in flight


@dataclass
class NativePass:
    """What one pass of the native server recorded (trace-clock seconds)."""

    requests: list[RequestRecord]
    runs: list[Run]
    wall_s: float
    busy_s: float
    ttft: dict[int, float]  # by request id: submit to first streamed text (no text: absent)
    queue: dict[int, float]  # by request id: submit to its first prefill run, where known
    queue_absent: str | None  # why the pass's queue wait is not reported
    engine: NativeStats  # the engine's counters over the pass
    loop: LoopStats  # the server loop's steps over the pass
    dropped: int = 0  # runs the trace dropped (over its cap)


@dataclass
class Clients:
    """The client side of a pass: per item, when it was submitted and answered."""

    submitted: list[float]
    done: list[float]
    tokens: list[int]
    errors: list[str | None]
    first_text: list[float | None] = field(default_factory=list)  # first streamed piece
    admitted: list[float | None] = field(default_factory=list)  # first prefill run's start


def drive_server(
    server: NativeServer,
    tracer: RunTracer,
    items: list[WorkItem],
    load: Load,
    tick: Any = None,
) -> Clients:
    """Send ``items`` to the server as ``load`` says (a client thread each) and wait.

    Each request streams its answer; the first non-empty piece's time is kept.
    """
    n = len(items)
    clients = Clients([0.0] * n, [0.0] * n, [0] * n, [None] * n, [None] * n, [None] * n)
    room = threading.Semaphore(load.concurrency or n or 1)

    def client(i: int) -> None:
        item = items[i]

        def on_text(piece: str) -> bool:  # on the server's thread: keep it short
            if piece and clients.first_text[i] is None:
                clients.first_text[i] = tracer.clock()
            return True

        try:
            clients.submitted[i] = tracer.clock()
            request = server.submit(
                item.task or "", item.text or "", item.max_new_tokens or 0, on_text=on_text
            )
            clients.tokens[i] = len(request.wait().token_ids)
            clients.admitted[i] = request.admitted()
        except Exception as e:  # refused or failed: the request counts as failed
            clients.errors[i] = f"{type(e).__name__}: {e}"
        finally:
            clients.done[i] = tracer.clock()
            room.release()
        if tick is not None:
            tick()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, min(n, load.concurrency or MAX_CLIENTS))) as pool:
        for i, at in enumerate(arrivals(load, n)):
            if load.rate is None:
                room.acquire()
            else:
                time.sleep(max(0.0, start + at - time.perf_counter()))
            pool.submit(client, i)
    return clients


def busy_time(clients: Clients) -> float:
    """Seconds during which at least one request was in flight."""
    spans = sorted(zip(clients.submitted, clients.done, strict=True))
    total, end = 0.0, -np.inf
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def client_timing(
    clients: Clients, runs: list[Run], dropped: int
) -> tuple[dict[int, float], dict[int, float], str | None]:
    """TTFT (submit to first streamed text) of each answered request that streamed text,
    queue wait (submit to the start of its first prefill run, as the server recorded it)
    of each answered request, and why the pass's queue wait is absent (None if it is not).

    The server's record must agree with the client and the trace: admitted after submit,
    before the first streamed text and the answer, and a prefill run starting then (the
    server records the time just before the run). Any disagreement, or runs dropped by
    the trace, makes the pass's queue wait absent with the reason: nothing is guessed."""
    slack = 1e-6  # one clock on both sides; rounding only
    ttft = {
        i: t - clients.submitted[i]
        for i, t in enumerate(clients.first_text)
        if t is not None and clients.errors[i] is None
    }
    if dropped:
        return ttft, {}, f"the trace dropped {dropped} runs (over its cap)"
    starts = np.array(sorted(r.start for r in runs if r.kind == "prefill"))
    queue = {}
    for i, at in enumerate(clients.admitted):
        if clients.errors[i] is not None:
            continue
        if at is None:
            return ttft, {}, f"request {i} was answered without a time it got its KV row"
        latest = min(clients.done[i], clients.first_text[i] or clients.done[i])
        if not clients.submitted[i] - slack <= at <= latest + slack:
            why = (
                f"request {i} was admitted at {at:.6f} s, outside its submit-to-first-text "
                f"span [{clients.submitted[i]:.6f}, {latest:.6f}]: the times do not match"
            )
            return ttft, {}, why
        k = int(np.searchsorted(starts, at - slack))
        if k == len(starts) or starts[k] > latest + slack:
            why = (
                f"request {i} was admitted at {at:.6f} s but no prefill run started before "
                "its first text: the trace does not match the requests"
            )
            return ttft, {}, why
        queue[i] = at - clients.submitted[i]
    return ttft, queue, None


def native_pass(
    server: NativeServer,
    tracer: RunTracer,
    items: list[WorkItem],
    prompt_lens: list[int],
    load: Load,
    tick: Any = None,
) -> NativePass:
    """One pass: drive the server with the trace on, then time its requests."""
    engine_before, loop_before = server.engine.stats(), loop_stats(server)
    tracer.start()
    try:
        clients = drive_server(server, tracer, items, load, tick)
    finally:
        runs, dropped = tracer.take()
        tracer.stop()
    # The engine's stats wait for the loop to let go of the engine: its last step is in.
    engine = server.engine.stats().since(engine_before)
    loop = loop_stats(server).since(loop_before)
    ttft, queue, absent = client_timing(clients, runs, dropped)
    requests = []
    for i, item in enumerate(items):
        t0 = clients.submitted[i]
        requests.append(
            RequestRecord(
                i,
                item.kind,
                prompt_lens[i],
                clients.tokens[i],
                t0,
                queue.get(i, 0.0),
                ttft.get(i, 0.0),
                clients.done[i] - t0,
                clients.errors[i],
                {"queue": queue[i]} if i in queue else {},
            )
        )
    wall = max(clients.done, default=0.0) - min(clients.submitted, default=0.0)
    return NativePass(
        requests, runs, wall, busy_time(clients), ttft, queue, absent, engine, loop, dropped
    )


def timer_problems(p: NativePass) -> list[str]:
    """Where the pass's timers disagree (empty if nowhere): the engine's stats and the run
    trace count the same runs and time them alike, the runs fit in the loop's steps, and
    the trace's decode runs computed the rows the loop counted."""
    problems = []
    ort, traced = p.engine.ort_seconds, sum(r.seconds for r in p.runs)
    dropped = p.dropped
    if not dropped and p.engine.runs != len(p.runs):
        problems.append(f"the engine counted {p.engine.runs} runs, the trace {len(p.runs)}")
    # The trace's span of a run holds the stats' span and two clock reads: microseconds.
    if not dropped and not ort - 1e-6 * len(p.runs) <= traced <= ort * 1.01 + 1e-5 * len(p.runs):
        problems.append(f"the engine timed {ort:.6f} s of runs, the trace {traced:.6f} s")
    if ort > p.loop.busy_seconds + 1e-6:
        problems.append(
            f"{ort:.6f} s of ONNX Runtime runs do not fit in the loop's "
            f"{p.loop.busy_seconds:.6f} s of steps"
        )
    if p.loop.decode_steps > p.loop.steps or p.engine.decode_steps != p.loop.decode_steps:
        problems.append(
            f"{p.engine.decode_steps} decode runs, but the loop counted {p.loop.decode_steps} "
            f"decode steps of {p.loop.steps}"
        )
    rows = sum(r.rows for r in p.runs if r.kind == "decode")
    if not dropped and rows != p.loop.decode_rows:
        problems.append(
            f"the trace's decode runs computed {rows} rows, the loop counted {p.loop.decode_rows}"
        )
    return problems
