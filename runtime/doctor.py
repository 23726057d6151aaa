"""``tinyllm doctor``: what this machine can run, section by section.

The first thing to run on a new device: ONNX Runtime and its providers, the CUDA, cuDNN
and TensorRT libraries found, the GPUs, the CPU's ISA, RAM, and for every export target
whether it works here and why not.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

from tinyllm.runtime.hostinfo import (
    CpuInfo,
    Gpu,
    Library,
    MemoryInfo,
    OnnxRuntimeInfo,
    cpu_info,
    gpus,
    memory_info,
    native_libraries,
    onnxruntime_info,
)
from tinyllm.runtime.targets import TARGETS, TargetStatus, target_status

SECTIONS = ("onnxruntime", "libraries", "gpus", "cpu", "memory", "targets")


@dataclass(frozen=True)
class DoctorReport:
    """Everything ``tinyllm doctor`` found (see :data:`SECTIONS`)."""

    onnxruntime: OnnxRuntimeInfo
    libraries: list[Library]
    gpus: list[Gpu]
    gpu_source: str
    cpu: CpuInfo
    memory: MemoryInfo
    targets: list[TargetStatus]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, one key per section."""
        data = asdict(self)
        data["gpus"] = {"found": data.pop("gpus"), "source": data.pop("gpu_source")}
        return data

    def format(self) -> str:
        """The printable report."""
        ort, cpu, mem = self.onnxruntime, self.cpu, self.memory
        lines = [
            f"onnxruntime  {ort.version} ({ort.package}); providers: {', '.join(ort.providers)}",
            "libraries",
        ]
        for lib in self.libraries:
            state = f"{lib.version or 'version unknown'} ({lib.path})" if lib.found else "not found"
            lines.append(f"  {lib.name:<14}{state}")
        lines.append("gpus" + ("" if self.gpus else f"         none ({self.gpu_source})"))
        for gpu in self.gpus:
            lines.append(
                f"  {gpu.name}: {gpu.memory_total_mib} MiB ({gpu.memory_used_mib} used), "
                f"driver {gpu.driver}"
            )
        lines += [
            f"cpu          {cpu.model} ({cpu.machine}), {cpu.usable_cores}/{cpu.logical_cores} "
            f"cores usable; isa: {', '.join(cpu.isa) or 'none of interest'}",
            f"memory       {mem.total_mib} MiB total, {mem.available_mib} MiB available",
            "targets",
        ]
        for t in self.targets:
            lines.append(f"  {t.target:<14}{'yes' if t.works else 'no '}  {t.reason}")
        return "\n".join(lines)


def torch_found() -> bool:
    """Whether torch is importable (export verifies with it), without importing it."""
    return importlib.util.find_spec("torch") is not None


def doctor() -> DoctorReport:
    """Probe this machine (read-only; never raises for something absent)."""
    runtime = onnxruntime_info()
    libraries = native_libraries()
    found, source = gpus()
    has_torch = torch_found()
    targets = [target_status(t, runtime.providers, libraries, found, has_torch) for t in TARGETS]
    return DoctorReport(runtime, libraries, found, source, cpu_info(), memory_info(), targets)
