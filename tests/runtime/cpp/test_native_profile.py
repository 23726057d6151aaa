"""`tinyllm profile --runtime cpp`: libtinyllm's run trace counts every run, the profile
of its server has the latency sections (and says what is absent, and why), and the
matching of prefill runs to requests refuses what does not line up."""

from __future__ import annotations

import ctypes
import itertools
import json
from pathlib import Path

import pytest

import tinyllm
from tinyllm.errors import ConfigError
from tinyllm.runtime.native import NativeEngine
from tinyllm.runtime.nativetrace import Run, RunTracer
from tinyllm.runtime.profilenative import Clients, busy_time, match_prefills
from tinyllm.runtime.profiletrace import check_trace
from tinyllm.runtime.sampling import GenerationConfig

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
        assert lat["queue_ms"]["p50"] >= 0 and lat["tpot_ms"]["p50"] > 0
        assert lat["throughput_tok_s"] > 0 and lat["output_tokens"] > 0
    for r in data["requests"]:
        assert 0 <= r["queue_ms"] <= r["ttft_ms"] <= r["e2e_ms"]
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


def _run(kind: str, tokens: int, start: float, end: float) -> Run:
    return Run(kind, 0, 1, tokens, 0, start, end)


def test_prefill_matching_checks_order_length_and_lifetime() -> None:
    clients = Clients([0.0, 1.0], [5.0, 6.0], [3, 3], [None, None], order=[1, 0])
    prompt_lens = [4, 7]
    runs = [_run("prefill", 7, 1.1, 1.2), _run("decode", 2, 1.3, 1.4), _run("prefill", 4, 1.5, 1.6)]
    matched, why = match_prefills(clients, prompt_lens, runs)
    assert why is None and matched == {1: runs[0], 0: runs[2]}
    swapped = Clients([0.0, 1.0], [5.0, 6.0], [3, 3], [None, None], order=[0, 1])
    assert match_prefills(swapped, prompt_lens, runs)[1] is not None
    early = [_run("prefill", 7, 0.5, 0.6), runs[2]]  # before its request was submitted
    matched, why = match_prefills(clients, prompt_lens, early)
    assert matched == {} and "do not line up" in str(why)
    matched, why = match_prefills(clients, prompt_lens, runs[:2])
    assert matched == {} and "1 prefill runs for 2 queued requests" in str(why)


def test_busy_time_is_the_union_of_request_lifetimes() -> None:
    clients = Clients([0.0, 1.0, 5.0, 5.5], [2.0, 3.0, 6.0, 5.7], [0] * 4, [None] * 4)
    assert busy_time(clients) == pytest.approx(3.0 + 1.0)
