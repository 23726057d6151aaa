"""`tinyllm profile --runtime cpp`: libtinyllm's run trace counts every run, the profile
of its server has the latency sections (and says what is absent, and why), and the
attribution of prefill runs to requests refuses what does not line up and guesses nothing."""

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
from tinyllm.runtime.profilenative import Clients, busy_time, client_timing, first_prefills
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
        assert lat["tpot_ms"]["p50"] > 0
        assert lat["throughput_tok_s"] > 0 and lat["output_tokens"] > 0
        # Queue wait is reported only when every request's first prefill run is known.
        if lat["queue_ms"] is None:
            assert "not guessed" in data["absent"][f"latency.{mode}.queue"]
        else:
            assert lat["queue_ms"]["p50"] >= 0
    # One request at a time: each prefill run has one request in flight, so it is known.
    assert data["latency"]["single_stream"]["queue_ms"]["p50"] >= 0
    assert all(r["ttft_ms"] is not None for r in data["requests"])
    for r in data["requests"]:
        assert 0 < r["ttft_ms"] <= r["e2e_ms"]
        assert r["queue_ms"] is None or 0 <= r["queue_ms"] <= r["ttft_ms"]
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
    return Clients(submitted, done, [3] * n, [None] * n, [None] * n)


def test_first_prefills_are_found_only_where_unambiguous() -> None:
    prompt_lens = [4, 7, 5]
    # 0 alone, then 1 and 2 in flight together and prefilled in one two-row run.
    clients = _clients([0.0, 1.0, 1.0], [0.9, 6.0, 6.0])
    runs = [
        _run("prefill", 4, 0.1, 0.2),
        _run("decode", 1, 0.3, 0.4),
        _run("prefill", 12, 1.1, 1.2, rows=2),
        _run("decode", 2, 1.3, 1.4),
    ]
    first, why = first_prefills(clients, prompt_lens, runs)
    assert why is None and first == {0: runs[0], 1: runs[2], 2: runs[2]}
    # A chunk of 1's prompt alone while 2 waits: whose first run it was cannot be told,
    # and a later run does not make it known.
    chunked = [runs[0], _run("prefill", 4, 1.1, 1.2), _run("prefill", 8, 1.3, 1.4, rows=2)]
    first, why = first_prefills(clients, prompt_lens, chunked)
    assert first == {0: runs[0]} and "2 of 3 requests' first prefill run" in str(why)
    assert "not guessed" in str(why)
    # A failed request does not need to be known.
    failed = Clients([0.0, 1.0, 1.0], [0.9, 6.0, 6.0], [3] * 3, [None, None, "E"], [None] * 3)
    first, why = first_prefills(failed, prompt_lens, chunked)
    assert first == {0: runs[0]} and "1 of 2 requests'" in str(why)


def test_first_prefills_refuse_a_trace_that_contradicts_the_requests() -> None:
    prompt_lens = [4, 7]
    clients = _clients([0.0, 1.0], [5.0, 6.0])
    ok = [_run("prefill", 4, 0.1, 0.2), _run("prefill", 7, 1.1, 1.2)]
    first, why = first_prefills(clients, prompt_lens, ok)  # consistent, 1's run ambiguous
    assert first == {0: ok[0]} and "1 of 2 requests'" in str(why)
    early = [_run("prefill", 4, -0.5, -0.4), *ok]  # before any request was submitted
    first, why = first_prefills(clients, prompt_lens, early)
    assert first == {} and "had 0 requests in flight" in str(why)
    wide = [_run("prefill", 4, 0.1, 0.2, rows=2), ok[1]]  # two rows, one request in flight
    first, why = first_prefills(clients, prompt_lens, wide)
    assert first == {} and "2 rows" in str(why) and "1 requests in flight" in str(why)
    long = [_run("prefill", 3, 0.1, 0.2, past=2), ok[1]]  # 5 tokens for a 4-token prompt
    first, why = first_prefills(clients, prompt_lens, long)
    assert first == {} and "request 0 (a prompt of 4 tokens)" in str(why)
    few = ok[:1]  # request 1 answered without a prefill run
    lone = _clients([0.0, 1.0], [0.9, 6.0])
    first, why = first_prefills(lone, prompt_lens, few)
    assert first == {} and "request 1 was answered without a prefill run" in str(why)
    first, why = first_prefills(lone, prompt_lens, ok)
    assert why is None and first == {0: ok[0], 1: ok[1]}


def test_client_timing_takes_ttft_from_the_stream_and_checks_it_against_the_trace() -> None:
    prompt_lens = [4, 7, 2]
    clients = Clients(
        [0.0, 1.0, 2.0], [0.9, 1.9, 2.9], [3, 3, 0], [None, None, None], [0.5, 1.25, None]
    )
    runs = [
        _run("prefill", 4, 0.1, 0.2),
        _run("prefill", 7, 1.1, 1.2),
        _run("prefill", 2, 2.1, 2.2),
    ]
    ttft, queue, why = client_timing(clients, prompt_lens, runs, dropped=0)
    assert why is None
    assert ttft == pytest.approx({0: 0.5, 1: 0.25})  # request 2 streamed no text: no TTFT
    assert queue == pytest.approx({0: 0.1, 1: 0.1, 2: 0.1})
    clients.first_text[1] = 1.05  # text before its prefill run started: contradiction
    ttft, queue, why = client_timing(clients, prompt_lens, runs, dropped=0)
    assert queue == {} and "request 1's first prefill run started after" in str(why)
    assert ttft == pytest.approx({0: 0.5, 1: 0.05})  # the client's own figure stands
    clients.first_text[1] = 1.25
    ttft, queue, why = client_timing(clients, prompt_lens, runs, dropped=3)
    assert queue == {} and "dropped 3 runs" in str(why)


def test_busy_time_is_the_union_of_request_lifetimes() -> None:
    clients = _clients([0.0, 1.0, 5.0, 5.5], [2.0, 3.0, 6.0, 5.7])
    assert busy_time(clients) == pytest.approx(3.0 + 1.0)
