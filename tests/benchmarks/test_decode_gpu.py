"""decode_gpu.py, the CUDA decode benchmark: a clear refusal without CUDA, an engine it
cannot prepare reported beside the others, and (gpu) the run on tiny-llama."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def test_decode_gpu_without_cuda_says_so_and_fails(bench: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has ONNX Runtime's CUDA provider")
    out = subprocess.run(
        [sys.executable, str(bench / "decode_gpu.py"), "--precision", "int4"],
        capture_output=True,
        text=True,
        cwd=bench.parent,
    )
    assert out.returncode == 2, out.stderr
    assert "needs a CUDA GPU and ONNX Runtime's CUDAExecutionProvider" in out.stderr
    assert "CPUExecutionProvider" in out.stderr and "docs/gpu.md" in out.stderr
    assert not out.stdout


def test_decode_gpu_reports_an_engine_it_cannot_prepare_and_runs_the_others(
    bench: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a GPU machine without TensorRT (or onnxruntime-genai), the CUDA engine's numbers
    still come out; the missing ones get a row saying why (no GPU needed: the engines'
    preparation and runs are replaced)."""
    import decode_gpu

    from tinyllm.errors import MissingDependencyError

    def prepare(engine: str, name: str, precision: str, out: Path, block: int) -> Path:
        if engine == "tinyllm-tensorrt":
            raise MissingDependencyError("--target tensorrt cannot build here: no libnvinfer")
        if engine == "onnxruntime-genai":
            raise decode_gpu.NotRun("onnxruntime-genai's model builder has no int8 precision")
        return out / "cuda.tllm"

    ran: list[tuple[str, int]] = []

    def run(engine: str, path: Path, prompts: list, args: Any) -> dict:
        ran.append((engine, len(prompts)))
        return {"settings": {}, "decode_tok_s": [100.0 * len(prompts), 90.0 * len(prompts)]}

    monkeypatch.setattr(decode_gpu, "cuda_problem", lambda: None)
    monkeypatch.setattr(decode_gpu, "prepare", prepare)
    monkeypatch.setattr(decode_gpu, "run", run)
    import tinyllm

    tinyllm.import_model("tiny-llama", tmp_path / "tiny-llama.tllm")  # its vocabulary sizes prompts
    argv = ["decode_gpu.py", "--precision", "int8", "--batch", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--model", "tiny-llama"])
    assert decode_gpu.main() == 0
    assert ran == [("tinyllm-cuda", 1), ("tinyllm-cuda", 4)]
    out = capsys.readouterr().out
    assert "not run: MissingDependencyError: --target tensorrt cannot build here" in out
    assert "not run: NotRun: onnxruntime-genai's model builder has no int8" in out
    assert "95 [90-100]" in out and "380 [360-400]" in out
    runs = json.loads((tmp_path / "decode_gpu.json").read_text())["runs"]
    assert [r["engine"] for r in runs] == ["tinyllm-cuda", "tinyllm-cuda", *decode_gpu.ENGINES[1:]]
    assert "libnvinfer" in runs[2]["error"]


@pytest.mark.gpu
def test_decode_gpu_benchmark_end_to_end(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decode_gpu.py's main on tiny-llama, fp16 on CUDA, batch 1 and 2: a rate per round
    for each batch; an engine that cannot load is recorded with its error."""
    import argparse

    monkeypatch.chdir(tmp_path)  # the models and the JSON go under ./out/bench
    import decode_gpu

    argv = ["--model", "tiny-llama", "--precision", "fp16", "--batch", "2"]
    argv += ["--prompt-tokens", "4", "--tokens", "4", "--rounds", "2", "--engines", "tinyllm-cuda"]
    assert decode_gpu.main(argv) == 0
    results = json.loads((tmp_path / "out" / "bench" / "decode_gpu.json").read_text())
    runs = results["runs"]
    assert [(r["engine"], r["batch"]) for r in runs] == [("tinyllm-cuda", 1), ("tinyllm-cuda", 2)]
    for r in runs:
        assert r["settings"]["device"] == "cuda" and len(r["decode_tok_s"]) == 2, r
        assert min(r["decode_tok_s"]) > 0
    spec = argparse.Namespace(tokens=4, rounds=1)
    broken = decode_gpu.run("tinyllm-cuda", tmp_path / "missing.tllm", [[10, 11]], spec)
    assert "missing.tllm" in broken["error"][0], broken
