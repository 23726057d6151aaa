"""tinyllm doctor: every section, in the report and the JSON, and honest "why not"s."""

from __future__ import annotations

import json

import onnxruntime
import pytest

from tinyllm import api
from tinyllm.cli import main
from tinyllm.runtime.doctor import SECTIONS
from tinyllm.runtime.hostinfo import Gpu, Library
from tinyllm.runtime.targets import TARGETS, target_status

ALL_LIBS = [Library(n, True, "1.0", f"/lib/{n}") for n in ("cuda-driver", "cuda-runtime", "cudnn")]
H100 = [Gpu("NVIDIA H100", 81559, 3, "550")]


def test_doctor_json_has_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert sorted(data) == sorted(SECTIONS)
    assert data["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in data["onnxruntime"]["providers"]
    assert [lib["name"] for lib in data["libraries"]] == [
        "cuda-driver",
        "cuda-runtime",
        "cudnn",
        "tensorrt",
    ]
    assert set(data["gpus"]) == {"found", "source"}
    assert data["cpu"]["logical_cores"] >= 1 and isinstance(data["cpu"]["isa"], list)
    assert data["memory"]["total_mib"] > 0
    assert [t["target"] for t in data["targets"]] == list(TARGETS)
    by_target = {t["target"]: t for t in data["targets"]}
    assert by_target["onnx-cpu"]["works"]  # the test suite itself exports onnx-cpu here
    assert not by_target["tensorrt"]["works"]


def test_doctor_report_prints_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    main(["doctor"])
    out = capsys.readouterr().out
    for heading in ("onnxruntime", "libraries", "gpus", "cpu", "memory", "targets"):
        assert any(line.startswith(heading) for line in out.splitlines()), heading
    assert out.count("\n  onnx-") == 3


def test_a_missing_cuda_provider_says_why_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    report = api.doctor()
    cuda = next(t for t in report.targets if t.target == "onnx-cuda")
    assert not cuda.works
    assert "no CUDAExecutionProvider in ONNX Runtime" in cuda.reason
    assert "this onnxruntime has: CPUExecutionProvider" in cuda.reason
    assert "pip install 'tinyllm[gpu]'" in cuda.reason
    assert "exports and verifies here on the CPU provider" in cuda.reason


def test_cuda_works_only_with_provider_libraries_driver_and_gpu() -> None:
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    ok = target_status("onnx-cuda", providers, ALL_LIBS, H100, torch_found=True)
    assert ok.works and "runs on the CUDA provider" in ok.reason
    no_cudnn = [lib for lib in ALL_LIBS if lib.name != "cudnn"]
    bad = target_status("onnx-cuda", providers, no_cudnn, H100, torch_found=True)
    assert not bad.works and "no cudnn library found" in bad.reason
    assert "onnxruntime-gpu[cuda,cudnn]" in bad.reason
    no_gpu = target_status("onnx-cuda", providers, ALL_LIBS, [], torch_found=True)
    assert not no_gpu.works and "no GPU found" in no_gpu.reason


def test_tensorrt_names_each_missing_piece_and_works_with_all() -> None:
    cuda_only = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    status = target_status("tensorrt", cuda_only, ALL_LIBS, H100, torch_found=True)
    assert not status.works
    assert "no TensorrtExecutionProvider in ONNX Runtime" in status.reason
    assert "no TensorRT library (libnvinfer) found" in status.reason
    everything = ["TensorrtExecutionProvider", *cuda_only]
    libs = [*ALL_LIBS, Library("tensorrt", True, "10.3.0", "/lib/libnvinfer.so.10")]
    status = target_status("tensorrt", everything, libs, H100, torch_found=True)
    assert status.works and "TensorRT EP" in status.reason


def test_without_torch_no_target_exports() -> None:
    for target in TARGETS:
        status = target_status(target, ["CPUExecutionProvider"], [], [], torch_found=False)
        assert not status.works and "no torch" in status.reason


def test_the_gpu_extra_pins_onnxruntime_gpu_to_the_onnxruntime_version() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = {
        d.split("==")[0]: d.split("==")[1]
        for d in project["project"]["dependencies"]
        + project["project"]["optional-dependencies"]["gpu"]
        if "==" in d
    }
    assert pins["onnxruntime-gpu"] == pins["onnxruntime"]  # docs/gpu.md installs that pair


@pytest.mark.gpu
def test_on_a_cuda_machine_doctor_finds_the_gpu_and_the_cuda_target_works() -> None:
    report = api.doctor()
    assert report.gpus and report.gpus[0].memory_total_mib > 0
    cuda = next(t for t in report.targets if t.target == "onnx-cuda")
    assert cuda.works, cuda.reason
