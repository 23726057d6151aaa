"""--target tensorrt: a clear error naming each missing piece; never a faked engine."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest

import tinyllm
from tinyllm.cli import main
from tinyllm.errors import MissingDependencyError
from tinyllm.runtime import hostinfo, targets
from tinyllm.runtime.hostinfo import Gpu, Library


def test_tensorrt_export_without_tensorrt_names_what_to_install(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(hostinfo, "library_dirs", lambda: [])
    with pytest.raises(MissingDependencyError) as info:
        tinyllm.export(tiny_llama_bundle, "tensorrt", tmp_path / "trt.tllm")
    message = str(info.value)
    assert message.startswith("--target tensorrt cannot build here: ")
    assert "no TensorrtExecutionProvider in ONNX Runtime" in message
    assert "pip install 'tinyllm[gpu]'" in message
    if not any(lib.found for lib in hostinfo.native_libraries() if lib.name == "tensorrt"):
        assert "no TensorRT library (libnvinfer) found: pip install tensorrt" in message
    assert "tinyllm doctor" in message and "no CUDAExecutionProvider" not in message
    assert list(tmp_path.iterdir()) == []


def test_cli_tensorrt_export_is_a_one_line_error(
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    args = ["export", str(tiny_llama_bundle), "--target", "tensorrt", "-o", str(tmp_path / "t")]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("exporting")  # progress line, then the error
    assert err[1].startswith("error: --target tensorrt cannot build here")


def test_with_every_piece_present_require_tensorrt_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    libs = [
        Library(n, True, "1", "/x") for n in ("cuda-driver", "cuda-runtime", "cudnn", "tensorrt")
    ]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
    monkeypatch.setattr(hostinfo, "native_libraries", lambda: libs)
    monkeypatch.setattr(hostinfo, "gpus", lambda: ([Gpu("NVIDIA L4", 23034, 0, "550")], "x"))
    targets.require_tensorrt()  # nothing missing: no error
    monkeypatch.setattr(hostinfo, "gpus", lambda: ([], "x"))
    with pytest.raises(MissingDependencyError, match="no GPU found"):
        targets.require_tensorrt()
