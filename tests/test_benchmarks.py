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


@pytest.mark.parametrize(
    ("script", "option"), [("labelling.py", "--concurrency"), ("trl_speed.py", "--rounds")]
)
def test_labelling_and_trl_speed_benchmarks_help(script: str, option: str) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert option in out.stdout
