"""``tinyllm profile --runtime cpp``: the C++ runtime (libtinyllm's server) under the same
workload as the Python runtime's profile, with the figures its C API can give.

Requests go to a :class:`~tinyllm.runtime.nativeserver.NativeServer` from client threads:
one at a time (single stream), then at a concurrency or an arrival rate (under load).
The engine's run trace (:mod:`tinyllm.runtime.nativetrace`) times every ONNX Runtime run.

- Latency: end to end is what the client sees. TTFT and queue wait come from the trace:
  the server admits requests first come, first served and prefills each in one run, so
  the k-th prefill run belongs to the k-th request submitted. That is checked for every
  request (its prompt length, and the run inside the request's lifetime); where it does
  not hold, TTFT, TPOT and queue wait are reported absent with the reason.
- Phases: ONNX Runtime's prefill and decode runs, and the rest of the server's busy
  time (sampling, constraints, scheduling, prefix-cache copies, hand-offs), which the
  C API does not split.
- Operators: absent (libtinyllm does not turn on ONNX Runtime's profiler).
- Roofline and memory as the Python profile has them, from the trace and server stats.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tinyllm.bundle import Bundle
from tinyllm.errors import ConfigError
from tinyllm.runtime import profilestats as stats
from tinyllm.runtime.engine import pick_engine
from tinyllm.runtime.enginefile import read_engine_info
from tinyllm.runtime.engineinfo import EngineInfo
from tinyllm.runtime.loadgen import Load, arrivals
from tinyllm.runtime.native import NativeEngine, load_library
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetasks import NativeTasks
from tinyllm.runtime.nativetrace import Run, RunTracer
from tinyllm.runtime.profile import ProfileOptions, Progress, read_quality, workload_items
from tinyllm.runtime.roofline import graph_weights, memory_bandwidth, peak_rss, roofline
from tinyllm.runtime.servingdefaults import ServingDefaults, read_defaults
from tinyllm.runtime.session import usable_cpus
from tinyllm.runtime.steprecorder import RequestRecord
from tinyllm.runtime.workload import WorkItem

MAX_CLIENTS = 256  # client threads; an arrival rate keeps at most this many in flight
OUTSIDE_LABEL = "outside ONNX Runtime (not split)"
ABSENT = {
    "operators": "libtinyllm does not turn on ONNX Runtime's profiler; the C++ runtime runs "
    "the same model file, so `--runtime python` shows its operators",
    "phases.split": "the C API times only ONNX Runtime's runs: the rest of the server's busy "
    "time (tokenize and prompt build in submit, sampling, constraints, scheduling, "
    "prefix-cache copies, hand-offs) is one figure",
    "memory.adapter_bytes": "the C API does not report the adapter slots' memory",
    "sweep": "--sweep and --slo-p95-ms tune the Python runtime's serving settings",
}
USED_SETTINGS = ("threads", "max_batch", "queue_size", "prefix_cache_mb")


@dataclass
class NativePass:
    """What one pass of the native server recorded (trace-clock seconds)."""

    requests: list[RequestRecord]
    runs: list[Run]
    wall_s: float
    busy_s: float
    timing_absent: str | None  # why TTFT/queue could not be read from the trace


@dataclass
class Clients:
    """The client side of a pass: per item, when it was submitted and answered."""

    submitted: list[float]
    done: list[float]
    tokens: list[int]
    errors: list[str | None]
    order: list[int] = field(default_factory=list)  # items in submission order


def drive_server(
    server: NativeServer,
    tracer: RunTracer,
    items: list[WorkItem],
    load: Load,
    tick: Any = None,
) -> Clients:
    """Send ``items`` to the server as ``load`` says (a client thread each) and wait.

    Submissions are serialized, so ``order`` is the order the server queued them in.
    """
    n = len(items)
    clients = Clients([0.0] * n, [0.0] * n, [0] * n, [None] * n)
    lock = threading.Lock()
    room = threading.Semaphore(load.concurrency or n or 1)

    def client(i: int) -> None:
        item = items[i]
        try:
            with lock:
                clients.submitted[i] = tracer.clock()
                request = server.submit(item.task or "", item.text or "", item.max_new_tokens or 0)
                clients.order.append(i)
            clients.tokens[i] = len(request.wait().token_ids)
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


def match_prefills(
    clients: Clients, prompt_lens: list[int], runs: list[Run]
) -> tuple[dict[int, Run], str | None]:
    """Each queued item's prefill run: the k-th prefill for the k-th item queued (the
    server's first come, first served), checked by prompt length and lifetime.

    Returns the runs by item, or ({}, the reason) when they do not line up.
    """
    prefills = [r for r in runs if r.kind == "prefill"]
    if len(prefills) != len(clients.order):
        return {}, (
            f"{len(prefills)} prefill runs for {len(clients.order)} queued requests: the "
            "server did not prefill each request in one run"
        )
    matched: dict[int, Run] = {}
    for i, run in zip(clients.order, prefills, strict=True):
        slack = 1e-6  # the clocks are the same; rounding only
        inside = clients.submitted[i] - slack <= run.start and run.end <= clients.done[i] + slack
        if run.tokens + run.past != prompt_lens[i] or not inside:
            return {}, (
                "the prefill runs do not line up with the requests in the order they were "
                f"queued (request {i}: prompt of {prompt_lens[i]} tokens, run of "
                f"{run.tokens}+{run.past} tokens)"
            )
        matched[i] = run
    return matched, None


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


def native_pass(
    server: NativeServer,
    tracer: RunTracer,
    items: list[WorkItem],
    prompt_lens: list[int],
    load: Load,
    tick: Any = None,
) -> NativePass:
    """One pass: drive the server with the trace on, then match runs to requests."""
    tracer.start()
    try:
        clients = drive_server(server, tracer, items, load, tick)
    finally:
        runs, dropped = tracer.take()
        tracer.stop()
    matched, absent = match_prefills(clients, prompt_lens, runs)
    if dropped:
        absent = f"the trace dropped {dropped} runs (over its cap)"
    requests = []
    for i, item in enumerate(items):
        run = matched.get(i)
        t0 = clients.submitted[i]
        requests.append(
            RequestRecord(
                i,
                item.kind,
                prompt_lens[i],
                clients.tokens[i],
                t0,
                run.start - t0 if run else 0.0,
                run.end - t0 if run else 0.0,
                clients.done[i] - t0,
                clients.errors[i],
                {"queue": run.start - t0} if run else {},
            )
        )
    wall = max(clients.done, default=0.0) - min(clients.submitted, default=0.0)
    return NativePass(requests, runs, wall, busy_time(clients), absent)


def latency(p: NativePass) -> dict[str, Any]:
    """The latency section of a pass; TTFT, TPOT and queue wait None when absent."""
    result = stats.latency(p.requests, p.wall_s)
    if p.timing_absent is not None:
        for part in [result, *result["per_task"].values()]:
            part["ttft_ms"] = part["tpot_ms"] = part["queue_ms"] = None
    return result


def phases(loaded: NativePass, single: NativePass) -> dict[str, Any]:
    """ONNX Runtime's prefill and decode time, and the rest of the busy time."""
    prefill = sum(r.seconds for r in loaded.runs if r.kind == "prefill")
    decode = sum(r.seconds for r in loaded.runs if r.kind == "decode")
    busy = max(loaded.busy_s, prefill + decode)
    parts = [
        ("prefill_ort", "prefill: ONNX Runtime run", prefill),
        ("decode_ort", "decode: ONNX Runtime run", decode),
        ("outside_ort", OUTSIDE_LABEL, busy - prefill - decode),
    ]
    ok = [r for r in loaded.requests if r.error is None]
    queue = [r.phases["queue"] for r in ok if "queue" in r.phases]
    return {
        "loop": [
            {"phase": k, "label": label, "seconds": s, "share": s / busy if busy > 0 else 0.0}
            for k, label, s in parts
        ],
        "busy_s": busy,
        "idle_s": max(loaded.wall_s - loaded.busy_s, 0.0),
        "profiler_s": None,
        "ort_s": prefill + decode,
        "outside_ort_share": (busy - prefill - decode) / busy if busy > 0 else 0.0,
        "per_request_ms": {"queue": 1e3 * float(np.mean(queue))} if queue else {},
        "client_s": None,
        "per_token": per_token(loaded),
        "single_stream_per_token": per_token(single),
    }


