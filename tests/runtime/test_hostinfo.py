"""Machine probes: parsers on recorded outputs, and probes that never raise."""

from __future__ import annotations

from pathlib import Path

from tinyllm.runtime import hostinfo
from tinyllm.runtime.hostinfo import (
    cuda_version_text,
    packed_version,
    parse_cpuinfo,
    parse_meminfo,
    parse_nvidia_smi,
)

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimddp i8mm sve
CPU implementer\t: 0x41
"""


def test_x86_isa_flags() -> None:
    model, isa = parse_cpuinfo(X86)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert isa == sorted(
        [
            "avx",
            "fma",
            "avx2",
            "avx512f",
            "avx512_vnni",
            "avx512_bf16",
            "amx",
            "amx_int8",
            "amx_bf16",
        ]
    )


def test_arm_features_name_neon() -> None:
    model, isa = parse_cpuinfo(ARM)
    assert model == ""
    assert isa == ["neon", "neon_dotprod", "neon_i8mm", "sve"]


def test_a_cpu_without_avx2_says_so() -> None:
    """Such CPUs exist (some cloud EPYC guests): MLAS's int4 kernels need AVX2, so the
    benchmarks record the ISA beside their figures."""
    _, isa = parse_cpuinfo("model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma f16c\n")
    assert isa == ["avx", "fma"]


def test_cpu_info_of_a_missing_file_is_unknown_not_an_error(tmp_path: Path) -> None:
    info = hostinfo.cpu_info(tmp_path / "absent")
    assert info.isa == [] and info.logical_cores >= 1 and info.usable_cores >= 1


def test_meminfo() -> None:
    text = "MemTotal:       16384000 kB\nMemFree:  1 kB\nMemAvailable:    8192000 kB\n"
    assert parse_meminfo(text) == hostinfo.MemoryInfo(16000, 8000)
    assert hostinfo.memory_info(Path("/nonexistent/meminfo")) == hostinfo.MemoryInfo(0, 0)


def test_nvidia_smi_lines() -> None:
    text = "NVIDIA H100 80GB HBM3, 81559, 3, 550.54.15\nNVIDIA A10, 23028, 1200, 550.54.15\nbad\n"
    gpus = parse_nvidia_smi(text)
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10"]
    assert (gpus[0].memory_total_mib, gpus[1].memory_used_mib) == (81559, 1200)
    assert parse_nvidia_smi("") == []


def test_gpus_without_nvidia_smi_on_path(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert hostinfo.gpus() == ([], "nvidia-smi is not on PATH")


def test_version_decoding() -> None:
    assert cuda_version_text(12040) == "12.4"
    assert packed_version(90100) == "9.1.0"  # cuDNN 9.1.0
    assert packed_version(8902) == "8.9.2"  # cuDNN 8.9.2
    assert packed_version(100300) == "10.3.0"  # TensorRT 10.3.0


def test_absent_libraries_are_reported_not_raised(monkeypatch) -> None:
    monkeypatch.setattr(hostinfo, "library_dirs", lambda: [])
    lib = hostinfo._probe("x", ["libtinyllm-does-not-exist.so.1"], lambda _: "1")
    assert lib == hostinfo.Library("x", False)
    names = [lib.name for lib in hostinfo.native_libraries()]
    assert names == ["cuda-driver", "cuda-runtime", "cudnn", "tensorrt"]
