"""``tinyllm profile --runtime cpp``: the C++ runtime (libtinyllm's server) under the same
workload as the Python runtime's profile, with the figures its C API can give.

Requests go to a :class:`~tinyllm.runtime.nativeserver.NativeServer` from client threads
(:mod:`tinyllm.runtime.nativepass`):
one at a time (single stream), then at a concurrency or an arrival rate (under load).
The engine's run trace (:mod:`tinyllm.runtime.nativetrace`) times every ONNX Runtime run.

- Latency: end to end and TTFT are what the client sees: TTFT is the time from submit to
  the first streamed piece of text (``on_text``), TPOT the rest of the request over its
  other tokens. Queue wait is submit to the start of the request's first prefill run,
  which the server records per request (``tinyllm_request_admitted``); it is checked
  against the trace (a prefill run must start then) and against the client's own times,
  and where they contradict each other, or the trace dropped runs, the pass's queue wait
  is reported absent with the reason.
- Phases: the server loop's own step timer (``tinyllm_server_get_loop_stats``: steps and
  their wall time) split into ONNX Runtime's prefill and decode runs (the engine's stats,
  ``tinyllm_engine_get_stats``) and the rest of the steps (taking new requests, sampling,
  constraints, scheduling, prefix-cache copies, streaming, resolving), which the C API
  does not split: the Python profile's semantics, per step and per generated token. The
  timers are checked against each other and the run trace
  (:func:`tinyllm.runtime.nativepass.timer_problems`).
- Operators: absent (libtinyllm does not turn on ONNX Runtime's profiler).
- Roofline and memory as the Python profile has them, from the trace and server stats.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinyllm.bundle import Bundle
from tinyllm.errors import ConfigError, TinyLLMError
from tinyllm.runtime import profilestats as stats
from tinyllm.runtime.engine import pick_engine
from tinyllm.runtime.enginefile import read_engine_info
from tinyllm.runtime.engineinfo import EngineInfo
from tinyllm.runtime.loadgen import Load
from tinyllm.runtime.native import NativeEngine, load_library
from tinyllm.runtime.nativepass import NativePass, native_pass, timer_problems
from tinyllm.runtime.nativeserver import NativeServer
from tinyllm.runtime.nativetasks import NativeTasks
from tinyllm.runtime.nativetrace import Run, RunTracer
from tinyllm.runtime.ortsession import usable_cpus
from tinyllm.runtime.profile import ProfileOptions, Progress, read_quality, workload_items
from tinyllm.runtime.roofline import graph_weights, peak_rss, roofline_section
from tinyllm.runtime.servingdefaults import ServingDefaults, read_defaults
from tinyllm.runtime.workload import WorkItem

OUTSIDE_LABEL = "outside ONNX Runtime (not split)"
ABSENT = {
    "operators": "libtinyllm does not turn on ONNX Runtime's profiler; the C++ runtime runs "
    "the same model file, so `--runtime python` shows its operators",
    "phases.split": "the C API times only the loop's steps and ONNX Runtime's runs: the rest "
    "of the steps (prompt ids and adapter of new requests, sampling, constraints, scheduling, "
    "prefix-cache copies, streaming, resolving) is one figure",
    "memory.adapter_bytes": "the C API does not report the adapter slots' memory",
    "sweep": "--sweep and --slo-p95-ms tune the Python runtime's serving settings",
}
USED_SETTINGS = ("threads", "max_batch", "queue_size", "prefix_cache_mb")


def latency(p: NativePass) -> dict[str, Any]:
    """The latency section of a pass: TTFT and TPOT over the requests that streamed
    text, queue wait None when the pass's is absent (``p.queue_absent``)."""
    result = stats.latency(p.requests, p.wall_s)
    for task, part in [(None, result), *result["per_task"].items()]:
        ok = [r for r in p.requests if r.error is None and task in (None, r.task)]
        timed = [r for r in ok if r.id in p.ttft]
        part["ttft_ms"] = stats.percentiles([p.ttft[r.id] for r in timed])
        part["tpot_ms"] = stats.percentiles([t for t in (r.tpot_s for r in timed) if t is not None])
        queued = [p.queue[r.id] for r in ok if r.id in p.queue]
        part["queue_ms"] = stats.percentiles(queued) if p.queue_absent is None else None
    return result


def phases(loaded: NativePass, single: NativePass) -> dict[str, Any]:
    """The loop's busy time (its steps): ONNX Runtime's prefill and decode runs, the rest."""
    prefill, decode = loaded.engine.prefill_seconds, loaded.engine.decode_seconds
    busy = loaded.loop.busy_seconds
    parts = [
        ("prefill_ort", "prefill: ONNX Runtime run", prefill),
        ("decode_ort", "decode: ONNX Runtime run", decode),
        ("outside_ort", OUTSIDE_LABEL, busy - prefill - decode),
    ]
    ok = [r for r in loaded.requests if r.error is None]
    queue = [r.phases["queue"] for r in ok if "queue" in r.phases and not loaded.queue_absent]
    return {
        "loop": [
            {"phase": k, "label": label, "seconds": s, "share": s / busy if busy > 0 else 0.0}
            for k, label, s in parts
        ],
        "busy_s": busy,
        "idle_s": max(loaded.wall_s - busy, 0.0),
        "profiler_s": None,
        "ort_s": prefill + decode,
        "outside_ort_share": (busy - prefill - decode) / busy if busy > 0 else 0.0,
        "per_request_ms": {"queue": 1e3 * float(np.mean(queue))} if queue else {},
        "client_s": None,
        "per_token": per_token(loaded),
        "single_stream_per_token": per_token(single),
        "per_step": per_step(loaded),
        "single_stream_per_step": per_step(single),
    }


