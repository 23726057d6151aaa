"""Runtime fixtures: tiny bundles with exported engines, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

import tinyllm


@pytest.fixture(scope="session")
def tiny_qwen2_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-qwen2 bundle (untied lm_head, q/k/v biases, 4:1 GQA)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny-qwen2.tllm"
    return tinyllm.import_model("tiny-qwen2", out).path


@pytest.fixture(scope="session")
def exported(tiny_llama_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama with an fp32 onnx-cpu engine and an onnx-standard engine."""
    folder = tmp_path_factory.mktemp("exported")
    first, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", folder / "tiny.tllm", max_seq_len=256)
    bundle, _ = tinyllm.export(first.path, "onnx-standard", max_seq_len=256)
    return bundle.path
