"""``tinyllm profile``: where the time goes when an engine serves, on this machine.

One profile of one bundle's engine runs three passes over the same workload:

1. single stream: requests one at a time (latency without queueing);
2. under load: a fixed concurrency or an arrival rate, with the decode loop's phases
   recorded per step and per request (:mod:`tinyllm.runtime.steprecorder`);
3. operators: a few requests on a session with ONNX Runtime's profiler on
   (:mod:`tinyllm.runtime.opprofile`; the profiler's cost stays out of passes 1-2).

Then the machine's read bandwidth is measured for the roofline
(:mod:`tinyllm.runtime.roofline`). Sweeps and comparisons repeat pass 2 per setting
(:mod:`tinyllm.runtime.profilesweep`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.bundle import Bundle
from tinyllm.errors import ConfigError
from tinyllm.runtime import profilestats as stats
from tinyllm.runtime.engine import Engine, pick_engine
from tinyllm.runtime.loadgen import Load, Outcome, drive
from tinyllm.runtime.opprofile import OpProfile, label_graph, read_profile
from tinyllm.runtime.ortsession import make_session, usable_cpus
from tinyllm.runtime.profileoptions import ProfileOptions as ProfileOptions
from tinyllm.runtime.roofline import graph_weights, peak_rss, roofline_section
from tinyllm.runtime.servingdefaults import ServingDefaults, read_defaults
from tinyllm.runtime.steprecorder import PhaseRecorder, RequestRecord, StepRecord, TimedSession
from tinyllm.runtime.workload import (
    DEFAULT_NEW_TOKENS,
    DEFAULT_PROMPT_LEN,
    WorkItem,
    read_jsonl,
    read_suite,
    synthetic,
    task_mix,
)
from tinyllm.tasks import BUILTIN

Progress = Callable[[str, int], Callable[[], None]]  # (pass name, total) -> tick


@dataclass
class PassResult:
    """What one pass recorded."""

    recorder: PhaseRecorder
    outcomes: list[Outcome]
    wall_s: float

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests, in the order they ended."""
        return self.recorder.requests

    @property
    def steps(self) -> list[StepRecord]:
        """The loop's steps."""
        return self.recorder.steps


@dataclass
class EngineProfile:
    """The profile of one engine under one setting."""

    bundle: str
    engine: str
    precision: str
    settings: ServingDefaults
    workload: dict[str, Any]
    single: PassResult
    loaded: PassResult
    ops: OpProfile | None
    op_pass: PassResult | None
    roofline: dict[str, Any]
    memory: dict[str, Any]
    quality: dict[str, Any]
    overhead: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        load = self.loaded
        self.summary = {
            "single_stream": stats.latency(self.single.requests, self.single.wall_s),
            "under_load": stats.latency(load.requests, load.wall_s),
            "phases": stats.phases(load.recorder.totals(), load.requests),
            "per_token": stats.per_token(
                load.steps, sum(r.output_tokens for r in load.requests if r.error is None)
            ),
            "single_stream_per_token": stats.per_token(
                self.single.steps, sum(r.output_tokens for r in self.single.requests)
            ),
            "per_step": stats.per_step(load.steps),
            "single_stream_per_step": stats.per_step(self.single.steps),
            "by_batch": stats.by_batch(load.steps),
            "wall_s": load.wall_s,
        }


def workload_items(
    options: ProfileOptions, bundle: Bundle
) -> tuple[list[WorkItem], dict[str, Any], dict[str, Any]]:
    """The workload's requests, its description, and task specs it brings (suites)."""
    n, source = options.requests, options.workload
    if source == BUILTIN:
        tasks = sorted(bundle.manifest.tasks)
        exact = options.prompt_len is not None or options.new_tokens is not None
        if exact or not tasks:
            p = options.prompt_len or DEFAULT_PROMPT_LEN
            t = options.new_tokens or DEFAULT_NEW_TOKENS
            items = synthetic(n, p, t, bundle.config.vocab_size, options.seed)
            return items, {"kind": "builtin", "prompt_tokens": p, "new_tokens": t}, {}
        return task_mix(tasks, n, options.seed), {"kind": "builtin", "tasks": tasks}, {}
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"workload {source!r} is not 'builtin' and no such file exists; give a suite "
            "YAML or a JSONL file of requests"
        )
    if path.suffix in (".yaml", ".yml"):
        items, specs = read_suite(path, n)
        return items, {"kind": "suite", "path": str(path)}, specs
    items = read_jsonl(path, None)
    items = [items[i % len(items)] for i in range(n)]
    return items, {"kind": "jsonl", "path": str(path)}, {}


def profile_engine(
    bundle: Bundle,
    options: ProfileOptions,
    settings: ServingDefaults | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
) -> EngineProfile:
    """Profile one engine of ``bundle`` (see the module docstring for the passes).

    Args:
        bundle: an exported bundle.
        options: the workload and passes.
        settings: serving settings (default: the engine's serving.json, else built-in),
            with ``options``' engine threads.
        out: where ONNX Runtime writes its raw profile (default: a temporary folder).
        progress: makes a progress callback per pass.
    """
    entry = pick_engine(bundle, options.engine, "cpu")
    name = entry.path.rstrip("/").split("/")[-1]
    folder = bundle.path / entry.path
    settings = settings or read_defaults(folder)
    items, described, specs = workload_items(options, bundle)
    engine = load_engine(bundle, name, settings, items, specs)
    try:
        weights = graph_weights(folder / engine.info.model)
        single = run_pass(
            engine, items[: options.single_stream], Load(concurrency=1), progress, "single stream"
        )
        load = options.load(settings.max_batch)
        loaded = run_pass(engine, items, load, progress, f"under load ({load.describe()})")
        overhead = (
            measure_overhead(engine, items, load, options.overhead_rounds)
            if options.overhead
            else None
        )
        memory = _memory(engine, weights.resident_bytes)
    finally:
        engine.close()
    ops, op_pass = None, None
    if options.ops:
        ops, op_pass = _op_pass(bundle, name, settings, items[: options.op_requests], specs, out)
    roof = roofline_section(
        weights,
        settings.threads or usable_cpus(),
        options.bandwidth_mib,
        stats.decode_runs(single.steps + loaded.steps),
        *stats.prefill_work(loaded.steps),
    )
    return EngineProfile(
        str(bundle.path),
        name,
        entry.precision,
        settings,
        {**described, "load": load.describe(), "requests": len(items)},
        single,
        loaded,
        ops,
        op_pass,
        roof,
        {**memory, "peak_rss_bytes": peak_rss()},
        read_quality(folder),
        overhead,
    )


