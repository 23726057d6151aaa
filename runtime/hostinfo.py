"""What this machine has: native GPU libraries, GPUs, CPU features and memory.

Every probe is read-only and never raises: a library, tool or file that is absent is
reported as absent. The parsers are pure functions of the text they read, so tests feed
them recorded ``/proc/cpuinfo`` or ``nvidia-smi`` output.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# CPU features ONNX Runtime's kernels dispatch on (MLAS): x86 flags by their /proc/cpuinfo
# names; on Arm, ``asimd`` is NEON, ``asimddp`` the dot product, ``i8mm`` the int8 matmul.
ISA_FLAGS = {
    "avx": "avx",
    "fma": "fma",
    "avx2": "avx2",
    "avx_vnni": "avx_vnni",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_tile": "amx",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
    "asimd": "neon",
    "asimddp": "neon_dotprod",
    "i8mm": "neon_i8mm",
    "sve": "sve",
}


@dataclass(frozen=True)
class OnnxRuntimeInfo:
    """The installed ONNX Runtime: version, which wheel, and its execution providers."""

    version: str
    package: str
    providers: list[str]


@dataclass(frozen=True)
class Library:
    """A native library looked for by its file names (found: where, and its version)."""

    name: str
    found: bool
    version: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi reports it (memory in MiB)."""

    name: str
    memory_total_mib: int
    memory_used_mib: int
    driver: str


@dataclass(frozen=True)
class CpuInfo:
    """The CPU: model name, cores, and the ISA features ONNX Runtime's kernels use."""

    model: str
    logical_cores: int
    usable_cores: int
    isa: list[str] = field(default_factory=list)
    machine: str = ""


@dataclass(frozen=True)
class MemoryInfo:
    """RAM in MiB (0 where unknown)."""

    total_mib: int
    available_mib: int


def onnxruntime_info() -> OnnxRuntimeInfo:
    """The installed ONNX Runtime's version, wheel name and available providers."""
    import onnxruntime as ort

    package = "onnxruntime"
    for name in ("onnxruntime-gpu", "onnxruntime"):
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        package = name
        break
    return OnnxRuntimeInfo(ort.__version__, package, list(ort.get_available_providers()))


def library_dirs() -> list[str]:
    """Folders of pip-installed NVIDIA and TensorRT libraries (nvidia-*-cu12 wheels,
    tensorrt-libs), searched after the system's loader path."""
    dirs: list[str] = []
    for site in sys.path:
        for pattern in ("nvidia/*/lib", "tensorrt_libs", "tensorrt"):
            dirs += sorted(glob.glob(os.path.join(site, pattern)))
    return dirs


def _load(names: Sequence[str]) -> tuple[ctypes.CDLL, str] | None:
    """The first of ``names`` that loads, by soname, then from the wheel folders."""
    for name in names:
        candidates = [name, *(os.path.join(d, name) for d in library_dirs())]
        for candidate in candidates:
            try:
                return ctypes.CDLL(candidate), candidate
            except OSError:
                continue
    return None


def _int_out(lib: ctypes.CDLL, symbol: str) -> int | None:
    """Call ``int symbol(int *out)`` (the CUDA version getters); None if it fails."""
    try:
        out = ctypes.c_int(0)
        status = getattr(lib, symbol)(ctypes.byref(out))
    except (AttributeError, OSError):
        return None
    return out.value if status == 0 else None


def cuda_version_text(value: int) -> str:
    """CUDA's packed version (1000 * major + 10 * minor) as ``major.minor``."""
    return f"{value // 1000}.{value % 1000 // 10}"


def packed_version(value: int) -> str:
    """cuDNN's and TensorRT's packed versions as ``major.minor.patch``: major * 10000 +
    minor * 100 + patch from cuDNN 9 and TensorRT 10 on, major * 1000 + ... before."""
    major, rest = divmod(value, 10000) if value >= 90000 else divmod(value, 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _probe(
    name: str, sonames: Sequence[str], version: Callable[[ctypes.CDLL], str | None]
) -> Library:
    loaded = _load(sonames)
    if loaded is None:
        return Library(name, False)
    lib, path = loaded
    try:
        text = version(lib)
    except (AttributeError, OSError):
        text = None
    return Library(name, True, text, path)


def _cuda_runtime(lib: ctypes.CDLL) -> str | None:
    value = _int_out(lib, "cudaRuntimeGetVersion")
    return None if value is None else cuda_version_text(value)


def _cuda_driver(lib: ctypes.CDLL) -> str | None:
    value = _int_out(lib, "cuDriverGetVersion")
    return None if value is None else cuda_version_text(value)


def _cudnn(lib: ctypes.CDLL) -> str | None:
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    return packed_version(int(lib.cudnnGetVersion()))


def _tensorrt(lib: ctypes.CDLL) -> str | None:
    lib.getInferLibVersion.restype = ctypes.c_int32
    return packed_version(int(lib.getInferLibVersion()))


def native_libraries() -> list[Library]:
    """The CUDA driver and runtime, cuDNN and TensorRT, each found or not, with versions."""
    return [
        _probe("cuda-driver", ["libcuda.so.1", "libcuda.so", "nvcuda.dll"], _cuda_driver),
        _probe(
            "cuda-runtime",
            ["libcudart.so.12", "libcudart.so.13", "libcudart.so", "cudart64_12.dll"],
            _cuda_runtime,
        ),
        _probe("cudnn", ["libcudnn.so.9", "libcudnn.so.8", "libcudnn.so", "cudnn64_9.dll"], _cudnn),
        _probe(
            "tensorrt",
            ["libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer_10.dll"],
            _tensorrt,
        ),
    ]


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version
    --format=csv,noheader,nounits`` output (one line each); unreadable lines are skipped."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            continue
        try:
            gpus.append(Gpu(parts[0], int(float(parts[1])), int(float(parts[2])), parts[3]))
        except ValueError:
            continue
    return gpus


def gpus(timeout: float = 10.0) -> tuple[list[Gpu], str]:
    """(GPUs, how they were found): nvidia-smi when it is on PATH, else none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi is not on PATH"
    query = "--query-gpu=name,memory.total,memory.used,driver_version"
    try:
        done = subprocess.run(
            [smi, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], f"nvidia-smi failed: {e}"
    if done.returncode != 0:
        return [], f"nvidia-smi failed: {done.stderr.strip() or done.returncode}"
    return parse_nvidia_smi(done.stdout), smi


def parse_cpuinfo(text: str) -> tuple[str, list[str]]:
    """(model name, ISA features of :data:`ISA_FLAGS` present) from /proc/cpuinfo text."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    isa = sorted({label for flag, label in ISA_FLAGS.items() if flag in flags})
    return model, isa


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """The CPU's model, core counts and ISA features (empty where /proc is absent)."""
    import platform

    from tinyllm.runtime.ortsession import usable_cpus

    try:
        model, isa = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, isa = "", []
    return CpuInfo(
        model or platform.processor() or "unknown",
        os.cpu_count() or 1,
        usable_cpus(),
        isa,
        platform.machine(),
    )


def parse_meminfo(text: str) -> MemoryInfo:
    """Total and available RAM from /proc/meminfo text (kB lines)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0]) // 1024
    return MemoryInfo(values.get("MemTotal", 0), values.get("MemAvailable", 0))


def memory_info(meminfo: Path = Path("/proc/meminfo")) -> MemoryInfo:
    """RAM of this machine (zeros where /proc/meminfo is absent)."""
    try:
        return parse_meminfo(meminfo.read_text())
    except OSError:
        return MemoryInfo(0, 0)
