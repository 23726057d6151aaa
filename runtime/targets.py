"""The ``tinyllm export --target`` values, and what each needs of a machine to work.

Pure functions of what was found (providers, native libraries, GPUs): ``doctor`` reports
them and ``export`` refuses a target whose pieces are missing, with the same words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyllm.runtime.hostinfo import Gpu, Library

# target -> (graph flavour, default precision)
TARGETS: dict[str, tuple[str, str]] = {
    "onnx-cpu": ("ort", "fp32"),
    "onnx-cuda": ("ort", "fp16"),
    "onnx-standard": ("standard", "fp32"),
    "tensorrt": ("standard", "fp16"),
}
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
GPU_INSTALL = "pip install 'tinyllm[gpu]' on a CUDA machine (see docs/gpu.md)"
TRT_INSTALL = (
    "pip install tensorrt (TensorRT 10 for the CUDA major version onnxruntime-gpu was built "
    "for), or NVIDIA's TensorRT with libnvinfer on LD_LIBRARY_PATH"
)
CUDA_LIBS_INSTALL = (
    "pip install 'onnxruntime-gpu[cuda,cudnn]' (NVIDIA's CUDA and cuDNN wheels matching the "
    "onnxruntime-gpu build), or install that CUDA and cuDNN 9 system-wide"
)


@dataclass(frozen=True)
class TargetStatus:
    """Whether ``tinyllm export --target`` ``target`` works here, and why not."""

    target: str
    works: bool
    reason: str


def _found(libraries: Sequence[Library], name: str) -> bool:
    return any(lib.name == name and lib.found for lib in libraries)


def cuda_missing(
    providers: Sequence[str], libraries: Sequence[Library], gpus: Sequence[Gpu]
) -> list[str]:
    """What ONNX Runtime's CUDA execution lacks here, each with what to install."""
    missing = []
    if CUDA_EP not in providers:
        missing.append(
            f"no {CUDA_EP} in ONNX Runtime (this onnxruntime has: {', '.join(providers)}): "
            f"{GPU_INSTALL}"
        )
    libs = [n for n in ("cuda-runtime", "cudnn") if not _found(libraries, n)]
    if libs:
        missing.append(f"no {' or '.join(libs)} library found: {CUDA_LIBS_INSTALL}")
    if not _found(libraries, "cuda-driver"):
        missing.append("no NVIDIA driver (libcuda) found: install the driver for your GPU")
    if not gpus:
        missing.append("no GPU found (nvidia-smi lists none)")
    return missing


def tensorrt_missing(
    providers: Sequence[str], libraries: Sequence[Library], gpus: Sequence[Gpu]
) -> list[str]:
    """What a TensorRT export lacks here: ONNX Runtime's TensorRT EP and libnvinfer, on
    top of everything CUDA needs."""
    missing = []
    if TRT_EP not in providers:
        missing.append(
            f"no {TRT_EP} in ONNX Runtime (this onnxruntime has: {', '.join(providers)}): "
            f"{GPU_INSTALL}"
        )
    if not _found(libraries, "tensorrt"):
        missing.append(f"no TensorRT library (libnvinfer) found: {TRT_INSTALL}")
    cuda = cuda_missing(providers, libraries, gpus)
    if TRT_EP not in providers:  # the same onnxruntime-gpu install brings both providers
        cuda = [m for m in cuda if CUDA_EP not in m]
    return missing + cuda


def target_status(
    target: str,
    providers: Sequence[str],
    libraries: Sequence[Library],
    gpus: Sequence[Gpu],
    torch_found: bool,
) -> TargetStatus:
    """Whether ``target`` can be exported (verified) and run on this machine, and why not."""
    missing: list[str] = []
    if not torch_found:
        missing.append(
            "no torch, which export's verification runs the model with: "
            "pip install torch==2.13.0 'tinyllm[torch]'"
        )
    if target == "onnx-cuda":
        cuda = cuda_missing(providers, libraries, gpus)
        if cuda:
            note = "exports and verifies here on the CPU provider, but cannot run here"
            missing.append(f"{note}: " + "; ".join(cuda))
    elif target == "tensorrt":
        missing += tensorrt_missing(providers, libraries, gpus)
    if missing:
        return TargetStatus(target, False, "; ".join(missing))
    where = {
        "onnx-cuda": "exports, verifies and runs on the CUDA provider",
        "tensorrt": "verifies the graph on the CPU provider, builds and runs on the TensorRT EP",
    }.get(target, "exports, verifies and runs on the CPU provider")
    return TargetStatus(target, True, where)


def require_tensorrt(doing: str = "--target tensorrt cannot build here") -> None:
    """Raise what a TensorRT export or session lacks on this machine (every missing piece,
    with what to install); ``doing`` starts the message."""
    from tinyllm.errors import MissingDependencyError
    from tinyllm.runtime.hostinfo import gpus, native_libraries, onnxruntime_info

    found, _ = gpus()
    missing = tensorrt_missing(onnxruntime_info().providers, native_libraries(), found)
    if missing:
        raise MissingDependencyError(
            f"{doing}: " + "; ".join(missing) + ". Run "
            "`tinyllm doctor` to see what this machine has."
        )