def load_engine(
    bundle: Bundle,
    name: str,
    settings: ServingDefaults,
    items: list[WorkItem],
    specs: dict[str, Any],
) -> Engine:
    """The engine with ``settings``, serving every task the workload names."""
    engine = Engine.load(bundle, engine=name, **_kwargs(settings))
    served = engine.tasks
    for task in sorted({i.task for i in items if i.task is not None} - set(served)):
        if task not in specs:
            engine.close()
            known = ", ".join(sorted(served)) or "no tasks"
            raise ConfigError(
                f"the workload sends task {task!r}, which {bundle.path} does not serve "
                f"(it serves: {known}); use a workload of its tasks, or a suite YAML"
            )
        engine.add_task(specs[task])  # a suite's task the bundle lacks: the base model
    return engine


def _kwargs(settings: ServingDefaults) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in settings.__dataclass_fields__}


def run_pass(
    engine: Engine,
    items: list[WorkItem],
    load: Load,
    progress: Progress | None = None,
    label: str = "",
) -> PassResult:
    """Send ``items`` with a fresh recorder attached; the recorder detached after."""
    session = engine.session
    original = session.sess
    timed = original if isinstance(original, TimedSession) else TimedSession(original)
    session.use_session(timed)
    recorder = PhaseRecorder(timed)
    tick = progress(label, len(items)) if progress is not None else None
    engine.record(recorder)
    try:
        outcomes, wall = drive(engine, items, load, (lambda _: tick()) if tick else None)
        recorder.settle()
    finally:
        engine.record(None)
        session.use_session(original)  # unrecorded runs run on the session as it was
    return PassResult(recorder, outcomes, wall)


def _op_pass(
    bundle: Bundle,
    name: str,
    settings: ServingDefaults,
    items: list[WorkItem],
    specs: dict[str, Any],
    out: Path | None,
) -> tuple[OpProfile, PassResult]:
    """Pass 3: the same requests on a session with ONNX Runtime's profiler on."""
    folder = bundle.path / pick_engine(bundle, name, "cpu").path
    engine = load_engine(bundle, name, settings, items, specs)
    try:
        edited, labels = label_graph(folder / engine.info.model)
        where = out or Path(tempfile.mkdtemp(prefix="tinyllm-profile-"))
        where.mkdir(parents=True, exist_ok=True)
        session = make_session(
            folder / engine.info.model,
            "cpu",
            settings.threads,
            edited=edited,
            profile_prefix=str(where / "ort-profile"),
        )
        engine.session.use_session(TimedSession(session))
        result = run_pass(engine, items, Load(concurrency=settings.max_batch))
        path = Path(session.end_profiling())
    finally:
        engine.close()
    runs = sorted((r for s in result.steps for r in s.runs), key=lambda r: r[1])
    origin = result.steps[0].start if result.steps else 0.0
    return read_profile(path, labels, runs, origin), result


def measure_overhead(
    engine: Engine, items: list[WorkItem], load: Load, rounds: int
) -> dict[str, Any]:
    """What recording costs: pass 2 without the recorder (A) and with it (B), interleaved
    for ``rounds`` rounds whose order alternates (AB, BA, AB, ...), so that drift and
    warm-up fall on both. Per round, the median end-to-end latency of each (the engine's
    own ``TaskOutput.latency_s``); see :func:`profilestats.ab_overhead`."""
    plain: list[float] = []
    recorded: list[float] = []
    for k in range(rounds):
        for record in (False, True) if k % 2 == 0 else (True, False):
            if record:
                outcomes = run_pass(engine, items, load).outcomes
            else:
                outcomes, _ = drive(engine, items, load)
            latencies = [o.output.latency_s for o in outcomes if o.output is not None]
            (recorded if record else plain).append(float(np.median(latencies)))
    return stats.ab_overhead(plain, recorded)


def _memory(engine: Engine, weights: int) -> dict[str, Any]:
    """What the engine holds: KV cache, weights, adapter slots, prefix cache."""
    served = engine.stats()
    return {
        "kv_cache_bytes": served["kv_cache_bytes"],
        "weights_bytes": weights,
        "adapter_bytes": sum(int(a.nbytes) for a in engine.session.lora.values()),
        "prefix_cache_bytes": served["prefix_cache"]["bytes"],
    }


def read_quality(folder: Path) -> dict[str, Any]:
    """What the engine's export recorded of its quality (verification.json), if any."""
    path = folder / "verification.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        checks = data["checks"]
        return {
            "source": "export verification (engine vs torch model, teacher-forced)",
            "passed": bool(data["passed"]),
            "greedy_agreement": float(np.mean([c["greedy_agreement"] for c in checks])),
            "max_abs_err": float(max(c["max_abs_err"] for c in checks)),
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return {"source": f"{path} (unreadable)"}