def per_token(p: NativePass) -> dict[str, float]:
    """Time per generated token outside ONNX Runtime and inside it (ms)."""
    ort = sum(r.seconds for r in p.runs)
    n = max(sum(r.output_tokens for r in p.requests if r.error is None), 1)
    return {"outside_ort_ms": 1e3 * max(p.busy_s - ort, 0.0) / n, "ort_ms": 1e3 * ort / n}


def by_batch(runs: list[Run]) -> list[dict[str, float]]:
    """Decode runs that followed a decode run (decode-only loop steps), by rows computed:
    mean step time (start to next start, sampling included) and tokens/s."""
    groups: dict[int, list[float]] = {}
    for run, following in itertools.pairwise(runs):
        if run.kind == following.kind == "decode":
            groups.setdefault(run.rows, []).append(following.start - run.start)
    return [
        {
            "rows": rows,
            "steps": len(times),
            "step_ms": 1e3 * float(np.mean(times)),
            "tok_s": rows / float(np.mean(times)),
        }
        for rows, times in sorted(groups.items())
    ]


@dataclass
class NativeProfile:
    """The profile of one engine run by libtinyllm."""

    bundle: str
    engine: str
    precision: str
    settings: ServingDefaults
    workload: dict[str, Any]
    single: NativePass
    loaded: NativePass
    roofline: dict[str, Any]
    memory: dict[str, Any]
    quality: dict[str, Any]
    absent: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data, in the Python profile's sections; what the C++
        runtime cannot give is None, and ``absent`` says why."""
        return {
            "runtime": "cpp",
            "bundle": self.bundle,
            "engine": self.engine,
            "precision": self.precision,
            "settings": asdict(self.settings),
            "workload": self.workload,
            "latency": {"single_stream": latency(self.single), "under_load": latency(self.loaded)},
            "phases": phases(self.loaded, self.single),
            "operators": None,
            "roofline": self.roofline,
            "memory": self.memory,
            "batch": by_batch(self.loaded.runs),
            "quality": self.quality,
            "overhead": None,
            "absent": self.absent,
            "requests": [
                {
                    "task": r.task,
                    "prompt_tokens": r.prompt_tokens,
                    "output_tokens": r.output_tokens,
                    "ttft_ms": 1e3 * r.ttft_s if self.loaded.timing_absent is None else None,
                    "e2e_ms": 1e3 * r.e2e_s,
                    "queue_ms": 1e3 * r.queue_s if self.loaded.timing_absent is None else None,
                    "error": r.error,
                }
                for r in self.loaded.requests
            ],
        }


def profile_native(
    bundle: Bundle,
    options: ProfileOptions,
    settings: ServingDefaults | None = None,
    progress: Progress | None = None,
) -> NativeProfile:
    """Profile one engine of ``bundle`` on libtinyllm's server (see the module docstring).

    Raises TinyLLMError when the native library is not built, ConfigError when the
    workload is not the bundle's tasks (the server serves only those).
    """
    entry = pick_engine(bundle, options.engine, "cpu")
    name = entry.path.rstrip("/").split("/")[-1]
    folder = bundle.path / entry.path
    settings = settings or read_defaults(folder)
    items, described, _ = workload_items(options, bundle)
    lib = load_library()
    engine = NativeEngine(
        lib, bundle.path, engine=name, max_batch=settings.max_batch, threads=settings.threads or 0
    )
    try:
        tasks = NativeTasks(engine)
        prompt_lens = _prompt_lens(tasks, items, str(bundle.path))
        server = NativeServer(engine, settings.queue_size, settings.prefix_cache_mb)
        tracer = RunTracer(engine)
        try:
            single_items = items[: options.single_stream]
            tick = progress("single stream (cpp)", len(single_items)) if progress else None
            single = native_pass(
                server, tracer, single_items, prompt_lens, Load(concurrency=1), tick
            )
            load = options.load(settings.max_batch)
            tick = (
                progress(f"under load (cpp, {load.describe()})", len(items)) if progress else None
            )
            loaded = native_pass(server, tracer, items, prompt_lens, load, tick)
            served = server.stats()
        finally:
            server.close()
    finally:
        engine.close()
    weights = graph_weights(folder / read_engine_info(folder, EngineInfo).model)
    threads = settings.threads or usable_cpus()
    bandwidth = memory_bandwidth(threads, options.bandwidth_mib)
    runs = single.runs + loaded.runs
    one_row = [r.seconds for r in runs if r.kind == "decode" and r.rows == 1]
    prefills = [r for r in runs if r.kind == "prefill"]
    roof = roofline(
        weights,
        bandwidth,
        one_row or [r.seconds for r in runs if r.kind == "decode"],
        sum(r.seconds for r in prefills),
        sum(r.tokens for r in prefills),
    )
    described["load"] = load.describe()
    described["requests"] = len(items)
    absent = dict(ABSENT)
    if options.overhead:
        absent["overhead"] = "--overhead measures the Python runtime's phase recorder"
    if loaded.timing_absent or single.timing_absent:
        absent["latency.ttft_tpot_queue"] = str(loaded.timing_absent or single.timing_absent)
    unused = [
        k
        for k in settings.__dataclass_fields__
        if k not in USED_SETTINGS and getattr(settings, k) != getattr(ServingDefaults(), k)
    ]
    if unused:
        absent["settings"] = f"the C++ server has no {', '.join(unused)}; they were not used"
    return NativeProfile(
        str(bundle.path),
        name,
        entry.precision,
        settings,
        described,
        single,
        loaded,
        {**roof.to_dict(), "threads": threads, "matmul_params": weights.matmul_params},
        {
            "kv_cache_bytes": served["kv_cache_bytes"],
            "weights_bytes": weights.resident_bytes,
            "adapter_bytes": None,
            "prefix_cache_bytes": served["prefix_bytes"],
            "peak_rss_bytes": peak_rss(),
        },
        read_quality(folder),
        absent,
    )


def _prompt_lens(tasks: NativeTasks, items: list[WorkItem], bundle: str) -> list[int]:
    """Each item's prompt length as the server will build it; a clear error for items
    the server cannot take."""
    served = set(tasks.names())
    lens = []
    for item in items:
        if item.task is None:
            raise ConfigError(
                "--runtime cpp profiles libtinyllm's server, which answers the bundle's tasks; "
                "this workload sends plain completions (a bundle without tasks, or "
                "--prompt-len/--new-tokens). Use a workload of the bundle's tasks"
            )
        if item.task not in served:
            known = ", ".join(sorted(served)) or "no tasks (it was exported without tasks.json)"
            raise ConfigError(
                f"the workload sends task {item.task!r}, which the C++ runtime does not serve "
                f"from {bundle} (it serves: {known})"
            )
        lens.append(len(tasks.prompt(item.task, item.text or "")[0]))
    return lens
