"""Native runtime fixtures: the built libtinyllm, and tiny bundles with fp32/int8/int4 engines.

The library is built by ``make cpp`` (``make test`` builds it, and the sanitizer build,
before running pytest, and sets TINYLLM_NATIVE_REQUIRED=1 so a missing build fails).
Run alone, these tests skip when the library is not built.
"""

from __future__ import annotations

import ctypes
import dataclasses
from pathlib import Path

import pytest
from nativebuild import require_built
from tooltasks import TOOL_TASKS, bundle_tools

import tinyllm
from tinyllm.runtime import native
from tinyllm.tasks import TaskSpec, ToolUse
from tinyllm.toolbox import register_tool


@pytest.fixture(scope="session")
def lib() -> ctypes.CDLL:
    """libtinyllm through ctypes."""
    return native.load_library(require_built(native.LIBRARY))


def _with_quantized(bundle: Path, out: Path) -> Path:
    """``bundle`` exported as fp32, int8 and int4 onnx-cpu engines in one new bundle."""
    first, _ = tinyllm.export(bundle, "onnx-cpu", out, max_seq_len=256)
    for quant in ("int8", "int4"):
        tinyllm.export(first.path, "onnx-cpu", quant=quant, max_seq_len=256)
    return first.path


@pytest.fixture(scope="session")
def llama_engines(tiny_llama_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama with onnx-cpu-fp32, -int8 and -int4 engines."""
    return _with_quantized(tiny_llama_bundle, tmp_path_factory.mktemp("native") / "llama.tllm")


@pytest.fixture(scope="session")
def qwen2_engines(tiny_qwen2_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 with onnx-cpu-fp32, -int8 and -int4 engines."""
    return _with_quantized(tiny_qwen2_bundle, tmp_path_factory.mktemp("native") / "qwen2.tllm")


@pytest.fixture(scope="session")
def smollm2_int4(smollm2_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M (the default model) with the demo's int4 onnx-cpu engine."""
    folder = tmp_path_factory.mktemp("smollm2-int4")
    bundle, _ = tinyllm.export(
        smollm2_bundle, "onnx-cpu", folder / "int4.tllm", quant="int4", max_seq_len=512
    )
    return bundle.path


def _task(name: str, tools: list[str], result: str) -> TaskSpec:
    return dataclasses.replace(
        tinyllm.api.load_tasks().task("arithmetic"),
        name=name,
        tools=ToolUse(tools, result),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def tool_bundle(tiny_qwen2_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 serving tasks with tools, exported with their task table."""
    for tool in bundle_tools():
        register_tool(tool, replace=True)
    folder = tmp_path_factory.mktemp("tools")
    specs = [_task(name, tools, result) for name, (tools, result) in TOOL_TASKS.items()]
    child = tinyllm.api.add_tasks(tiny_qwen2_bundle, folder / "tasks.tllm", specs, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", folder / "tools.tllm", max_seq_len=256)
    return bundle.path
