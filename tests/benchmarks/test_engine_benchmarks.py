"""The engine's own figures: greedy parity with transformers (decode_parity.py), load
time (engine_load.py), memory per batch (memory_cpu.py) and the profiler's overhead
(profile_overhead.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tinyllm.errors import TinyLLMError


def test_decode_parity_benchmark_end_to_end(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decode_parity.py's main on tiny-llama: the fp32 engine and transformers share the
    weights, so every prompt gives the same greedy tokens; an engine that stops a token
    early is counted as different (the comparison can fail)."""
    monkeypatch.chdir(tmp_path)  # the models and the JSON go under ./out/bench
    import decode_parity

    argv = ["--models", "tiny-llama", "--prompts", "2", "--new-tokens", "4"]
    decode_parity.main(argv)
    record = tmp_path / "out" / "bench" / "parity-tiny-llama.json"
    assert json.loads(record.read_text()) == {"prompts": 2, "identical": 2, "new_tokens": 4}
    real = decode_parity.GenerationConfig

    def one_short(max_new_tokens: int) -> Any:
        return real(max_new_tokens=max_new_tokens - 1)

    monkeypatch.setattr(decode_parity, "GenerationConfig", one_short)
    decode_parity.main(argv)
    assert json.loads(record.read_text())["identical"] == 0


def test_engine_load_benchmark_end_to_end(
    bench: Path,
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """engine_load.py's main: every mode's seconds, the hash cache filled for the warm
    rounds; an engine file changed after export fails the hashed loads."""
    import engine_load

    import tinyllm
    from tinyllm import integrity

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    monkeypatch.setattr(integrity, "RACY_S", 0.0)  # remember digests of the fresh engine
    monkeypatch.setenv("TINYLLM_HASH_CACHE", str(tmp_path / "unused.json"))  # main sets its own
    out = tmp_path / "load.json"
    engine_load.main([str(bundle.path), "--repeats", "2", "--json", str(out)])
    report = json.loads(out.read_text())[str(bundle.path)]
    assert set(report) == {"size", "cold", "warm"}
    for row in report.values():
        assert 0 < row["wall_min"] <= row["wall_median"] and row["cpu_min"] > 0
    assert Path(os.environ["TINYLLM_HASH_CACHE"]).is_file()  # warm rounds had digests to reuse
    with pytest.raises(SystemExit):
        engine_load.main([str(bundle.path), "--modes", "size,lukewarm"])
    assert "unknown mode 'lukewarm'" in capsys.readouterr().err
    weights = max((bundle.path / "engines").glob("*/model.onnx*"), key=lambda f: f.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed
    weights.write_bytes(bytes(data))
    with pytest.raises(TinyLLMError, match="sha256"):
        engine_load.main([str(bundle.path), "--modes", "cold", "--repeats", "1"])


def test_memory_benchmark_end_to_end(
    bench: Path, tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """memory_cpu.py's main on tiny-llama: a fresh process per batch, its RSS figures in
    order and the engine's weight files; a failed case and a missing native runtime are
    errors that say so."""
    import memory_cpu

    out = tmp_path / "memory.json"
    memory_cpu.main(
        [
            "--model", "tiny-llama", "--precision", "fp32", "--engines", "tinyllm",
            "--batches", "1,2", "--prompt-tokens", "4", "--new-tokens", "4",
            "--out-dir", str(tmp_path), "--json", str(out),
        ]
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert [(r["engine_name"], r["batch"]) for r in results] == [("tinyllm", 1), ("tinyllm", 2)]
    engine = tmp_path / "tiny-llama-fp32.tllm"
    files = sum(f.stat().st_size for f in (engine / "engines").glob("*/model.onnx*"))
    for r in results:
        assert 0 < r["import"] <= r["loaded"] <= r["peak"]
        assert r["engine"] == r["peak"] - r["import"] and r["load_s"] > 0
        assert r["weights"] == files > 0
    with pytest.raises(SystemExit, match="tinyllm batch 2 failed"):
        memory_cpu.run_case("tinyllm", tmp_path / "missing.tllm", batch=2, prompt=8, new=4)
    monkeypatch.setenv("TINYLLM_NATIVE_LIBRARY", str(tmp_path / "libtinyllm.so"))
    with pytest.raises(SystemExit, match="the native runtime is not built"):
        memory_cpu.main(["--engines", "tinyllm-native", "--out-dir", str(tmp_path)])


def test_profile_overhead_benchmark_end_to_end(
    bench: Path,
    tiny_llama_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """profile_overhead.py's main (--json): the overhead inside its range over the rounds,
    both latencies positive, the recorder a small share of the loop's time."""
    import profile_overhead

    import tinyllm

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    profile_overhead.main(
        [
            str(bundle.path), "--rounds", "2", "--requests", "4", "--concurrency", "2",
            "--prompt-len", "8", "--new-tokens", "4", "--threads", "1", "--json",
        ]
    )  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert r["rounds"] == 2 and len(r["per_round"]) == 2
    assert r["overhead_min"] <= r["overhead"] <= r["overhead_max"]
    assert r["median_latency_ms_unprofiled"] > 0 and r["median_latency_ms_recorded"] > 0
    assert 0 < r["recorder_share_of_busy"] < 0.5
    assert r["workload"]["prompt_tokens"] == 8 and r["workload"]["load"] == "concurrency 2"