def per_token(p: NativePass) -> dict[str, float]:
    """Time per generated token outside ONNX Runtime and inside it (ms), in the loop's
    steps (the Python profile's semantics)."""
    ort = p.engine.ort_seconds
    n = max(sum(r.output_tokens for r in p.requests if r.error is None), 1)
    return {"outside_ort_ms": 1e3 * (p.loop.busy_seconds - ort) / n, "ort_ms": 1e3 * ort / n}


def per_step(p: NativePass) -> dict[str, float]:
    """Time per loop step outside ONNX Runtime and inside it (ms), and the steps
    (decode_steps: those that ran a decode run)."""
    ort, n = p.engine.ort_seconds, max(p.loop.steps, 1)
    return {
        "outside_ort_ms": 1e3 * (p.loop.busy_seconds - ort) / n,
        "ort_ms": 1e3 * ort / n,
        "steps": p.loop.steps,
        "decode_steps": p.loop.decode_steps,
    }


def by_batch(runs: list[Run]) -> list[dict[str, float]]:
    """Decode runs that followed a decode run (decode-only loop steps), by rows computed:
    mean step time (start to next start, sampling included) and tokens/s."""
    groups: dict[int, list[float]] = {}
    for run, following in itertools.pairwise(runs):
        if run.kind == following.kind == "decode":
            groups.setdefault(run.rows, []).append(following.start - run.start)
    return stats.batch_table(groups)


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
                    "ttft_ms": _ms(self.loaded.ttft.get(r.id)),
                    "e2e_ms": 1e3 * r.e2e_s,
                    "queue_ms": _ms(self.loaded.queue.get(r.id)),
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
    load = options.load(settings.max_batch)
    single, loaded, served = _run_passes(bundle, name, settings, items, options, load, progress)
    for mode, p in (("single stream", single), ("under load", loaded)):
        problems = timer_problems(p)
        if problems:
            raise TinyLLMError(
                f"the C++ runtime's timers disagree ({mode}): {'; '.join(problems)}; "
                "nothing else may run this engine while it is profiled"
            )
    weights = graph_weights(folder / read_engine_info(folder, EngineInfo).model)
    runs = single.runs + loaded.runs
    one_row = [r.seconds for r in runs if r.kind == "decode" and r.rows == 1]
    prefills = [r for r in runs if r.kind == "prefill"]
    roof = roofline_section(
        weights,
        settings.threads or usable_cpus(),
        options.bandwidth_mib,
        one_row or [r.seconds for r in runs if r.kind == "decode"],  # one-row runs if any
        sum(r.seconds for r in prefills),
        sum(r.tokens for r in prefills),
    )
    return NativeProfile(
        str(bundle.path),
        name,
        entry.precision,
        settings,
        {**described, "load": load.describe(), "requests": len(items)},
        single,
        loaded,
        roof,
        {
            "kv_cache_bytes": served["kv_cache_bytes"],
            "weights_bytes": weights.resident_bytes,
            "adapter_bytes": None,
            "prefix_cache_bytes": served["prefix_bytes"],
            "peak_rss_bytes": peak_rss(),
        },
        read_quality(folder),
        _absent(options, settings, single, loaded),
    )


def _run_passes(
    bundle: Bundle,
    name: str,
    settings: ServingDefaults,
    items: list[WorkItem],
    options: ProfileOptions,
    load: Load,
    progress: Progress | None,
) -> tuple[NativePass, NativePass, dict[str, Any]]:
    """The single-stream pass and the pass under ``load`` on one server of engine
    ``name``, and the server's stats after them."""
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
            tick = (
                progress(f"under load (cpp, {load.describe()})", len(items)) if progress else None
            )
            loaded = native_pass(server, tracer, items, prompt_lens, load, tick)
            return single, loaded, server.stats()
        finally:
            server.close()
    finally:
        engine.close()


def _absent(
    options: ProfileOptions, settings: ServingDefaults, single: NativePass, loaded: NativePass
) -> dict[str, str]:
    """What the profile leaves out (section -> why): ABSENT, and what these passes and
    options add to it."""
    absent = dict(ABSENT)
    if options.overhead:
        absent["overhead"] = "--overhead measures the Python runtime's phase recorder"
    for mode, p in (("single_stream", single), ("under_load", loaded)):
        if p.queue_absent:
            absent[f"latency.{mode}.queue"] = p.queue_absent
        silent = sum(r.error is None and r.id not in p.ttft for r in p.requests)
        if silent:
            absent[f"latency.{mode}.ttft"] = (
                f"{silent} requests streamed no text (an empty answer): they have no TTFT or TPOT"
            )
    unused = [
        k
        for k in settings.__dataclass_fields__
        if k not in USED_SETTINGS and getattr(settings, k) != getattr(ServingDefaults(), k)
    ]
    if unused:
        absent["settings"] = f"the C++ server has no {', '.join(unused)}; they were not used"
    return absent


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1e3 * seconds


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
