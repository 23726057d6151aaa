"""The benchmark scripts import, parse their options, and compute what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_decode_benchmark_help() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "decode_cpu.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout and "onnxruntime-genai" in out.stdout


def test_measure_formula_with_scripted_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import decode_cpu

    calls: list[str] = []

    def peer(name: str, first: float, per_token: float):  # seconds = first + (n - 1) * per_token
        def run(prompts: list[list[int]], n: int) -> float:
            calls.append(name)
            return first + (n - 1) * per_token

        return run

    peers = {"a": peer("a", 0.1, 0.01), "b": peer("b", 0.2, 0.02)}
    results = decode_cpu.measure(peers, [[1, 2], [3, 4]], n=11, repeats=2)
    # 10 decode steps for 2 rows: a does 2*10 / (10*0.01) = 200 tok/s, b 100 tok/s.
    assert results["a"]["decode_tok_s"] == pytest.approx(200.0)
    assert results["b"]["decode_tok_s"] == pytest.approx(100.0)
    assert results["a"]["ttft_s"] == pytest.approx(0.1)
    # Warm-up (a, b), then each repeat interleaves the peers: a a b b, a a b b.
    assert calls == ["a", "b", "a", "a", "b", "b", "a", "a", "b", "b"]


def test_quantization_benchmark_help() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "quantization.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--calib-samples" in out.stdout and "--eval-only" in out.stdout


def test_pruning_benchmark_table(monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "pruning.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--heal-steps" in out.stdout and "--unhealed" in out.stdout
    monkeypatch.syspath_prepend(str(BENCH))
    import pruning

    def task(score: float) -> dict[str, object]:
        return {"metric": "accuracy", "score": score, "n": 10, "invalid": 0.0}

    parent = {"a": task(0.5), "b": task(0.8), "c": task(0.0)}
    child = {"a": task(0.4), "b": task(0.8), "c": task(0.0)}
    # Tasks the parent scores 0 on have no relative drop; a: 20%, b: 0%.
    assert pruning.relative_drop(parent, child) == pytest.approx({"a": 0.2, "b": 0.0})
    text = pruning.table({"parent": parent, "healed": child})
    assert "mean relative drop of healed: 10.0% over 2 tasks" in text
    assert "relative drop of healed's mean score: 7.7%" in text  # 1.3 -> 1.2


def test_engine_load_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyllm
    from tinyllm import integrity

    monkeypatch.syspath_prepend(str(BENCH))
    import engine_load

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    monkeypatch.setattr(integrity, "RACY_S", 0.0)  # remember digests of the fresh engine
    cache = tmp_path / "hashes.json"
    monkeypatch.setenv("TINYLLM_HASH_CACHE", str(cache))
    report = engine_load.measure(bundle.path, ["size", "cold", "warm"], 2, cache)
    assert set(report) == {"size", "cold", "warm"}
    for row in report.values():
        assert 0 < row["wall_min"] <= row["wall_median"] and row["cpu_min"] > 0
    assert cache.is_file()  # the warm rounds had digests to reuse


def test_profile_overhead_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyllm

    monkeypatch.syspath_prepend(str(BENCH))
    import profile_overhead

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    r = profile_overhead.measure(bundle.path, 2, 4, 2, 8, 4, 1)
    assert r["rounds"] == 2 and len(r["per_round"]) == 2
    assert r["overhead_min"] <= r["overhead"] <= r["overhead_max"]
    assert r["median_latency_ms_unprofiled"] > 0 and r["median_latency_ms_recorded"] > 0
    assert 0 < r["recorder_share_of_busy"] < 0.5
    assert r["workload"]["prompt_tokens"] == 8 and r["workload"]["load"] == "concurrency 2"


def test_memory_benchmark_measures_a_fresh_process(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyllm

    out = subprocess.run(
        [sys.executable, str(BENCH / "memory_cpu.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--batches" in out.stdout and "onnxruntime-genai" in out.stdout
    monkeypatch.syspath_prepend(str(BENCH))
    import memory_cpu

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    r = memory_cpu.run_case("tinyllm", bundle.path, batch=2, prompt=8, new=4)
    assert 0 < r["import"] <= r["loaded"] <= r["peak"]
    assert r["engine"] == r["peak"] - r["import"] and r["load_s"] > 0
    with pytest.raises(SystemExit, match="tinyllm batch 2 failed"):
        memory_cpu.run_case("tinyllm", tmp_path / "missing.tllm", batch=2, prompt=8, new=4)


def test_speculative_benchmark_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "speculative.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--requests" in out.stdout and "--bundle" in out.stdout
    monkeypatch.syspath_prepend(str(BENCH))
    import speculative

    def request(task: str, n: int, seconds: float, ttft: float) -> dict[str, object]:
        return {"task": task, "tokens": list(range(n)), "seconds": seconds, "ttft_s": ttft}

    # 10 + 30 tokens in 0.5 s; after the first token, 38 tokens in 0.4 s.
    runs = [[request("booking", 10, 0.2, 0.05), request("booking", 30, 0.3, 0.05)]]
    runs.append([request("booking", 10, 0.4, 0.1), request("booking", 30, 0.6, 0.1)])
    got = speculative.rates(runs, "booking")
    assert got["tok_s"] == pytest.approx((80 + 40) / 2)
    assert got["decode_tok_s"] == pytest.approx((38 / 0.4 + 38 / 0.8) / 2)
    assert got["tok_s_range"] == pytest.approx([40, 80])
