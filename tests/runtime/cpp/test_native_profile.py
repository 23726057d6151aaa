"""`tinyllm profile --runtime cpp`: libtinyllm's run trace counts every run, the profile
of its server has the latency sections (and says what is absent, and why), and the
attribution of prefill runs to requests refuses what does not line up and guesses nothing."""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import tinyllm
from tinyllm.errors import ConfigError
from tinyllm.runtime.native import NativeEngine, NativeStats
from tinyllm.runtime.nativepass import (
    Clients,
    NativePass,
    busy_time,
    client_timing,
    timer_problems,
)
from tinyllm.runtime.nativetrace import LoopStats, Run, RunTracer
from tinyllm.runtime.profile import ProfileOptions
from tinyllm.runtime.profilenative import profile_native
from tinyllm.runtime.profiletrace import check_trace
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.runtime.servingdefaults import ServingDefaults

FAST = {"threads": 1, "bandwidth_mib": 16, "progress": False, "runtime": "cpp"}


def test_the_trace_times_every_run(lib: ctypes.CDLL, served: Path) -> None:
    engine = NativeEngine(lib, served, max_batch=2, threads=1)
    tracer = RunTracer(engine)
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    config = GenerationConfig(max_new_tokens=5, ignore_eos=True)
    engine.generate(prompts, config)  # not traced
    assert tracer.take() == ([], 0)
    tracer.start()
    before = tracer.clock()
    engine.generate(prompts, config)
    after = tracer.clock()
    runs, dropped = tracer.take()
    tracer.stop()
    engine.generate(prompts, config)  # stopped: not traced
    assert tracer.take() == ([], 0)
    engine.close()
    # Two chunks (2 rows, then 1): a prefill each, then 4 decode steps for the other 4 tokens.
    assert dropped == 0
    assert [(r.kind, r.rows, r.tokens) for r in runs] == (
        [("prefill", 2, 5)] + [("decode", 2, 2)] * 4 + [("prefill", 1, 4)] + [("decode", 1, 1)] * 4
    )
    assert all(r.past == 0 and r.first_row == 0 for r in runs)
    assert before <= runs[0].start and runs[-1].end <= after
    assert all(a.end <= b.start for a, b in itertools.pairwise(runs))
    assert all(r.seconds > 0 for r in runs)


def test_cpp_profile_has_the_latency_sections(
    lib: ctypes.CDLL, served: Path, tmp_path: Path
) -> None:
    report = tinyllm.api.profile(served, requests=10, concurrency=3, out=tmp_path, **FAST)
    data = json.loads((tmp_path / "profile.json").read_text())
    assert data["runtime"] == "cpp"
    for mode, n in (("single_stream", 4), ("under_load", 10)):
        lat = data["latency"][mode]
        assert lat["requests"] == n and lat["failed"] == 0, lat["errors"]
        assert 0 < lat["ttft_ms"]["p50"] <= lat["e2e_ms"]["p50"]
        assert lat["tpot_ms"]["p50"] > 0
        assert lat["throughput_tok_s"] > 0 and lat["output_tokens"] > 0
        # Queue wait for every request, single stream and under load (the server says
        # when each request's first prefill run started).
        assert lat["queue_ms"]["p50"] >= 0, data["absent"]
        assert f"latency.{mode}.queue" not in data["absent"]
    assert all(r["ttft_ms"] is not None for r in data["requests"])
    for r in data["requests"]:
        assert 0 < r["ttft_ms"] <= r["e2e_ms"]
        assert 0 <= r["queue_ms"] <= r["ttft_ms"]
    # Three concurrent clients on a server of max_batch 8: someone waited less than the
    # whole run, and decode steps ran more than one row.
    assert max(b["rows"] for b in data["batch"]) > 1
    phases = {p["phase"]: p["seconds"] for p in data["phases"]["loop"]}
    assert phases["prefill_ort"] > 0 and phases["decode_ort"] > 0 and phases["outside_ort"] >= 0
    assert sum(phases.values()) == pytest.approx(data["phases"]["busy_s"])
    assert 0 < data["phases"]["outside_ort_share"] < 1
    assert data["operators"] is None and "ONNX Runtime's profiler" in data["absent"]["operators"]
    assert data["memory"]["kv_cache_bytes"] > 0 and data["memory"]["adapter_bytes"] is None
    assert data["roofline"]["decode_step_ms"] > 0 and data["roofline"]["prefill_tokens"] > 0
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert check_trace(trace) == []
    names = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert {"prefill", "decode"} <= names
    assert "report.html" in {p.name for p in report.files.values()}
    text = report.format()
    assert "cpp runtime" in text and "absent  operators:" in text
    assert "ms of C++ per generated token" in text


