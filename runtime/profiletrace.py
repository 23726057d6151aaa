"""The Chrome/Perfetto trace of a profile (``trace.json``; open it in ui.perfetto.dev or
chrome://tracing).

For the C++ runtime (:func:`native_trace`), process 1 is the single-stream pass and
process 2 the pass under load: ONNX Runtime's runs (from libtinyllm's run trace) and
each request.

Process 1 is the operators pass: the decode loop's steps and their phases, ONNX
Runtime's runs and every kernel (its profiler's events, moved onto the loop's clock),
and each request from arrival to its last token. Process 2 is the pass under load,
without ONNX Runtime's profiler: steps, phases and requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tinyllm.runtime.nativepass import NativePass
from tinyllm.runtime.profile import EngineProfile, PassResult
from tinyllm.runtime.profilenative import NativeProfile
from tinyllm.runtime.steprecorder import LABELS, RequestRecord

LOOP, ORT_RUNS, ORT_KERNELS, REQUESTS = 1, 2, 3, 10


def chrome_trace(profile: EngineProfile) -> dict[str, Any]:
    """The trace as a JSON-ready dict (``traceEvents`` in microseconds)."""
    events: list[dict[str, Any]] = []
    if profile.op_pass is not None and profile.ops is not None:
        events += _meta(1, "operators pass (ONNX Runtime profiler on)")
        events += _meta_thread(1, ORT_RUNS, "ONNX Runtime runs")
        events += _meta_thread(1, ORT_KERNELS, "ONNX Runtime kernels")
        events += _pass_events(profile.op_pass, 1)
        for e in profile.ops.events:
            tid = ORT_KERNELS if e["tid"] == 2 else ORT_RUNS
            events.append({**e, "pid": 1, "tid": tid})
    events += _meta(2, "under load")
    events += _pass_events(profile.loaded, 2)
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def native_trace(profile: NativeProfile) -> dict[str, Any]:
    """The C++ runtime's trace: per pass, ONNX Runtime's runs and each request."""
    events: list[dict[str, Any]] = []
    for pid, name, result in (
        (1, "single stream", profile.single),
        (2, "under load", profile.loaded),
    ):
        events += _meta(pid, f"{name} (C++ runtime)")
        events += _native_events(result, pid)
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def _native_events(result: NativePass, pid: int) -> list[dict[str, Any]]:
    starts = [r.start for r in result.requests] + [r.start for r in result.runs]
    if not starts:
        return []
    origin = min(starts)

    def us(t: float) -> float:
        return (t - origin) * 1e6

    events = _meta_thread(pid, ORT_RUNS, "ONNX Runtime runs")
    for run in result.runs:
        args = {"first_row": run.first_row, "rows": run.rows, "tokens": run.tokens}
        if run.kind == "prefill":
            args["past"] = run.past
        events.append(_x(run.kind, "run", us(run.start), us(run.end), pid, ORT_RUNS, args))
    return events + _request_events(result.requests, pid, us, result.ttft)


def _meta(pid: int, name: str) -> list[dict[str, Any]]:
    return [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}}]


def _meta_thread(pid: int, tid: int, name: str) -> list[dict[str, Any]]:
    return [{"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}]


def _pass_events(result: PassResult, pid: int) -> list[dict[str, Any]]:
    """Steps with their phases on the loop's thread, requests on lanes of their own."""
    steps, requests = result.steps, result.requests
    if not steps:
        return []
    origin = min([steps[0].start, *(r.start for r in requests)])
    events = _meta_thread(pid, LOOP, "decode loop")

    def us(t: float) -> float:
        return (t - origin) * 1e6

    for i, step in enumerate(steps):
        events.append(
            _x(
                f"step {i}",
                "step",
                us(step.start),
                us(step.end),
                pid,
                LOOP,
                {
                    "prefill_rows": step.prefill_rows,
                    "prefill_tokens": step.prefill_tokens,
                    "decode_rows": step.decode_rows,
                },
            )
        )
        for name, a, b in step.laps:
            events.append(_x(LABELS.get(name, name), "phase", us(a), us(b), pid, LOOP))
    return events + _request_events(requests, pid, us)


def _request_events(
    requests: list[RequestRecord],
    pid: int,
    us: Callable[[float], float],
    ttft: dict[int, float] | None = None,
) -> list[dict[str, Any]]:
    """Each request from arrival to its end, on the first lane free at its arrival
    (``ttft``: by request id where only some have one, as the C++ runtime's)."""
    events: list[dict[str, Any]] = []
    lanes: list[float] = []
    for r in sorted(requests, key=lambda r: r.start):
        lane = next((k for k, end in enumerate(lanes) if end <= r.start), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
            events += _meta_thread(pid, REQUESTS + lane, f"requests {lane}")
        lanes[lane] = r.start + r.e2e_s
        args = {
            "prompt_tokens": r.prompt_tokens,
            "output_tokens": r.output_tokens,
            "ttft_ms": 1e3 * r.ttft_s if ttft is None else _ms(ttft.get(r.id)),
            "error": r.error,
        }
        events.append(
            _x(
                f"{r.task} #{r.id}",
                "request",
                us(r.start),
                us(r.start + r.e2e_s),
                pid,
                REQUESTS + lane,
                args,
            )
        )
    return events


def _x(
    name: str,
    cat: str,
    start: float,
    end: float,
    pid: int,
    tid: int,
    args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete ("X") event."""
    event = {"name": name, "cat": cat, "ph": "X", "ts": start, "dur": max(end - start, 0.0)}
    event.update(pid=pid, tid=tid)
    if args:
        event["args"] = args
    return event


def check_trace(data: Any) -> list[str]:
    """What makes ``data`` an invalid Chrome trace (empty: valid): the event list, each
    event's fields, and complete events of a thread nesting without partial overlaps."""
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        return ["not an object with a traceEvents list"]
    problems: list[str] = []
    threads: dict[tuple[Any, Any], list[tuple[float, float, str]]] = {}
    for i, e in enumerate(data["traceEvents"]):
        missing = [k for k in ("name", "ph", "pid", "tid") if k not in e]
        if missing:
            problems.append(f"event {i} lacks {missing[0]!r}")
            continue
        if e["ph"] == "X":
            ts, dur = e.get("ts"), e.get("dur")
            if not isinstance(ts, int | float) or not isinstance(dur, int | float) or dur < 0:
                problems.append(f"event {i} ({e['name']}) has a bad ts/dur")
                continue
            threads.setdefault((e["pid"], e["tid"]), []).append((ts, ts + dur, e["name"]))
        elif e["ph"] != "M":
            problems.append(f"event {i} has phase {e['ph']!r}, expected X or M")
    slack = 1.0  # µs: clocks are rounded
    for (pid, tid), spans in threads.items():
        stack: list[float] = []
        for start, end, name in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start + slack:
                stack.pop()
            if stack and end > stack[-1] + slack:
                problems.append(f"pid {pid} tid {tid}: {name!r} overlaps its parent's end")
            stack.append(end)
    return problems


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1e3 * seconds
