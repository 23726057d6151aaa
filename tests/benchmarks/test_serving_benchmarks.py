"""The serving benchmarks: trace generation and statistics on hand-built data, and tiny
end-to-end runs of multitask_serving.py and load_test.py (no request lost or duplicated)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def trace_module(bench: Path):
    import serving_trace

    return serving_trace


def test_trace_is_poisson_zipf_and_skewed(trace_module) -> None:
    tasks = [f"t{i}" for i in range(8)]
    trace = trace_module.make_trace(tasks, 4000, rate=5.0, seed=1)
    assert trace == trace_module.make_trace(tasks, 4000, rate=5.0, seed=1)
    gaps = np.diff([r.arrival_s for r in trace])
    assert gaps.mean() == pytest.approx(1 / 5.0, rel=0.05)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.1)  # exponential: std == mean
    counts = [sum(r.task == t for r in trace) for t in tasks]
    assert counts == sorted(counts, reverse=True) and counts[0] > 4 * counts[-1]
    outs = np.array([r.max_new_tokens for r in trace])
    words = np.array([len(r.text.split()) for r in trace])
    assert np.percentile(outs, 99) > 4 * np.median(outs)
    assert np.percentile(words, 99) > 4 * np.median(words)


def test_summarize_and_windows_on_hand_built_completions(trace_module) -> None:
    c = trace_module.Completion
    done = [
        c(0, "a", arrival_s=0.0, end_s=1.0, ttft_s=0.1, output_tokens=10),
        c(1, "a", arrival_s=1.0, end_s=2.0, ttft_s=0.3, output_tokens=30),
        c(2, "b", arrival_s=2.0, end_s=6.0, ttft_s=0.5, output_tokens=20),
        c(3, "b", arrival_s=3.0, end_s=3.0, error="QueueFullError: full"),
    ]
    s = trace_module.summarize(done, slo=lambda comp: 2.0)
    assert s["failed"] == 1 and s["output_tokens"] == 60
    assert s["throughput_tok_s"] == pytest.approx(60 / 6.0)
    assert s["latency_p50_s"] == pytest.approx(1.0)
    assert s["ttft_p50_s"] == pytest.approx(0.3)
    assert s["slo_attainment"] == pytest.approx(2 / 4)  # the failure misses its SLO
    assert trace_module.windows(done, [0.0, 2.0, 4.0, 8.0]) == [5.0, 15.0, 5.0]
    slo = trace_module.slo_seconds(done[1], ttft_s=0.1, tpot_s=0.01, scale=5.0)
    assert slo == pytest.approx(5.0 * (0.1 + 29 * 0.01))


def test_multitask_benchmark_end_to_end(
    tmp_path: Path, bench: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """multitask_serving.py's main, ``--quick`` and cut down (2 tasks, 4 requests, one
    rate; continuous batching against FIFO): every request of the trace answered in each
    peer's process, the figures and ratios computed from them; an unknown peer is refused
    before anything runs."""
    monkeypatch.chdir(tmp_path)  # bundles and the JSON go under ./out/bench
    import multitask_serving

    multitask_serving.main(
        [
            "--quick", "--tasks", "2", "--requests", "4", "--rates-x", "1",
            "--modes", "continuous,fifo", "--no-add", "--max-batch", "2", "--threads", "1",
        ]
    )  # fmt: skip
    record = json.loads((tmp_path / "out" / "bench" / "multitask_serving-quick.json").read_text())
    assert record["config"]["n"] == 4 and len(record["config"]["rates"]) == 1
    assert record["calibration"]["ttft_s"] > 0 and record["calibration"]["tpot_s"] > 0
    assert set(record["table"]) == {"continuous", "fifo"}
    for mode, entry in record["table"].items():
        assert entry["peak_rss_mib"] > 0
        (summary,) = entry["rates"].values()
        assert summary["failed"] == 0 and summary["output_tokens"] > 0, (mode, summary)
        assert summary["latency_p50_s"] > 0 and 0 <= summary["slo_attainment"] <= 1
    summary = record["summary"]
    assert summary["throughput_x_fifo_at_top_rate"] > 0
    one = record["one_model_peak_rss_mib"]
    fifo_mib = record["table"]["fifo"]["peak_rss_mib"]
    assert summary["memory_x_one_fifo"] == pytest.approx(fifo_mib / one)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        multitask_serving.main(["--quick", "--modes", "continuous,lifo"])
    assert "unknown mode 'lifo'" in capsys.readouterr().err


def test_load_test_end_to_end(tmp_path: Path, bench: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_test.py's main, 24 requests each way: every id answered exactly once, in
    process and over HTTP, and the engine's counters agree; the check counts a lost, a
    duplicated and a mismatched answer."""
    monkeypatch.chdir(tmp_path)  # bundles and the JSON go under ./out/bench
    import load_test

    load_test.main(["--requests", "24", "--concurrency", "4"])
    report = json.loads((tmp_path / "out" / "bench" / "load_test.json").read_text())
    for way in ("in_process", "http"):
        r = report[way]
        assert r["requests"] == sum(r["outcomes"].values()) == 24, r
        assert (r["lost"], r["duplicated"], r["mismatched"]) == (0, 0, 0), r
    ok = report["in_process"]["outcomes"].get("ok", 0) + report["http"]["outcomes"].get("ok", 0)
    assert ok > 0 and report["engine"]["completed"] == ok
    bad = load_test.check({1: [], 2: ["ok", "ok"], 3: ["mismatch load-9"], 4: ["ok"]}, 1.0)
    assert (bad["lost"], bad["duplicated"], bad["mismatched"]) == (1, 1, 1)


def test_cpp_worker_serves_the_trace_as_the_python_engine_does(
    tmp_path: Path,
    bench: Path,
    monkeypatch: pytest.MonkeyPatch,
    native_problem: Callable[[Callable[[], object]], str],
) -> None:
    """The ``cpp`` peer of benchmarks/multitask_serving.py (libtinyllm's server) answers the
    same trace as ``continuous`` (the Python engine) with the same output tokens."""
    from tinyllm.runtime import native

    if problem := native_problem(native.library_path):
        pytest.skip(f"the C++ runtime is not built: {problem}")
    monkeypatch.chdir(tmp_path)  # the workers build their bundles under ./out/bench
    import multitask_serving

    config = {
        "model": "tiny-llama", "tasks": 2, "max_batch": 4, "max_seq_len": 256, "mean_out": 8,
        "max_out": 16, "max_words": 20, "serve_seq_len": 256, "n": 6, "shots": 0,
        "threads": 1, "quant": None, "rates": [20.0], "add_task": False,
    }  # fmt: skip
    results = {mode: multitask_serving.run_worker(mode, config) for mode in ("continuous", "cpp")}
    runs = {mode: r["runs"]["20.000"] for mode, r in results.items()}
    for mode, done in runs.items():
        assert len(done) == 6 and not any(c["error"] for c in done), (mode, done)
        assert results[mode]["peak_rss_mib"] > 0
    tokens = {mode: [c["output_tokens"] for c in done] for mode, done in runs.items()}
    assert tokens["cpp"] == tokens["continuous"] and sum(tokens["cpp"]) > 0
    assert all(c["ttft_s"] > 0 for c in runs["cpp"])