def test_cpp_profile_refuses_what_the_server_cannot_serve(
    lib: ctypes.CDLL, served: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="answers the bundle's tasks; this workload sends"):
        tinyllm.api.profile(served, out=None, requests=2, prompt_len=8, new_tokens=2, **FAST)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"task": "weather", "input": "rain"}\n')
    with pytest.raises(ConfigError, match="sends task 'weather', which the C\\+\\+ runtime"):
        tinyllm.api.profile(served, out=None, requests=2, workload=str(odd), **FAST)


def _run(kind: str, tokens: int, start: float, end: float, rows: int = 1, past: int = 0) -> Run:
    return Run(kind, 0, rows, tokens, past, start, end)


def _clients(submitted: list[float], done: list[float]) -> Clients:
    n = len(submitted)
    return Clients(submitted, done, [3] * n, [None] * n, [None] * n, [None] * n)


def test_client_timing_takes_queue_wait_from_the_server_and_checks_it() -> None:
    clients = Clients(
        [0.0, 1.0, 2.0], [0.9, 1.9, 2.9], [3, 3, 0], [None, None, None], [0.5, 1.25, None],
        [0.1, 1.1, 2.1],
    )  # fmt: skip
    runs = [
        _run("prefill", 4, 0.1, 0.2),
        _run("prefill", 7, 1.1, 1.2),
        _run("prefill", 2, 2.1, 2.2),
    ]
    ttft, queue, why = client_timing(clients, runs, dropped=0)
    assert why is None
    assert ttft == pytest.approx({0: 0.5, 1: 0.25})  # request 2 streamed no text: no TTFT
    assert queue == pytest.approx({0: 0.1, 1: 0.1, 2: 0.1})
    # Two requests admitted together into one two-row prefill run: both are known.
    together = Clients([0.0, 0.05], [0.9, 0.9], [3, 3], [None, None], [0.5, 0.5], [0.1, 0.1])
    _, queue, why = client_timing(together, [_run("prefill", 9, 0.1, 0.2, rows=2)], 0)
    assert why is None and queue == pytest.approx({0: 0.1, 1: 0.05})
    # A failed request needs no admission time.
    clients.errors[2], clients.admitted[2] = "E", None
    _, queue, why = client_timing(clients, runs, dropped=0)
    assert why is None and set(queue) == {0, 1}


def test_client_timing_refuses_times_that_contradict_each_other() -> None:
    def clients(admitted: list[float | None], first_text: list[float | None]) -> Clients:
        return Clients([0.0, 1.0], [0.9, 1.9], [3, 3], [None, None], first_text, admitted)

    runs = [_run("prefill", 4, 0.1, 0.2), _run("prefill", 7, 1.1, 1.2)]
    _, queue, why = client_timing(clients([0.1, 1.1], [0.5, 1.5]), runs, dropped=0)
    assert why is None and len(queue) == 2
    cases = {
        "answered without a time": ([0.1, None], [0.5, 1.5], runs),
        "outside its submit-to-first-text span": ([0.1, 0.95], [0.5, 1.5], runs),  # < submit
        "outside its submit": ([0.1, 1.6], [0.5, 1.5], runs),  # after its first text
        "no prefill run started": ([0.1, 1.1], [0.5, 1.5], runs[:1]),  # trace lacks it
    }
    for reason, (admitted, first_text, trace) in cases.items():
        _, queue, why = client_timing(clients(admitted, first_text), trace, dropped=0)
        assert queue == {} and reason in str(why), (reason, why)
    _, queue, why = client_timing(clients([0.1, 1.1], [0.5, 1.5]), runs, dropped=3)
    assert queue == {} and "dropped 3 runs" in str(why)


def test_busy_time_is_the_union_of_request_lifetimes() -> None:
    clients = _clients([0.0, 1.0, 5.0, 5.5], [2.0, 3.0, 6.0, 5.7])
    assert busy_time(clients) == pytest.approx(3.0 + 1.0)


def test_cpp_profile_queue_waits_over_max_batch(lib: ctypes.CDLL, served: Path) -> None:
    """Six clients on two KV rows: requests wait for a row, and each one's queue wait is
    the server's own (submit to its first prefill run), between 0 and its latency. The
    loop's step timer splits its busy time at ONNX Runtime's runs, per step and per token."""
    options = ProfileOptions(
        runtime="cpp", requests=12, concurrency=6, single_stream=2, ops=False, bandwidth_mib=16
    )
    profile = profile_native(
        tinyllm.open_bundle(served), options, ServingDefaults(threads=1, max_batch=2)
    )
    data = profile.to_dict()
    assert not any(k.startswith("latency.") for k in data["absent"]), data["absent"]
    rows = data["requests"]
    assert len(rows) == 12 and all(r["error"] is None for r in rows)
    for r in rows:
        assert 0 <= r["queue_ms"] <= r["ttft_ms"] <= r["e2e_ms"], r
    waits = sorted(r["queue_ms"] for r in rows)
    # At most two run at once: at least four of six clients waited at the start.
    assert sum(w > 0.1 for w in waits) >= 4, waits
    assert data["latency"]["under_load"]["queue_ms"]["p90"] == pytest.approx(
        float(np.percentile(waits, 90))
    )
    assert max(b["rows"] for b in data["batch"]) <= 2
    ph = data["phases"]
    for mode in ("per_step", "single_stream_per_step"):
        step = ph[mode]
        assert 0 < step["decode_steps"] <= step["steps"], step
        assert step["outside_ort_ms"] > 0 and step["ort_ms"] > 0
    # The same busy time, per token or per step; shares of the loop's own busy time.
    tokens = data["latency"]["under_load"]["output_tokens"]
    outside = ph["per_step"]["outside_ort_ms"] * ph["per_step"]["steps"]
    assert ph["per_token"]["outside_ort_ms"] * tokens == pytest.approx(outside)
    assert ph["outside_ort_share"] == pytest.approx(outside / 1e3 / ph["busy_s"])
    assert timer_problems(profile.loaded) == [] and timer_problems(profile.single) == []


def test_timer_problems_name_each_disagreement() -> None:
    runs = [_run("prefill", 4, 0.0, 0.1), _run("decode", 1, 0.2, 0.3)]
    engine = NativeStats(1, 1, 4, 2, 0.1, 0.1, 0.0)
    good = NativePass([], runs, 1.0, 1.0, {}, {}, None, engine, LoopStats(2, 1, 0.5, 1))
    assert timer_problems(good) == []
    cases = {
        "the engine counted 3 runs, the trace 2": {"engine": NativeStats(2, 1, 4, 2, 0.1, 0.1, 0)},
        "the engine timed 0.100000 s of runs, the trace 0.200000 s": {
            "engine": NativeStats(1, 1, 4, 2, 0.05, 0.05, 0)
        },
        "do not fit in the loop's 0.150000 s of steps": {"loop": LoopStats(2, 1, 0.15, 1)},
        "1 decode runs, but the loop counted 2 decode steps of 2": {
            "loop": LoopStats(2, 2, 0.5, 1)
        },
        "decode runs computed 1 rows, the loop counted 2": {"loop": LoopStats(2, 1, 0.5, 2)},
    }
    for reason, change in cases.items():
        problems = timer_problems(dataclasses.replace(good, **change))
        assert any(reason in p for p in problems), (reason, problems)
    # Runs the trace dropped are not counted against it; the loop still holds the runs.
    assert timer_problems(dataclasses.replace(good, runs=runs[:1], dropped=1)) == []
